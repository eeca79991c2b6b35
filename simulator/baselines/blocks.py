"""Pieces DeepSC and DeepSC-VQA share: sinusoidal positions, the dense channel encoder/decoder, the
transmission they put on the air and its pass through a channel, word ids, pooling and encoders."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from channels.conventions import complex_to_real, normalize_power, real_to_complex

__all__ = ["WordModel", "SinusoidalPositionalEncoding", "DenseChannelEncoder", "DenseChannelDecoder", "SemanticTransmission",
           "pass_through_channel", "encode_words", "masked_mean", "transformer_encoder"]


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sine/cosine positions of "Attention Is All You Need" (Vaswani et al., 2017).

    Input and output ``[batch, length, d_model]`` float32; ``length <= max_length``. The table is a
    non-persistent buffer (not saved; rebuilt from the config).
    """

    def __init__(self, d_model: int, max_length: int):
        super().__init__()
        position = torch.arange(max_length, dtype=torch.float32).unsqueeze(1)
        frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_length, d_model)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.table.shape[0]:
            raise ValueError(f"sequence of {x.shape[1]} positions exceeds max_length {self.table.shape[0]}")
        return x + self.table[: x.shape[1]]


class DenseChannelEncoder(nn.Module):
    """DeepSC's channel encoder: ``Linear(d -> hidden) -> ReLU -> Linear(hidden -> 2c)``, reals paired
    into ``c`` complex symbols per unit, power-normalised per sample.

    Args:
        d_model: width ``d`` of the semantic features.
        hidden: width of the hidden dense layer (the paper: 256).
        symbols_per_unit: ``c``, complex symbols per unit (word or image token).
    """

    def __init__(self, d_model: int, hidden: int, symbols_per_unit: int):
        super().__init__()
        self.symbols_per_unit = symbols_per_unit
        self.layers = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, 2 * symbols_per_unit))

    def forward(self, features: torch.Tensor, unit_mask: torch.Tensor) -> torch.Tensor:
        """Map semantic features to the samples' channel symbols.

        Args:
            features: ``[batch, units, d]`` float32.
            unit_mask: ``[batch, units]`` bool, True for units that are sent.

        Returns:
            ``[batch, units * c]`` complex64, unit-major (unit 0's ``c`` symbols first); zero where a
            unit is masked; each sample's sent symbols have mean ``|x|^2 = 1`` (Es = 1).
        """
        symbols = real_to_complex(self.layers(features).float())
        batch = symbols.shape[0]
        symbol_mask = unit_mask.repeat_interleave(self.symbols_per_unit, dim=1)
        return normalize_power(symbols.reshape(batch, -1), symbol_mask)


class DenseChannelDecoder(nn.Module):
    """DeepSC's channel decoder: ``Linear(2c -> d) -> ReLU -> Linear(d -> hidden) -> ReLU ->
    Linear(hidden -> d)`` with a residual connection and layer norm (the paper: 16 -> 128 -> 512 -> 128).

    Input ``[batch, units * c]`` complex64 (equalised received symbols); output ``[batch, units, d]``
    float32.
    """

    def __init__(self, d_model: int, hidden: int, symbols_per_unit: int):
        super().__init__()
        self.symbols_per_unit = symbols_per_unit
        self.input = nn.Linear(2 * symbols_per_unit, d_model)
        self.refine = nn.Sequential(nn.ReLU(), nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, d_model))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, received: torch.Tensor) -> torch.Tensor:
        batch = received.shape[0]
        units = received.reshape(batch, -1, self.symbols_per_unit)
        first = self.input(complex_to_real(units))
        return self.norm(first + self.refine(first))


