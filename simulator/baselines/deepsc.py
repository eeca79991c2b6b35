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

This module also holds the pieces DeepSC-VQA (:mod:`simulator.baselines.deepsc_vqa`) shares:
positional encoding, the dense channel encoder/decoder, :class:`SemanticTransmission`,
:func:`pass_through_channel` and the checkpoint folder format.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from channels.conventions import complex_to_real, normalize_power, real_to_complex
from simulator.errors import not_a_folder
from simulator.models.checkpoint import CheckpointError

__all__ = [
    "DeepSCConfig",
    "DeepSC",
    "SemanticTransmission",
    "BaselineCheckpointError",
    "SinusoidalPositionalEncoding",
    "DenseChannelEncoder",
    "DenseChannelDecoder",
    "pass_through_channel",
    "encode_words",
    "save_deepsc",
    "load_deepsc",
    "FORMAT_VERSION",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SENTIMENT_LABELS = ("negative", "positive")


class BaselineCheckpointError(CheckpointError):
    """A baseline checkpoint folder is missing, corrupt, of another model, or does not match its
    config. A :class:`ValueError` (through :class:`simulator.models.checkpoint.CheckpointError`,
    which the command line already reports as one line)."""


# ---- shared building blocks ---------------------------------------------------------------------


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


# ---- checkpoint folders -------------------------------------------------------------------------


def save_model_folder(model: nn.Module, config_dict: dict, kind: str, directory: str | Path, tokenizer=None) -> Path:
    """Write ``config.json`` (``{"format_version", "model": kind, "config"}``), ``model.safetensors``
    and the tokenizer files; weights and config are renamed into place last."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().contiguous().cpu() for key, tensor in model.state_dict().items()}
    tmp_weights = directory / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp_weights), metadata={"format_version": str(FORMAT_VERSION), "model": kind})
    tmp_config = directory / (CONFIG_FILE + ".tmp")
    payload = {"format_version": FORMAT_VERSION, "model": kind, "config": config_dict}
    tmp_config.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    tmp_weights.replace(directory / WEIGHTS_FILE)
    tmp_config.replace(directory / CONFIG_FILE)
    return directory


def read_model_folder(directory: str | Path, kind: str) -> tuple[dict, Any]:
    """The stored config dict and tokenizer of a folder written by :func:`save_model_folder`."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not directory.is_dir():
        raise BaselineCheckpointError(not_a_folder(directory, "checkpoint folder"))
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise BaselineCheckpointError(f"checkpoint has no {CONFIG_FILE}: {path}")
    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as err:
        raise BaselineCheckpointError(f"corrupt {path}: {err}") from None
    if payload.get("format_version") != FORMAT_VERSION:
        raise BaselineCheckpointError(f"{path}: format_version {payload.get('format_version')!r}, expected {FORMAT_VERSION}")
    if payload.get("model") != kind:
        raise BaselineCheckpointError(f"{path}: holds a {payload.get('model')!r} model, expected {kind!r}")
    if not isinstance(payload.get("config"), dict):
        raise BaselineCheckpointError(f"corrupt {path}: no 'config' object")
    if not (directory / WEIGHTS_FILE).is_file():
        raise BaselineCheckpointError(f"checkpoint has no {WEIGHTS_FILE}: {directory / WEIGHTS_FILE}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as err:
        raise BaselineCheckpointError(f"cannot load the tokenizer in {directory}: {err}") from None
    return payload["config"], tokenizer


def load_model_weights(model: nn.Module, directory: str | Path, device: str | torch.device = "cpu") -> None:
    """Load ``directory/model.safetensors`` into ``model``; every key and shape must match."""
    from simulator.models.checkpoint import check_weights, read_weights

    weights = Path(directory) / WEIGHTS_FILE
    state = read_weights(weights, str(device), error=BaselineCheckpointError)
    check_weights(state, model.state_dict(), weights, error=BaselineCheckpointError)
    model.load_state_dict(state)


def load_model_folder(directory: str | Path, kind: str, config_cls, model_cls, device: str | torch.device = "cpu"):
    """Build ``model_cls(config, tokenizer)`` from a :func:`save_model_folder` folder of ``kind`` (eval mode).

    Raises:
        BaselineCheckpointError: missing/corrupt files, another model's folder, or weights that do
            not match ``config.json``.
    """
    data, tokenizer = read_model_folder(directory, kind)
    try:
        config = config_cls.from_dict(data)
    except ValueError as err:
        raise BaselineCheckpointError(f"{Path(directory) / CONFIG_FILE}: {err}") from None
    if len(tokenizer) != config.vocab_size:
        raise BaselineCheckpointError(f"{directory}: tokenizer has {len(tokenizer)} entries, config.json says vocab_size {config.vocab_size}")
    model = model_cls(config, tokenizer).to(device)
    load_model_weights(model, directory, device)
    return model.eval()


def config_from_dict(cls, data: dict, what: str):
    """Build the dataclass ``cls`` from ``data``; unknown keys and bad values raise ValueError."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} config key(s): {', '.join(unknown)}")
    try:
        return cls(**copy.deepcopy(data))
    except TypeError as err:
        raise ValueError(f"bad {what} config: {err}") from None


# ---- DeepSC -------------------------------------------------------------------------------------


@dataclass
class DeepSCConfig:
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
        for name in ("vocab_size", "d_model", "num_heads", "num_encoder_layers", "num_decoder_layers", "ffn_dim",
                     "symbols_per_word", "channel_hidden", "max_words"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"deepsc.{name} must be an integer >= 1, got {value!r}")
        if self.d_model % self.num_heads or self.d_model % 2:
            raise ValueError(f"deepsc.d_model ({self.d_model}) must be even and divisible by num_heads ({self.num_heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"deepsc.dropout must be in [0, 1), got {self.dropout}")
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"deepsc.labels must be >= 2 distinct class names, got {list(self.labels)}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DeepSCConfig":
        return config_from_dict(cls, data, "deepsc")


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


class DeepSC(nn.Module):
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

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    # ---- transmitter ---------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``ids [batch, words] int64`` and ``unit_mask [batch, words] bool`` on the model's device."""
        if self.tokenizer is None:
            raise ValueError("this DeepSC has no tokenizer")
        return encode_words(self.tokenizer, texts, self.config.max_words, self.device)

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
