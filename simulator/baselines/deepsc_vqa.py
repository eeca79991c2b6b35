"""DeepSC-VQA: the multi-user, task-oriented semantic communication system of Xie, Qin, Tao and
Letaief, "Task-Oriented Multi-User Semantic Communications", IEEE JSAC 40(9), 2022 (MU-DeepSC).

Two transmitters (two users) and one receiver that fuses them::

    image user: image [3, 64, 64] -> CNN (3 stride-2 convs) -> 8 x 8 = 64 image tokens (width d)
                + learned positions -> transformer encoder -> dense channel encoder
                -> symbols_per_image_token complex symbols per token, Es = 1 per symbol
    text user:  question words -> embedding + sinusoidal positions -> transformer encoder
                -> dense channel encoder -> symbols_per_word complex symbols per word, Es = 1
    channel:    each user through its own channel realisation (own fading and noise draws)
    receiver:   one dense channel decoder per user -> modality + position embeddings
                -> [ANSWER; question features; image features] -> transformer (reasoning module)
                -> mean over the fused sequence -> MLP -> one of the training answers

Accounting per sample: ``image_tokens * symbols_per_image_token`` complex symbols from the image
user plus ``words * symbols_per_word`` from the text user (analog bytes = symbols x 2 x
bits_per_real / 8). The receiver is assumed to know the question length (frame length).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from simulator.baselines.deepsc import (
    DenseChannelDecoder,
    DenseChannelEncoder,
    SemanticTransmission,
    SinusoidalPositionalEncoding,
    config_from_dict,
    encode_words,
    load_model_folder,
    masked_mean,
    pass_through_channel,
    save_model_folder,
    transformer_encoder,
)

__all__ = ["DeepSCVQAConfig", "DeepSCVQA", "VQATransmission", "VQAOutput", "save_deepsc_vqa", "load_deepsc_vqa"]

CONV_DOWNSAMPLING = 8  # three stride-2 convolutions


@dataclass
class DeepSCVQAConfig:
    """Architecture of :class:`DeepSCVQA` (what ``config.json`` holds).

    Attributes:
        vocab_size: question tokenizer size (ids: pad 0, bos 1, eos 2, unk 3).
        answers: the answer vocabulary (class names, index order).
        image_size: square input images, pixels; a multiple of 8 (image tokens: ``(image_size / 8)^2``).
        d_model, num_heads, ffn_dim, dropout: transformer widths.
        num_image_layers / num_text_layers: transformer layers of the image / text transmitter.
        num_reasoning_layers: transformer layers of the receiver's reasoning module.
        symbols_per_image_token: complex symbols per image token (the paper's budgets: 2 / 4 / 16).
        symbols_per_word: complex symbols per question word (the paper's budgets: 2 / 4 / 10).
        channel_hidden: hidden width of the dense channel encoders (decoders use twice this).
        max_words: longest question sent, in words.
    """

    vocab_size: int
    answers: tuple[str, ...]
    image_size: int = 64
    d_model: int = 128
    num_heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.1
    num_image_layers: int = 1
    num_text_layers: int = 2
    num_reasoning_layers: int = 2
    symbols_per_image_token: int = 16
    symbols_per_word: int = 10
    channel_hidden: int = 256
    max_words: int = 40
    pad_token_id: int = 0

    def __post_init__(self):
        self.answers = tuple(self.answers)
        for name in ("vocab_size", "image_size", "d_model", "num_heads", "ffn_dim", "num_reasoning_layers",
                     "symbols_per_image_token", "symbols_per_word", "channel_hidden", "max_words"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"deepsc_vqa.{name} must be an integer >= 1, got {value!r}")
        for name in ("num_image_layers", "num_text_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"deepsc_vqa.{name} must be >= 0, got {getattr(self, name)}")
        if self.image_size % CONV_DOWNSAMPLING:
            raise ValueError(f"deepsc_vqa.image_size must be a multiple of {CONV_DOWNSAMPLING}, got {self.image_size}")
        if self.d_model % self.num_heads or self.d_model % 2:
            raise ValueError(f"deepsc_vqa.d_model ({self.d_model}) must be even and divisible by num_heads ({self.num_heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"deepsc_vqa.dropout must be in [0, 1), got {self.dropout}")
        if len(self.answers) < 2 or len(set(self.answers)) != len(self.answers):
            raise ValueError("deepsc_vqa.answers must be >= 2 distinct answers")

    @property
    def image_tokens(self) -> int:
        """Image tokens per image: ``(image_size / 8)^2``."""
        return (self.image_size // CONV_DOWNSAMPLING) ** 2

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["answers"] = list(self.answers)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DeepSCVQAConfig":
        return config_from_dict(cls, data, "deepsc_vqa")


@dataclass
class VQATransmission:
    """What the two users of one VQA sample send.

    Attributes:
        image: the image user's transmission (``image_tokens`` units, all sent).
        text: the text user's transmission (one unit per question word).
    """

    image: SemanticTransmission
    text: SemanticTransmission

    @property
    def symbols_per_sample(self) -> torch.Tensor:
        """``[batch]`` int64 complex channel uses of both users together."""
        return self.image.symbols_per_sample + self.text.symbols_per_sample


@dataclass
class VQAOutput:
    """``logits [batch, num_answers]`` float32 and what was sent."""

    logits: torch.Tensor
    transmission: VQATransmission


class ImageSemanticEncoder(nn.Module):
    """CNN + transformer: ``[batch, 3, S, S]`` float in [0, 1] -> ``[batch, (S/8)^2, d]`` float32."""

    def __init__(self, config: DeepSCVQAConfig):
        super().__init__()
        d = config.d_model
        self.convolutions = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, d, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(d, d, 3, stride=1, padding=1),
        )
        self.positions = nn.Parameter(torch.randn(config.image_tokens, d) * 0.02)
        self.encoder = transformer_encoder(d, config.num_heads, config.ffn_dim, config.num_image_layers, config.dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.convolutions(images * 2.0 - 1.0)  # [batch, d, S/8, S/8]
        tokens = grid.flatten(2).transpose(1, 2) + self.positions
        return self.encoder(tokens)


class DeepSCVQA(nn.Module):
    """DeepSC-VQA: image transmitter, text transmitter, fusing receiver with an answer classifier.

    Args:
        config: the architecture.
        tokenizer: the question tokenizer (for the text-level methods; saved with the model).
    """

    def __init__(self, config: DeepSCVQAConfig, tokenizer=None):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        c, d = config, config.d_model
        # image user
        self.image_encoder = ImageSemanticEncoder(config)
        self.image_channel_encoder = DenseChannelEncoder(d, c.channel_hidden, c.symbols_per_image_token)
        # text user
        self.word_embedding = nn.Embedding(c.vocab_size, d, padding_idx=c.pad_token_id)
        self.word_positions = SinusoidalPositionalEncoding(d, c.max_words)
        self.text_encoder = transformer_encoder(d, c.num_heads, c.ffn_dim, c.num_text_layers, c.dropout)
        self.text_channel_encoder = DenseChannelEncoder(d, c.channel_hidden, c.symbols_per_word)
        # receiver
        self.image_channel_decoder = DenseChannelDecoder(d, 2 * c.channel_hidden, c.symbols_per_image_token)
        self.text_channel_decoder = DenseChannelDecoder(d, 2 * c.channel_hidden, c.symbols_per_word)
        self.answer_query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.modality_embedding = nn.Parameter(torch.randn(2, d) * 0.02)  # 0: text, 1: image
        self.receiver_image_positions = nn.Parameter(torch.randn(c.image_tokens, d) * 0.02)
        self.reasoning = transformer_encoder(d, c.num_heads, c.ffn_dim, c.num_reasoning_layers, c.dropout)
        self.answer_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, len(c.answers)))

    @property
    def device(self) -> torch.device:
        return self.word_embedding.weight.device

    # ---- transmitters --------------------------------------------------------------------------
    def tokenize(self, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``ids [batch, words] int64`` and ``unit_mask [batch, words] bool`` on the model's device."""
        if self.tokenizer is None:
            raise ValueError("this DeepSC-VQA has no tokenizer")
        return encode_words(self.tokenizer, questions, self.config.max_words, self.device)

    def transmit_image(self, images: torch.Tensor) -> SemanticTransmission:
        """Image user: ``[batch, 3, S, S]`` float32 in [0, 1] -> ``[batch, image_tokens *
        symbols_per_image_token]`` complex64, Es = 1 per symbol."""
        if images.shape[-2:] != (self.config.image_size, self.config.image_size):
            raise ValueError(f"images must be {self.config.image_size}x{self.config.image_size}, got {tuple(images.shape[-2:])}")
        features = self.image_encoder(images.to(self.device, torch.float32))
        unit_mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        return SemanticTransmission(self.image_channel_encoder(features, unit_mask), unit_mask,
                                    self.config.symbols_per_image_token)

    def transmit_question_ids(self, ids: torch.Tensor, unit_mask: torch.Tensor) -> SemanticTransmission:
        """Text user: ``[batch, words]`` ids + mask -> ``[batch, words * symbols_per_word]`` complex64."""
        x = self.word_positions(self.word_embedding(ids) * self.config.d_model ** 0.5)
        features = self.text_encoder(x, src_key_padding_mask=~unit_mask)
        return SemanticTransmission(self.text_channel_encoder(features, unit_mask), unit_mask, self.config.symbols_per_word)

    def transmit(self, images: torch.Tensor, ids: torch.Tensor, unit_mask: torch.Tensor) -> VQATransmission:
        """Both users' transmissions."""
        return VQATransmission(self.transmit_image(images), self.transmit_question_ids(ids, unit_mask))

    def symbols_per_question(self, questions: list[str]) -> list[int]:
        """Text user's complex channel uses per question (words x symbols_per_word)."""
        _, mask = self.tokenize(questions)
        return (mask.sum(1) * self.config.symbols_per_word).tolist()

    @property
    def symbols_per_image(self) -> int:
        """Image user's complex channel uses per image (image_tokens x symbols_per_image_token)."""
        return self.config.image_tokens * self.config.symbols_per_image_token

    # ---- receiver ------------------------------------------------------------------------------
    def receive(self, image_received: torch.Tensor, text_received: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Fuse both users' received symbols and answer.

        Args:
            image_received: ``[batch, image_tokens * symbols_per_image_token]`` complex64 (equalised).
            text_received: ``[batch, words * symbols_per_word]`` complex64 (equalised).
            text_mask: ``[batch, words]`` bool, which words were sent.

        Returns:
            ``[batch, num_answers]`` float32 logits.
        """
        image_features = self.image_channel_decoder(image_received) + self.receiver_image_positions + self.modality_embedding[1]
        text_features = self.word_positions(self.text_channel_decoder(text_received)) + self.modality_embedding[0]
        batch = image_features.shape[0]
        query = self.answer_query.expand(batch, 1, -1)
        sequence = torch.cat([query, text_features, image_features], dim=1)
        keep = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=text_mask.device), text_mask,
                          torch.ones(image_features.shape[:2], dtype=torch.bool, device=text_mask.device)], dim=1)
        fused = self.reasoning(sequence, src_key_padding_mask=~keep)
        return self.answer_head(masked_mean(fused, keep))

    # ---- both sides ----------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, ids: torch.Tensor, unit_mask: torch.Tensor,
                channel: nn.Module | None = None, no: float | torch.Tensor = 0.0,
                image_stream=None, text_stream=None, text_no: float | torch.Tensor | None = None) -> VQAOutput:
        """Both transmitters, each through its own realisation of ``channel``, then the receiver.

        Args:
            images: ``[batch, 3, S, S]`` float32 in [0, 1].
            ids, unit_mask: ``[batch, words]`` int64 / bool question words.
            channel: a ``channels`` block or None (noiseless).
            no: complex noise power ``N0`` (linear) of the image user: scalar or ``[batch]``.
            image_stream, text_stream: the users' random streams (independent draws).
            text_no: the text user's ``N0``; default ``no``.
        """
        transmission = self.transmit(images, ids, unit_mask)
        image_received = pass_through_channel(transmission.image, channel, no, image_stream)
        text_received = pass_through_channel(transmission.text, channel, no if text_no is None else text_no, text_stream)
        return VQAOutput(self.receive(image_received, text_received, unit_mask), transmission)

    def loss(self, images: torch.Tensor, ids: torch.Tensor, unit_mask: torch.Tensor, answer_ids: torch.Tensor,
             channel: nn.Module | None = None, no: float | torch.Tensor = 0.0, image_stream=None,
             text_stream=None) -> torch.Tensor:
        """Answer cross-entropy (the paper's task loss) through the channel; scalar float32."""
        out = self.forward(images, ids, unit_mask, channel, no, image_stream, text_stream)
        return F.cross_entropy(out.logits, answer_ids)

    @torch.no_grad()
    def answer(self, images: torch.Tensor, questions: list[str], channel: nn.Module | None = None,
               no: float | torch.Tensor = 0.0, image_stream=None, text_stream=None) -> list[str]:
        """The receiver's answer to each (image, question) after the channel."""
        ids, mask = self.tokenize(questions)
        out = self.forward(images, ids, mask, channel, no, image_stream, text_stream)
        return [self.config.answers[i] for i in out.logits.argmax(-1).tolist()]


def save_deepsc_vqa(model: DeepSCVQA, directory: str | Path) -> Path:
    """Write a DeepSC-VQA folder: ``config.json`` + ``model.safetensors`` + tokenizer files."""
    return save_model_folder(model, model.config.to_dict(), "deepsc_vqa", directory, model.tokenizer)


def load_deepsc_vqa(directory: str | Path, device: str | torch.device = "cpu") -> DeepSCVQA:
    """Build a :class:`DeepSCVQA` from a folder of :func:`save_deepsc_vqa` (eval mode; errors as
    :func:`simulator.baselines.deepsc.load_model_folder`)."""
    return load_model_folder(directory, "deepsc_vqa", DeepSCVQAConfig, DeepSCVQA, device)
