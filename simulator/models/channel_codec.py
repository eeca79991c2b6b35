"""Channel encoder and decoder of the semantic codec (the paper's Fig. 3).

The encoder maps each output token's semantic vector ``h_t`` (width ``d``) to ``c`` complex
channel symbols with ``Es = 1`` per symbol; the decoder maps received symbols back to width ``d``.
Paper widths: ``d = 2304``, ``2c = 512`` reals.

Nested rates: with ``rates`` (``k`` per token, ``1 <= k <= c``) the encoder sends only the first
``k`` symbols of a token, normalised to ``Es = 1`` over those ``k``, and the decoder reads only the
first ``k`` received symbols (the others are zero-filled, whatever the channel put there). One
encoder/decoder pair trained with random ``k`` (stage 3, ``stages.joint.rates``) learns to put what
matters most in the first symbols, as a truncated PCA would. ``rates=None`` is the single-rate codec;
``k = c`` everywhere takes exactly the same path.

Short prefixes read poorly through one shared linear decoder: the shipped tiny codec's VQA answers
at 20 dB are recovered 0.60 of the time from 4 symbols and 0.21 from 2, against 0.79 from all 32.
Two per-rate additions, both trained with everything else frozen (stage ``rates``,
:mod:`simulator.training.stages`), so the full rate (and with it the ``fixed`` system) is untouched:

- rate decoders (``rate_decoders``): ``Linear(2k -> d)`` of its own for a prefix ``k``. The symbols
  sent are still the prefix, so the codec stays nested at these rates. 4 symbols then read 0.72.
- short codes (``short_codes``): a ``k`` with an encoder and a decoder of its own, each a small
  MLP (``d -> w -> 2k``, ``2k -> w -> d``), normalised to ``Es = 1`` over its ``k`` symbols: a learned
  code, which reads far better than a prefix of the same length (the shipped codec's VQA answers:
  0.76 from 2 symbols at 20 dB where a prefix with its own decoder reads 0.45-0.70; 0.78 from 8 at
  5 dB, where the 8-symbol prefix reads 0.72 and all 32 nested symbols 0.77). Its symbols are not a
  prefix of the others, so a short-coded token is decoded only at its own ``k``
  (:func:`simulator.adaptation.decide_rates` keeps public vectors off short codes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from channels.conventions import complex_to_real, normalize_power, real_to_complex

__all__ = ["ChannelEncoder", "ChannelDecoder", "OutputSplit", "prefix_mask", "add_short_codes"]


def prefix_mask(rates: torch.Tensor, symbols_per_token: int) -> torch.Tensor:
    """``rates [...]`` int (symbols kept per token) -> ``[..., c]`` bool, True on each token's first ``k``."""
    positions = torch.arange(symbols_per_token, device=rates.device)
    return positions < rates.unsqueeze(-1)


def _full_rate(rates: torch.Tensor | None, symbols_per_token: int) -> bool:
    return rates is None or bool((rates >= symbols_per_token).all())


@torch.no_grad()
def _identity_(linear: nn.Linear) -> None:
    """Zero bias and a leading identity block: output ``i`` = input ``i`` for ``i < min(in, out)``."""
    linear.weight.zero_()
    linear.bias.zero_()
    n = min(linear.in_features, linear.out_features)
    linear.weight[:n, :n] = torch.eye(n)


def _short_code(inputs: int, width: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, width), nn.GELU(), nn.Linear(width, outputs))


def _per_rate(out: torch.Tensor, rates: torch.Tensor, modules: nn.ModuleDict, run) -> torch.Tensor:
    """``out`` with the tokens at each rate ``k`` of ``modules`` replaced by ``run(modules[k], at_k, k)``."""
    for key, module in modules.items():
        at_k = rates == int(key)
        if bool(at_k.any()):
            out = out.index_put((at_k,), run(module, at_k, int(key)).to(out.dtype))
    return out


