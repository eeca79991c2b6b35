"""How often a token survives the channel at each rate: the recovery probabilities behind rate
adaptation (:mod:`simulator.adaptation`) and the rate tables of ``calibrate``.

A token is *recovered* at ``k`` symbols when the receiver, reading the first ``k`` symbols of its
channel code through AWGN (MMSE, ``h = 1``), decodes it back to the token the full rate decodes
without noise. The share over a fixed set of noise draws (the same draws on every call, so tables
and decisions repeat exactly) is the token's recovery probability at ``k``. For a vocabulary as large
as Gemma-3's the decoding folds the channel decoder into the LM head and computes logits only for
the words that can win (:func:`_decode_tokens`).
"""

from __future__ import annotations

import math
import weakref

import torch

__all__ = ["NOISE_DRAWS", "recovery_probability", "full_rate_tokens", "token_recovery"]

NOISE_DRAWS = 256
_NOISE_SEED = 1234


def _noise_patterns(draws: int, symbols: int, copy: int = 0) -> torch.Tensor:
    """``[draws, c]`` complex64 unit-power Gaussian noise, the same on every call (``copy`` 1: the
    second reception of repeated symbols)."""
    generator = torch.Generator().manual_seed(_NOISE_SEED + copy)
    parts = torch.randn(2, draws, symbols, generator=generator) * math.sqrt(0.5)
    return torch.complex(parts[0], parts[1])


@torch.inference_mode()
def recovery_probability(codec, hidden: torch.Tensor, tokens: torch.Tensor, snr_db: torch.Tensor,
                         rates: list[int], draws: int = NOISE_DRAWS, paired: bool = False) -> torch.Tensor:
    """Share of ``draws`` noisy receptions that decode back to each token, per rate.

    Args:
        codec: the M4SC model (its channel encoder and decoder and LM head are used).
        hidden: ``[N, d]`` semantic vectors; ``tokens``: ``[N]`` the tokens they stand for.
        snr_db: ``[N]`` the receiving user's SNR (dB) for each vector.
        rates: candidate ``k``, ascending (the last is the reference when ``paired``); ``k > c``
            sends the first ``k - c`` symbols twice, combined at the receiver (noise variance halved).
        paired: count a draw at rate ``k`` only when it also decodes at ``rates[-1]``. Every rate
            sees the same noise draws (on its first ``k`` symbols), so this is the share of the full
            rate's recoveries that ``k`` keeps: draws where ``k`` wins and the full rate loses do not
            make up for draws where it loses.

    Returns:
        ``[N, len(rates)]`` float32 in [0, 1].
    """
    if hidden.shape[0] == 0:
        return torch.zeros(0, len(rates))
    device = codec.channel_encoder.linear.weight.device
    c = codec.config.channel_symbols_per_token
    hidden, tokens = hidden.to(device), tokens.to(device)
    noise = _noise_patterns(draws, c).to(device)
    no = torch.pow(10.0, -snr_db.float().to(device) / 10).view(-1, 1, 1)
    correct = []
    for k in rates:
        k_per_token = torch.full((hidden.shape[0],), min(k, c), dtype=torch.long, device=device)
        x = codec.channel_encoder(hidden, k_per_token).unsqueeze(1)  # [N, 1, c]
        x_hat, clean = (x + noise.unsqueeze(0) * torch.sqrt(no)) / (1 + no), x / (1 + no)  # MMSE with h = 1
        if k > c:  # maximum-ratio combining of two receptions of the first k - c symbols
            repeated = torch.arange(c, device=device) < k - c
            twice = (x + (noise + _noise_patterns(draws, c, copy=1).to(device)).unsqueeze(0) / 2 * torch.sqrt(no)) \
                / (1 + no / 2)
            x_hat, clean = torch.where(repeated, twice, x_hat), torch.where(repeated, x / (1 + no / 2), clean)
        correct.append(_decode_tokens(codec, x_hat, min(k, c), clean) == tokens.unsqueeze(1))  # [N, draws]
    if paired:
        correct = [ok & correct[-1] for ok in correct]
    return torch.stack([ok.float().mean(-1).cpu() for ok in correct], dim=-1)