@dataclass
class SemanticTransmission:
    """What one transmitter puts on the air for a batch of samples.

    Attributes:
        symbols: ``[batch, units * symbols_per_unit]`` complex64, Es = 1 per sent symbol, zero where
            not sent.
        unit_mask: ``[batch, units]`` bool, True for sent units (words / image tokens).
        symbols_per_unit: complex symbols per unit.
    """

    symbols: torch.Tensor
    unit_mask: torch.Tensor
    symbols_per_unit: int

    @property
    def symbol_mask(self) -> torch.Tensor:
        """``[batch, n]`` bool, True for sent symbols."""
        return self.unit_mask.repeat_interleave(self.symbols_per_unit, dim=1)

    @property
    def symbols_per_sample(self) -> torch.Tensor:
        """``[batch]`` int64: complex channel uses of each sample (units x symbols_per_unit)."""
        return self.unit_mask.sum(dim=1) * self.symbols_per_unit


def pass_through_channel(transmission: SemanticTransmission, channel: nn.Module | None,
                         no: float | torch.Tensor = 0.0, stream=None) -> torch.Tensor:
    """Send a transmission through a channel block and return the equalised symbols.

    Args:
        transmission: what the transmitter sent.
        channel: a block of the ``channels`` contract (``forward(x [batch, num_users, n] complex64,
            no, stream) -> ChannelOutput``), used with ``num_users = 1``; ``None``: noiseless identity.
        no: complex noise power ``N0`` (linear, Es = 1): a scalar or ``[batch]`` (one SNR per sample).
        stream: random stream of the channel (see :mod:`channels.randomness`).

    Returns:
        ``[batch, n]`` complex64, the channel's ``x_hat`` (equalised), zero where nothing was sent.
        Differentiable with respect to the transmitted symbols.
    """
    if channel is None:
        return transmission.symbols
    no = torch.as_tensor(no, dtype=torch.float32, device=transmission.symbols.device)
    if no.dim() == 1:
        no = no.reshape(-1, 1)
    output = channel(transmission.symbols.unsqueeze(1), no, stream)
    x_hat = output.x_hat.squeeze(1)
    return torch.where(transmission.symbol_mask, x_hat, torch.zeros_like(x_hat))


def encode_words(tokenizer, texts: list[str], max_words: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Word ids of ``texts``, right-padded, without special tokens.

    Args:
        tokenizer: a word-level tokenizer (:func:`simulator.models.tokenizer.train_word_tokenizer`).
        texts: ``batch`` strings.
        max_words: longer texts are truncated to their first ``max_words`` words.

    Returns:
        ``ids [batch, L] int64`` (pad id where masked) and ``unit_mask [batch, L] bool``, with
        ``L = max(words)``. An empty text becomes one ``<unk>`` word so every sample sends something.
    """
    rows = [tokenizer.encode(text, add_special_tokens=False)[:max_words] or [tokenizer.unk_token_id]
            for text in texts]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    return ids.to(device), mask.to(device)


def masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over units: ``[batch, units, d]`` and ``[batch, units]`` bool -> ``[batch, d]``."""
    weights = mask.unsqueeze(-1).to(features.dtype)
    return (features * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class _NoLayers(nn.Module):
    """What a transformer stack of 0 layers is: the identity (the padding mask is ignored)."""

    def forward(self, x: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return x


def transformer_encoder(d_model: int, num_heads: int, ffn_dim: int, num_layers: int, dropout: float) -> nn.Module:
    """Pre-norm transformer encoder stack with a final layer norm (``batch_first``); the identity
    for ``num_layers = 0``. Called as ``stack(x [batch, length, d], src_key_padding_mask [batch, length])``."""
    if num_layers == 0:
        return _NoLayers()
    layer = nn.TransformerEncoderLayer(d_model, num_heads, ffn_dim, dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)


class WordModel(nn.Module):
    """Base of the baselines that read text: ``tokenizer`` (or None), ``config.max_words`` and
    :meth:`tokenize`; ``device`` is where the weights are."""

    tokenizer: object
    config: object

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``ids [batch, words] int64`` and ``unit_mask [batch, words] bool`` on the model's device."""
        if self.tokenizer is None:
            raise ValueError(f"this {type(self).__name__} has no tokenizer")
        return encode_words(self.tokenizer, texts, self.config.max_words, self.device)