class ChannelEncoder(nn.Module):
    """``Linear(d -> 2c)``, paired into complex symbols and normalised per token.

    Input ``[..., d]`` float; output ``[..., c]`` complex64 with ``mean |x|^2 = 1`` over each
    token's ``c`` symbols. ``short_codes``: rates ``k`` sent by an encoder of their own (module
    docstring), ``width`` wide.
    """

    def __init__(self, hidden_size: int, symbols_per_token: int, short_codes: list[int] | tuple = (),
                 width: int = 256):
        super().__init__()
        self.hidden_size, self.symbols_per_token = hidden_size, symbols_per_token
        self.linear = nn.Linear(hidden_size, 2 * symbols_per_token)
        self.short_codes = nn.ModuleDict({str(k): _short_code(hidden_size, width, 2 * k) for k in short_codes})

    def forward(self, hidden: torch.Tensor, rates: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden [..., d]``, ``rates [...]`` int or None -> ``[..., c]`` complex64 (zero after each
        token's ``k``-th symbol; ``Es = 1`` over the ``k`` sent)."""
        reals = self.linear(hidden.to(self.linear.weight.dtype)).float()
        if _full_rate(rates, self.symbols_per_token):
            return normalize_power(real_to_complex(reals))
        rates = rates.to(reals.device).expand(reals.shape[:-1])
        if len(self.short_codes):
            def short(code, at_k, k):
                return nn.functional.pad(code(hidden[at_k].to(self.linear.weight.dtype)).float(),
                                         (0, 2 * (self.symbols_per_token - k)))
            reals = _per_rate(reals, rates, self.short_codes, short)
        mask = prefix_mask(rates, self.symbols_per_token)
        return normalize_power(real_to_complex(reals), mask)

    def init_identity(self) -> None:
        """Copy the first ``min(d, 2c)`` coordinates of ``h`` into the reals; needs ``2c >= d`` to be lossless."""
        _identity_(self.linear)


class OutputSplit(NamedTuple):
    """A decoder at one rate as ``features(symbols [..., c]) -> [..., m]`` then ``weight [d, m]``,
    ``bias [d]``; ``linear``: whether ``features`` is linear in the symbols (a slice of their reals)."""

    features: Callable[[torch.Tensor], torch.Tensor]
    weight: torch.Tensor
    bias: torch.Tensor
    linear: bool


class ChannelDecoder(nn.Module):
    """``Linear(2c -> d)``: received complex symbols ``[..., c]`` -> semantic vectors ``[..., d]`` float.

    ``rate_decoders``: prefixes ``k < c`` with a ``Linear(2k -> d)`` of their own; ``short_codes``:
    rates with a decoder MLP of their own, ``width`` wide (module docstring). Other rates use the
    shared map with zero-fill.
    """

    def __init__(self, hidden_size: int, symbols_per_token: int, rate_decoders: list[int] | tuple = (),
                 short_codes: list[int] | tuple = (), width: int = 256):
        super().__init__()
        self.hidden_size, self.symbols_per_token = hidden_size, symbols_per_token
        self.linear = nn.Linear(2 * symbols_per_token, hidden_size)
        self.rate_decoders = nn.ModuleDict({str(k): nn.Linear(2 * k, hidden_size) for k in rate_decoders})
        self.short_codes = nn.ModuleDict({str(k): _short_code(2 * k, width, hidden_size) for k in short_codes})

    def forward(self, symbols: torch.Tensor, rates: torch.Tensor | None = None) -> torch.Tensor:
        """``symbols [..., c]`` complex, ``rates [...]`` int or None -> ``[..., d]``; symbols past a
        token's ``k`` are ignored (zero-filled)."""
        if _full_rate(rates, self.symbols_per_token):
            return self.linear(complex_to_real(symbols).to(self.linear.weight.dtype))
        rates = rates.to(symbols.device).expand(symbols.shape[:-1])
        mask = prefix_mask(rates, self.symbols_per_token)
        symbols = torch.where(mask, symbols, torch.zeros_like(symbols))
        out = self.linear(complex_to_real(symbols).to(self.linear.weight.dtype))

        def prefix(decoder, at_k, k):
            return decoder(complex_to_real(symbols[at_k][..., :k]).to(self.linear.weight.dtype))
        out = _per_rate(out, rates, self.rate_decoders, prefix)
        return _per_rate(out, rates, self.short_codes, prefix)

    def split_output(self, k: int) -> OutputSplit:
        """Decoding at one rate ``k`` as features then an affine map: ``forward(symbols, k)`` equals
        ``features(symbols) @ weight.T + bias`` (:class:`OutputSplit`). A consumer can fold the map
        into what follows it (:func:`simulator.token_recovery.recovery_probability` folds it into the LM head)."""
        dtype = self.linear.weight.dtype
        if k >= self.symbols_per_token:
            return OutputSplit(lambda symbols: complex_to_real(symbols).to(dtype), self.linear.weight, self.linear.bias, True)

        def prefix(symbols: torch.Tensor) -> torch.Tensor:
            return complex_to_real(symbols[..., :k]).to(dtype)
        if str(k) in self.short_codes:
            code = self.short_codes[str(k)]
            return OutputSplit(lambda symbols: code[:-1](prefix(symbols)), code[-1].weight, code[-1].bias, False)
        if str(k) in self.rate_decoders:
            decoder = self.rate_decoders[str(k)]
            return OutputSplit(prefix, decoder.weight, decoder.bias, True)
        return OutputSplit(prefix, self.linear.weight[:, :2 * k], self.linear.bias, True)

    def add_rate_decoders(self, rates: list[int]) -> None:
        """Give each ``k`` in ``rates`` (``< c``) a decoder of its own, starting as the shared map's
        first ``2k`` columns, i.e. exactly the zero-fill decoding it replaces."""
        for k in rates:
            if str(k) in self.rate_decoders:
                continue
            if not 1 <= k < self.symbols_per_token:
                raise ValueError(f"rate decoders are for 1 <= k < c = {self.symbols_per_token}, got {k}")
            decoder = nn.Linear(2 * k, self.hidden_size).to(self.linear.weight.device, self.linear.weight.dtype)
            with torch.no_grad():
                decoder.weight.copy_(self.linear.weight[:, :2 * k])
                decoder.bias.copy_(self.linear.bias)
            self.rate_decoders[str(k)] = decoder

    def init_identity(self) -> None:
        """Inverse of :meth:`ChannelEncoder.init_identity` up to the encoder's power scaling."""
        _identity_(self.linear)


def add_short_codes(encoder: ChannelEncoder, decoder: ChannelDecoder, rates: list[int], width: int,
                    seed: int) -> None:
    """Give each ``k`` in ``rates`` (``< c``) an encoder and a decoder MLP of their own, with PyTorch's
    default initialisation drawn from ``seed`` (the global random state is left as it was)."""
    c = encoder.symbols_per_token
    weight = encoder.linear.weight
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for k in rates:
            if str(k) in encoder.short_codes:
                continue
            if not 1 <= k < c:
                raise ValueError(f"short codes are for 1 <= k < c = {c}, got {k}")
            encoder.short_codes[str(k)] = _short_code(encoder.hidden_size, width, 2 * k).to(weight.device, weight.dtype)
            decoder.short_codes[str(k)] = _short_code(2 * k, width, decoder.hidden_size).to(weight.device, weight.dtype)