_LOGITS_PER_CHUNK = 1 << 25  # 128 MiB of float32 logits at a time
# Below this many words the plain head costs less than the shortcuts' bookkeeping (the tiny codec's
# 1,000-odd words), and decisions stay those of the plain product to the bit.
_SHORTCUT_MIN_VOCAB = 32768


@torch.no_grad()
def _decode_tokens(codec, received: torch.Tensor, k: int, clean: torch.Tensor | None = None) -> torch.Tensor:
    """``received [N, draws, c]`` complex, read at rate ``k`` -> ``[N, draws]`` the user's argmax tokens.

    Two exact shortcuts for a large vocabulary (Gemma-3's 262,144 words cost 640 multiply-adds each
    per draw through the plain head):

    - folding: where the decoder ends in an affine map narrower than the LLM's width
      (:meth:`ChannelDecoder.split_output`), it is folded into the LM head (``W_lm A``, vocab x 2k).
    - pruning, given ``clean [N, 1, c]`` (the noise-free part of ``received``, with features linear in
      the symbols): with ``l0`` the logits of ``clean`` and ``r`` the largest feature distance of a
      draw from it, a word ``v`` can beat the reference word ``t = argmax l0`` in some draw only if
      ``l0_v + |M_v - M_t| r >= l0_t`` (Cauchy-Schwarz on rows of the folded head ``M``). Only those
      words' logits are computed; at a high SNR that is the reference word alone.

    The argmax is that of the full product up to float32 rounding (a decision can differ only where
    two logits tie to the last bits); the soft-cap (where a model has one) is monotonic and left out.
    Both apply from ``_SHORTCUT_MIN_VOCAB`` words on. No chunk holds more than ``_LOGITS_PER_CHUNK`` logits."""
    split = codec.channel_decoder.split_output(k)
    vocab = codec.lm_head.weight.shape[0]
    rates = torch.full(received.shape[:-1], k, dtype=torch.long, device=received.device)
    if vocab < _SHORTCUT_MIN_VOCAB:
        return codec.logits(codec.channel_decoder(received, rates)).argmax(-1)
    rows = max(1, _LOGITS_PER_CHUNK // max(1, received.shape[1] * vocab))
    if split.weight.shape[1] >= split.weight.shape[0]:  # folding would widen the head
        return torch.cat([codec.logits(codec.channel_decoder(chunk, rate)).argmax(-1)
                          for chunk, rate in zip(received.split(rows), rates.split(rows))])
    head, head_bias, squared_norms = _folded_head(codec, split, k)
    if clean is None or not split.linear:
        return torch.cat([torch.addmm(head_bias, split.features(chunk).flatten(0, -2).to(head.dtype), head.T)
                          .argmax(-1).view(chunk.shape[:-1]) for chunk in received.split(rows)])
    return _pruned_argmax(split.features, head, head_bias, squared_norms, received, clean)


_FOLDED_HEADS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # channel decoder -> {k: entry}


def _folded_head(codec, split, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``W_lm A [V, m]``, ``W_lm b (+ b_lm) [V]`` and the squared row norms ``[V]`` of the head folded
    with the decoder's map at rate ``k``, kept until either weight changes: a calibration asks for it
    per SNR and task, and the fold is 262,144 x 640 x 2k multiply-adds for Gemma-3. An entry holds
    the weights it was made from, so it is never matched by a new tensor at a freed address."""
    lm = codec.lm_head.weight
    weight = split.weight if split.weight._base is None else split.weight._base  # a prefix is a view
    stamp = (weight, weight._version, split.bias, split.bias._version, lm, lm._version)
    cache = _FOLDED_HEADS.setdefault(codec.channel_decoder, {})
    entry = cache.get(k)
    if entry is None or not all(a is b if isinstance(a, torch.Tensor) else a == b for a, b in zip(entry[0], stamp)):
        head = lm @ split.weight.to(lm.dtype)
        bias = split.bias.to(lm.dtype) @ lm.T
        if codec.lm_head.bias is not None:
            bias = bias + codec.lm_head.bias
        entry = cache[k] = (stamp, (head, bias, head.pow(2).sum(-1)))
    return entry[1]


def _pruned_argmax(features, head: torch.Tensor, head_bias: torch.Tensor, squared_norms: torch.Tensor,
                   received: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """:func:`_decode_tokens` with pruning: ``head [V, m]``, ``head_bias [V]``, ``squared_norms [V]``."""
    vocab = head.shape[0]
    # Float32 rounding of the bound's terms, made up for by letting a few more words through.
    norm_slack = 1e-3 * float(squared_norms.max().sqrt())
    rows = max(1, _LOGITS_PER_CHUNK // (max(4, received.shape[1]) * vocab))
    out = []
    for chunk, chunk_clean in zip(received.split(rows), clean.split(rows)):
        draws = features(chunk).to(head.dtype)  # [n, D, m]
        center = features(chunk_clean).to(head.dtype)[:, 0]  # [n, m]
        radius = (draws - center.unsqueeze(1)).norm(dim=-1).amax(-1)  # [n]
        logits = torch.addmm(head_bias, center, head.T)  # [n, V]
        reference = logits.argmax(-1)
        distance = (squared_norms + squared_norms[reference].unsqueeze(1) - 2 * head[reference] @ head.T) \
            .clamp_min(0).sqrt() + norm_slack  # [n, V] |M_v - M_t|
        best = logits.gather(1, reference.unsqueeze(1))
        slack = 1e-5 * (logits.abs().amax(-1, keepdim=True) + 1)
        candidates = logits + distance * radius.unsqueeze(1) >= best - slack  # the reference among them
        tokens = reference.unsqueeze(1).expand(-1, draws.shape[1]).clone()
        counts = candidates.sum(-1)
        # Where noise leaves many words in reach (a low SNR), gathering them costs more than the full head.
        dense = counts > vocab // 32
        if bool(dense.any()):
            tokens[dense] = torch.addmm(head_bias, draws[dense].flatten(0, 1), head.T).argmax(-1).view(-1, draws.shape[1])
        for row in torch.nonzero((counts > 1) & ~dense).flatten().tolist():
            words = torch.nonzero(candidates[row]).flatten()  # ascending: ties go to the lowest id, as in argmax
            tokens[row] = words[torch.addmm(head_bias[words], draws[row], head[words].T).argmax(-1)]
        out.append(tokens)
    return torch.cat(out)


@torch.inference_mode()
def full_rate_tokens(codec, hidden: torch.Tensor) -> torch.Tensor:
    """``hidden [N, d]`` -> ``[N]`` the tokens the receiver decodes from all ``c`` symbols without noise:
    what ``fixed`` delivers at high SNR. The channel decoder, trained in stage 3 on the targets, can
    decode a vector to another token than the BS's argmax, so the adaptive policies keep what the full
    rate decodes rather than the BS's token; else such a token has no full-rate recovery to keep and
    would drop to the smallest ``k``. Decoded in chunks of at most ``_LOGITS_PER_CHUNK`` logits."""
    if hidden.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    device = codec.channel_encoder.linear.weight.device
    rows = max(1, _LOGITS_PER_CHUNK // codec.lm_head.weight.shape[0])
    tokens = []
    for part in hidden.split(rows):
        full = torch.full((part.shape[0],), codec.config.channel_symbols_per_token, dtype=torch.long, device=device)
        symbols = codec.channel_encoder(part.to(device), full)
        tokens.append(codec.logits(codec.channel_decoder(symbols, full)).argmax(-1).cpu())
    return torch.cat(tokens)


def token_recovery(codec, hidden: torch.Tensor, token_mask: torch.Tensor, snr_db: torch.Tensor,
                   rates: list[int] | None = None) -> torch.Tensor:
    """``[rows, T, R]``: :func:`recovery_probability` (paired) of every sent vector ``hidden [rows, T, d]``
    at its row's ``snr_db [rows]`` at each of ``rates`` (None: the codec's) (0 where
    ``token_mask [rows, T]`` is False), the token being what the full rate decodes without noise
    (:func:`full_rate_tokens`)."""
    rates = rates or codec.config.rates
    recovery = torch.zeros(*token_mask.shape, len(rates))
    where = token_mask.nonzero()
    sent = hidden[token_mask]
    recovery[token_mask] = recovery_probability(codec, sent, full_rate_tokens(codec, sent), snr_db[where[:, 0]], rates,
                                                paired=True)
    return recovery
