"""DeepSC: the transformer-based text semantic communication system of Xie, Qin, Li and Juang,
"Deep Learning Enabled Semantic Communication Systems", IEEE Trans. Signal Processing 69, 2021.

Link split (what each side holds)::

    transmitter: word embedding + sinusoidal positions -> transformer encoder (semantic encoder)
                 -> dense channel encoder: d -> hidden (ReLU) -> 2 * symbols_per_word reals
                 -> complex symbols, power-normalised to Es = 1 per complex symbol (per sentence)
    channel:     any block of the ``channels`` contract (AWGN, Rayleigh, ...), equalised output
    receiver:    dense channel decoder: 2 * symbols_per_word -> d -> hidden -> d (residual + norm)
                 -> (a) transformer decoder + LM head: the sentence, greedy (the paper's task)
                 -> (b) mean-pool + MLP: positive / negative (the text-classification baseline of
                        the M4SC paper's Fig. 5b)

One word (one token of the word-level tokenizer, punctuation marks included) is one *unit*: it
costs ``symbols_per_word`` complex channel uses, so a sentence of ``W`` words costs
``W * symbols_per_word`` symbols; analog bytes are ``symbols * 2 * bits_per_real / 8``. No BOS/EOS
token is sent; the receiver is assumed to know the sentence length (frame length).

The pieces DeepSC-VQA shares are in :mod:`simulator.baselines.blocks`; the checkpoint folder format
in :mod:`simulator.baselines.folders`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from simulator.baselines.blocks import (DenseChannelDecoder, DenseChannelEncoder, SemanticTransmission,
                                        SinusoidalPositionalEncoding, WordModel, masked_mean, pass_through_channel,
                                        transformer_encoder)
from simulator.baselines.folders import StoredConfig, load_model_folder, save_model_folder

__all__ = ["DeepSCConfig", "DeepSC", "DeepSCOutput", "save_deepsc", "load_deepsc", "SENTIMENT_LABELS"]

SENTIMENT_LABELS = ("negative", "positive")


# ---- DeepSC -------------------------------------------------------------------------------------


@dataclass
class DeepSCConfig(StoredConfig):
    """Architecture of :class:`DeepSC` (what ``config.json`` holds). Paper values in brackets.

    Attributes:
        vocab_size: tokenizer size (ids: pad 0, bos 1, eos 2, unk 3).
        d_model: semantic feature width [128].
        num_heads: attention heads [8].
        num_encoder_layers / num_decoder_layers: transformer layers [3 / 3].
        ffn_dim: feed-forward width [512].
        dropout: dropout in the transformer layers [0.1].
        symbols_per_word: complex channel symbols per word [8, i.e. 16 reals].
        channel_hidden: hidden width of the channel encoder and decoder [256 / 512].
        max_words: longest sentence sent, in words; longer ones are truncated.
        labels: class names of the classification head, index order.
    """

    KIND = "deepsc"

    vocab_size: int
    d_model: int = 128
    num_heads: int = 8
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    ffn_dim: int = 512
    dropout: float = 0.1
    symbols_per_word: int = 8
    channel_hidden: int = 256
    max_words: int = 32
    labels: tuple[str, ...] = SENTIMENT_LABELS
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self):
        self.labels = tuple(self.labels)
        self.check_positive("vocab_size", "d_model", "num_heads", "num_encoder_layers", "num_decoder_layers", "ffn_dim",
                            "symbols_per_word", "channel_hidden", "max_words")
        self.check_transformer(self.labels, "labels")


@dataclass
class DeepSCOutput:
    """Receiver outputs of a teacher-forced forward pass.

    Attributes:
        transmission: what was sent.
        features: ``[batch, words, d]`` float32, the channel decoder's semantic features.
        class_logits: ``[batch, num_labels]`` float32.
        token_logits: ``[batch, words + 1, vocab]`` float32 (next-word logits; None without decoder input).
    """

    transmission: SemanticTransmission
    features: torch.Tensor
    class_logits: torch.Tensor
    token_logits: torch.Tensor | None = None


class DeepSC(WordModel):
    """DeepSC transmitter + receiver with a reconstruction head and a classification head.

    Args:
        config: the architecture.
        tokenizer: the word-level tokenizer (needed for the text-level methods; saved with the model).
    """

    def __init__(self, config: DeepSCConfig, tokenizer=None):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        c = config
        # transmitter
        self.embedding = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        self.positions = SinusoidalPositionalEncoding(c.d_model, c.max_words + 2)
        self.semantic_encoder = transformer_encoder(c.d_model, c.num_heads, c.ffn_dim, c.num_encoder_layers, c.dropout)
        self.channel_encoder = DenseChannelEncoder(c.d_model, c.channel_hidden, c.symbols_per_word)
        # receiver
        self.channel_decoder = DenseChannelDecoder(c.d_model, 2 * c.channel_hidden, c.symbols_per_word)
        self.decoder_embedding = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        decoder_layer = nn.TransformerDecoderLayer(c.d_model, c.num_heads, c.ffn_dim, c.dropout,
                                                   batch_first=True, norm_first=True)
        self.semantic_decoder = nn.TransformerDecoder(decoder_layer, c.num_decoder_layers, norm=nn.LayerNorm(c.d_model))
        self.lm_head = nn.Linear(c.d_model, c.vocab_size)
        self.classifier = nn.Sequential(nn.Linear(c.d_model, c.d_model), nn.ReLU(), nn.Linear(c.d_model, len(c.labels)))
        self.embed_scale = math.sqrt(c.d_model)

    # ---- transmitter ---------------------------------------------------------------------------
    def transmit_ids(self, ids: torch.Tensor, unit_mask: torch.Tensor) -> SemanticTransmission:
        """Semantic + channel encoding of word ids.

        Args:
            ids: ``[batch, words]`` int64, right-padded.
            unit_mask: ``[batch, words]`` bool, True for real words.

        Returns:
            ``symbols [batch, words * symbols_per_word]`` complex64 (Es = 1 per sent symbol).
        """
        x = self.positions(self.embedding(ids) * self.embed_scale)
        features = self.semantic_encoder(x, src_key_padding_mask=~unit_mask)
        symbols = self.channel_encoder(features, unit_mask)
        return SemanticTransmission(symbols, unit_mask, self.config.symbols_per_word)

    def transmit(self, texts: list[str]) -> SemanticTransmission:
        """Sentences -> channel symbols (see :meth:`transmit_ids`)."""
        return self.transmit_ids(*self.tokenize(texts))

    def symbols_per_text(self, texts: list[str]) -> list[int]:
        """Complex channel uses of each text (words x symbols_per_word), without running the model."""
        _, mask = self.tokenize(texts)
        return (mask.sum(1) * self.config.symbols_per_word).tolist()

    # ---- receiver ------------------------------------------------------------------------------
    def receive(self, received: torch.Tensor, unit_mask: torch.Tensor) -> torch.Tensor:
        """Channel decoding: ``[batch, words * c]`` complex64 -> features ``[batch, words, d]`` float32."""
        return self.channel_decoder(received) * unit_mask.unsqueeze(-1)

    def class_logits(self, features: torch.Tensor, unit_mask: torch.Tensor) -> torch.Tensor:
        """Classification head: mean-pooled features -> ``[batch, num_labels]`` logits."""
        return self.classifier(masked_mean(features, unit_mask))

    def token_logits(self, features: torch.Tensor, unit_mask: torch.Tensor, decoder_input: torch.Tensor) -> torch.Tensor:
        """Semantic decoder, teacher-forced: ``decoder_input [batch, T]`` int64 (BOS first) ->
        next-word logits ``[batch, T, vocab]``."""
        length = decoder_input.shape[1]
        y = self.positions(self.decoder_embedding(decoder_input) * self.embed_scale)
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=y.device), diagonal=1)
        hidden = self.semantic_decoder(y, features, tgt_mask=causal,
                                       tgt_key_padding_mask=decoder_input == self.config.pad_token_id,
                                       memory_key_padding_mask=~unit_mask)
        return self.lm_head(hidden)

    @torch.no_grad()
    def greedy_decode(self, features: torch.Tensor, unit_mask: torch.Tensor, max_new_tokens: int | None = None) -> torch.Tensor:
        """Greedy sentence reconstruction: ``[batch, T]`` int64 word ids (EOS and after set to pad)."""
        c = self.config
        steps = max_new_tokens or c.max_words + 1
        batch = features.shape[0]
        tokens = torch.full((batch, 1), c.bos_token_id, dtype=torch.long, device=features.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=features.device)
        for _ in range(steps):
            logits = self.token_logits(features, unit_mask, tokens)[:, -1]
            logits[:, c.pad_token_id] = -torch.inf
            nxt = logits.argmax(-1)
            nxt = torch.where(finished, torch.full_like(nxt, c.pad_token_id), nxt)
            finished |= nxt == c.eos_token_id
            tokens = torch.cat([tokens, nxt.unsqueeze(1)], dim=1)
            if bool(finished.all()):
                break
        out = tokens[:, 1:]
        return torch.where(out == c.eos_token_id, torch.full_like(out, c.pad_token_id), out)

    # ---- both sides ----------------------------------------------------------------------------
    def forward(self, ids: torch.Tensor, unit_mask: torch.Tensor, channel: nn.Module | None = None,
                no: float | torch.Tensor = 0.0, stream=None, reconstruct: bool = True) -> DeepSCOutput:
        """Transmit, pass the channel, receive; teacher-forced reconstruction logits when ``reconstruct``.

        Args:
            ids, unit_mask: ``[batch, words]`` int64 / bool (from :meth:`tokenize`).
            channel: a ``channels`` block or None (noiseless).
            no: complex noise power ``N0`` (linear): scalar or ``[batch]``.
        """
        transmission = self.transmit_ids(ids, unit_mask)
        features = self.receive(pass_through_channel(transmission, channel, no, stream), unit_mask)
        logits = None
        if reconstruct:
            logits = self.token_logits(features, unit_mask, self.decoder_input(ids))
        return DeepSCOutput(transmission, features, self.class_logits(features, unit_mask), logits)

    def decoder_input(self, ids: torch.Tensor) -> torch.Tensor:
        """``[BOS, w_1 .. w_W]`` (right-padded): ``[batch, words + 1]`` int64."""
        bos = torch.full((ids.shape[0], 1), self.config.bos_token_id, dtype=torch.long, device=ids.device)
        return torch.cat([bos, ids], dim=1)

    def reconstruction_target(self, ids: torch.Tensor, unit_mask: torch.Tensor) -> torch.Tensor:
        """``[w_1 .. w_W, EOS]`` with pad after EOS: ``[batch, words + 1]`` int64."""
        c = self.config
        pad = torch.full((ids.shape[0], 1), c.pad_token_id, dtype=torch.long, device=ids.device)
        target = torch.cat([ids, pad], dim=1)
        target[torch.arange(ids.shape[0], device=ids.device), unit_mask.sum(1)] = c.eos_token_id
        return target

    def loss(self, ids: torch.Tensor, unit_mask: torch.Tensor, label_ids: torch.Tensor | None,
             channel: nn.Module | None = None, no: float | torch.Tensor = 0.0, stream=None,
             reconstruction_weight: float = 1.0, classification_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
        """Weighted sum of the reconstruction cross-entropy (per word, the paper's loss) and the
        classification cross-entropy. Returns ``(loss, {"reconstruction": float, "classification": float})``."""
        out = self.forward(ids, unit_mask, channel, no, stream, reconstruct=reconstruction_weight > 0)
        total = out.class_logits.new_zeros(())
        parts = {}
        if reconstruction_weight > 0:
            target = self.reconstruction_target(ids, unit_mask)
            rec = F.cross_entropy(out.token_logits.flatten(0, 1), target.flatten(), ignore_index=self.config.pad_token_id)
            total = total + reconstruction_weight * rec
            parts["reconstruction"] = float(rec.detach())
        if classification_weight > 0 and label_ids is not None:
            cls = F.cross_entropy(out.class_logits, label_ids)
            total = total + classification_weight * cls
            parts["classification"] = float(cls.detach())
        return total, parts

    # ---- text level ----------------------------------------------------------------------------
    @torch.no_grad()
    def classify(self, texts: list[str], channel: nn.Module | None = None, no: float | torch.Tensor = 0.0,
                 stream=None) -> list[str]:
        """Predicted class name of each text after the channel."""
        ids, mask = self.tokenize(texts)
        out = self.forward(ids, mask, channel, no, stream, reconstruct=False)
        return [self.config.labels[i] for i in out.class_logits.argmax(-1).tolist()]

    @torch.no_grad()
    def reconstruct(self, texts: list[str], channel: nn.Module | None = None, no: float | torch.Tensor = 0.0,
                    stream=None) -> list[str]:
        """The receiver's greedy reconstruction of each text after the channel."""
        ids, mask = self.tokenize(texts)
        transmission = self.transmit_ids(ids, mask)
        features = self.receive(pass_through_channel(transmission, channel, no, stream), mask)
        tokens = self.greedy_decode(features, mask)
        return self.tokenizer.batch_decode(tokens.tolist(), skip_special_tokens=True)


def save_deepsc(model: DeepSC, directory: str | Path) -> Path:
    """Write a DeepSC folder: ``config.json`` + ``model.safetensors`` + tokenizer files."""
    return save_model_folder(model, model.config.to_dict(), "deepsc", directory, model.tokenizer)


def load_deepsc(directory: str | Path, device: str | torch.device = "cpu") -> DeepSC:
    """Build a :class:`DeepSC` from a folder of :func:`save_deepsc` (eval mode; errors as :func:`load_model_folder`)."""
    return load_model_folder(directory, "deepsc", DeepSCConfig, DeepSC, device)
