"""DeepSC-VQA: the multi-user, task-oriented semantic communication system of Xie, Qin, Tao and
Letaief, "Task-Oriented Multi-User Semantic Communications", IEEE JSAC 40(9), 2022 (MU-DeepSC).

Two transmitters (two users) and one receiver that fuses them::

    image user: image [3, 64, 64] -> CNN (3 stride-2 convs) -> 8 x 8 = 64 image tokens (width d)
                + learned positions -> transformer encoder -> dense channel encoder
                -> symbols_per_image_token complex symbols per token, Es = 1 per symbol
                (or, with ``vision_encoder``, a pretrained SigLIP encoder instead of the CNN: see below)
    text user:  question words -> embedding + sinusoidal positions -> transformer encoder
                -> dense channel encoder -> symbols_per_word complex symbols per word, Es = 1
    channel:    each user through its own channel realisation (own fading and noise draws)
    receiver:   one dense channel decoder per user -> modality + position embeddings
                -> [ANSWER; question features; image features] -> transformer (reasoning module)
                -> mean over the fused sequence -> MLP -> one of the training answers

Accounting per sample: ``image_tokens * symbols_per_image_token`` complex symbols from the image
user plus ``words * symbols_per_word`` from the text user (analog bytes = symbols x 2 x
bits_per_real / 8). The receiver is assumed to know the question length (frame length).

Pretrained image encoder (``vision_encoder``): the paper's image user starts from a pretrained
ResNet-101; here it can start from the SigLIP vision encoder an M4SC codec trained in its stage 0
(:func:`simulator.baselines.image_user.vision_encoder_from_codec`, :meth:`DeepSCVQA.copy_vision_from`), so both systems see images
through the same pretrained encoder. Its last hidden states are mapped by a linear layer to ``d``
and given a learned embedding of their patch position, then go through the same transformer and
channel encoder as the CNN's tokens. ``tokens="patches"`` sends every patch; ``tokens="objects"``
sends only the patches the codec's object-centre head picks (at most ``max_objects`` slots): a slot
that found no object is not sent and costs no symbols, and the receiver is assumed to know which
slots were sent (``max_objects`` bits per image, like the question length). The encoder's weights
are stored in the DeepSC-VQA folder, which needs nothing else to load.

Text-only ablation (``text_only``): there is no image user; the receiver answers from the question
alone (0 image symbols). It measures the question-only level the image user has to beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from simulator.baselines.blocks import (DenseChannelDecoder, DenseChannelEncoder, SemanticTransmission,
                                        SinusoidalPositionalEncoding, WordModel, masked_mean, pass_through_channel,
                                        transformer_encoder)
from simulator.baselines.folders import StoredConfig, config_from_dict, load_model_folder, save_model_folder
from simulator.baselines.image_user import (
    CONV_DOWNSAMPLING,
    ImageSemanticEncoder,
    PretrainedImageEncoder,
    VisionEncoderConfig,
)

__all__ = ["DeepSCVQAConfig", "DeepSCVQA", "VQATransmission", "VQAOutput", "save_deepsc_vqa",
           "load_deepsc_vqa"]

@dataclass
class DeepSCVQAConfig(StoredConfig):
    """Architecture of :class:`DeepSCVQA` (what ``config.json`` holds).

    Attributes:
        vocab_size: question tokenizer size (ids: pad 0, bos 1, eos 2, unk 3).
        answers: the answer vocabulary (class names, index order).
        image_size: square input images, pixels; a multiple of 8 (image tokens: ``(image_size / 8)^2``),
            or, with ``vision_encoder``, the encoder's image size.
        d_model, num_heads, ffn_dim, dropout: transformer widths.
        num_image_layers / num_text_layers: transformer layers of the image / text transmitter.
        num_reasoning_layers: transformer layers of the receiver's reasoning module.
        symbols_per_image_token: complex symbols per image token (the paper's budgets: 2 / 4 / 16).
        symbols_per_word: complex symbols per question word (the paper's budgets: 2 / 4 / 10).
        channel_hidden: hidden width of the dense channel encoders (decoders use twice this).
        max_words: longest question sent, in words.
        vision_encoder: a pretrained image encoder instead of the CNN (:class:`VisionEncoderConfig`);
            None: the CNN, trained from scratch.
        text_only: the text-only ablation: no image user, the answer comes from the question alone.
        grounding_weight: weight of the grounding loss added to the answer loss in training (0: off);
            needs object tokens (see :meth:`DeepSCVQA.grounding_loss`).
    """

    KIND = "deepsc_vqa"

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
    vision_encoder: VisionEncoderConfig | None = None
    text_only: bool = False
    grounding_weight: float = 0.0

    def __post_init__(self):
        self.answers = tuple(self.answers)
        if isinstance(self.vision_encoder, dict):
            self.vision_encoder = config_from_dict(VisionEncoderConfig, self.vision_encoder, "deepsc_vqa.vision_encoder")
        if not isinstance(self.text_only, bool):
            raise ValueError(f"deepsc_vqa.text_only must be true or false, got {self.text_only!r}")
        if self.text_only and self.vision_encoder is not None:
            raise ValueError("deepsc_vqa.text_only has no image user, so vision_encoder must be null")
        self.check_positive("vocab_size", "image_size", "d_model", "num_heads", "ffn_dim", "num_reasoning_layers",
                            "symbols_per_image_token", "symbols_per_word", "channel_hidden", "max_words")
        for name in ("num_image_layers", "num_text_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"deepsc_vqa.{name} must be >= 0, got {getattr(self, name)}")
        if self.vision_encoder is not None:
            if self.image_size != self.vision_encoder.siglip["image_size"]:
                raise ValueError(f"deepsc_vqa.image_size ({self.image_size}) must equal the vision encoder's "
                                 f"image_size ({self.vision_encoder.siglip['image_size']})")
        elif self.image_size % CONV_DOWNSAMPLING:
            raise ValueError(f"deepsc_vqa.image_size must be a multiple of {CONV_DOWNSAMPLING}, got {self.image_size}")
        self.check_transformer(self.answers, "answers")
        self.check_grounding_weight(self.grounding_weight)
        if self.grounding and (self.vision_encoder is None or self.vision_encoder.tokens != "objects"):
            raise ValueError("deepsc_vqa.grounding_weight needs object tokens (vision_encoder.tokens: objects)")

    @staticmethod
    def check_grounding_weight(weight) -> None:
        """Raise ValueError unless ``weight`` is a number >= 0."""
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"deepsc_vqa.grounding_weight must be a number >= 0, got {weight!r}")

    @property
    def grounding(self) -> bool:
        """Whether training adds the grounding loss (``grounding_weight`` > 0 and an image user; the
        text-only ablation of a grounded recipe has nothing to ground)."""
        return bool(self.grounding_weight) and not self.text_only

    @property
    def image_tokens(self) -> int:
        """Image-token slots per image: ``(image_size / 8)^2`` (CNN), the vision encoder's patches or
        object slots, 0 for ``text_only``."""
        if self.text_only:
            return 0
        if self.vision_encoder is not None:
            return self.vision_encoder.image_tokens
        return (self.image_size // CONV_DOWNSAMPLING) ** 2


@dataclass
class VQATransmission:
    """What the two users of one VQA sample send.

    Attributes:
        image: the image user's transmission (``image_tokens`` units: all sent, or with object
            tokens only the found objects; none for ``text_only``).
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


class DeepSCVQA(WordModel):
    """DeepSC-VQA: image transmitter, text transmitter, fusing receiver with an answer classifier.

    Args:
        config: the architecture.
        tokenizer: the question tokenizer (for the text-level methods; saved with the model).
    """

    def __init__(self, config: DeepSCVQAConfig, tokenizer=None):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        c, d = config, config.d_model
        # image user (none in the text-only ablation)
        if not c.text_only:
            self.image_encoder = PretrainedImageEncoder(config) if c.vision_encoder else ImageSemanticEncoder(config)
            self.image_channel_encoder = DenseChannelEncoder(d, c.channel_hidden, c.symbols_per_image_token)
        # text user
        self.word_embedding = nn.Embedding(c.vocab_size, d, padding_idx=c.pad_token_id)
        self.word_positions = SinusoidalPositionalEncoding(d, c.max_words)
        self.text_encoder = transformer_encoder(d, c.num_heads, c.ffn_dim, c.num_text_layers, c.dropout)
        self.text_channel_encoder = DenseChannelEncoder(d, c.channel_hidden, c.symbols_per_word)
        # receiver
        if not c.text_only:
            self.image_channel_decoder = DenseChannelDecoder(d, 2 * c.channel_hidden, c.symbols_per_image_token)
        self.text_channel_decoder = DenseChannelDecoder(d, 2 * c.channel_hidden, c.symbols_per_word)
        self.answer_query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.modality_embedding = nn.Parameter(torch.randn(2, d) * 0.02)  # 0: text, 1: image
        if not c.text_only:
            self.receiver_image_positions = nn.Parameter(torch.randn(c.image_tokens, d) * 0.02)
        self.reasoning = transformer_encoder(d, c.num_heads, c.ffn_dim, c.num_reasoning_layers, c.dropout)
        self.answer_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, len(c.answers)))
        if c.grounding:
            self.grounding_head = nn.Linear(d, d, bias=False)  # training only
            if tokenizer is not None:
                from simulator.models.objects import word_attribute_table

                self.register_buffer("word_attributes", word_attribute_table(tokenizer, c.vocab_size), persistent=False)

    # ---- transmitters --------------------------------------------------------------------------
    def copy_vision_from(self, codec: nn.Module) -> None:
        """Load the vision encoder (and object head) of an M4SC codec into the image user; the codec
        must be the one :func:`vision_encoder_from_codec` described for this model's config."""
        if self.config.vision_encoder is None:
            raise ValueError("this DeepSC-VQA has no vision encoder (vision_encoder is null)")
        self.image_encoder.vision.load_state_dict(codec.vision.state_dict())
        if self.config.vision_encoder.tokens == "objects":
            self.image_encoder.object_head.load_state_dict(codec.object_head.state_dict())

    def transmit_image(self, images: torch.Tensor) -> SemanticTransmission:
        """Image user: ``[batch, 3, S, S]`` float32 in [0, 1] -> ``[batch, image_tokens *
        symbols_per_image_token]`` complex64, Es = 1 per sent symbol, zero for unsent object slots
        (``[batch, 0]`` for ``text_only``)."""
        return self._transmit_image(images)[0]

    def _transmit_image(self, images: torch.Tensor) -> tuple[SemanticTransmission, torch.Tensor | None]:
        """:meth:`transmit_image` and, with object tokens, each slot's attribute values ``[batch, K, 4]``
        (:meth:`PretrainedImageEncoder.encode`; None otherwise)."""
        if images.shape[-2:] != (self.config.image_size, self.config.image_size):
            raise ValueError(f"images must be {self.config.image_size}x{self.config.image_size}, got {tuple(images.shape[-2:])}")
        if self.config.text_only:
            unit_mask = torch.zeros(images.shape[0], 0, dtype=torch.bool, device=self.device)
            return SemanticTransmission(torch.zeros(images.shape[0], 0, dtype=torch.complex64, device=self.device),
                                        unit_mask, self.config.symbols_per_image_token), None
        images = images.to(self.device, torch.float32)
        values = None
        if self.config.vision_encoder is None:
            features = self.image_encoder(images)
            unit_mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        else:
            features, unit_mask, values = self.image_encoder.encode(images)
        transmission = SemanticTransmission(self.image_channel_encoder(features, unit_mask), unit_mask,
                                            self.config.symbols_per_image_token)
        return transmission, values

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
        """Image user's most complex channel uses per image (image_tokens x symbols_per_image_token);
        with object tokens an image sends only its found objects' share."""
        return self.config.image_tokens * self.config.symbols_per_image_token

    @torch.no_grad()
    def image_symbols(self, images: torch.Tensor) -> torch.Tensor:
        """``[batch]`` int64: the image user's complex channel uses for each image ``[batch, 3, S, S]``."""
        if self.config.vision_encoder is None or self.config.vision_encoder.tokens == "patches":
            return torch.full((images.shape[0],), self.symbols_per_image, dtype=torch.long)
        return self.transmit_image(images).symbols_per_sample.cpu()

    # ---- receiver ------------------------------------------------------------------------------
    def receive(self, image_received: torch.Tensor, text_received: torch.Tensor, text_mask: torch.Tensor,
                image_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse both users' received symbols and answer.

        Args:
            image_received: ``[batch, image_tokens * symbols_per_image_token]`` complex64 (equalised;
                ignored for ``text_only``).
            text_received: ``[batch, words * symbols_per_word]`` complex64 (equalised).
            text_mask: ``[batch, words]`` bool, which words were sent.
            image_mask: ``[batch, image_tokens]`` bool, which image tokens were sent; None: all.

        Returns:
            ``[batch, num_answers]`` float32 logits.
        """
        fused, keep = self._fuse(image_received, text_received, text_mask, image_mask)
        return self.answer_head(masked_mean(fused, keep))

    def _fuse(self, image_received: torch.Tensor, text_received: torch.Tensor, text_mask: torch.Tensor,
              image_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The reasoning module's output ``[batch, 1 + words + image_tokens, d]`` (answer query,
        question words, image tokens) and which positions are real ``[batch, 1 + words + image_tokens]``."""
        text_features = self.word_positions(self.text_channel_decoder(text_received)) + self.modality_embedding[0]
        batch = text_features.shape[0]
        query = self.answer_query.expand(batch, 1, -1)
        parts = [query, text_features]
        keeps = [torch.ones(batch, 1, dtype=torch.bool, device=text_mask.device), text_mask]
        if not self.config.text_only:
            image_features = self.image_channel_decoder(image_received) + self.receiver_image_positions + self.modality_embedding[1]
            if image_mask is None:
                image_mask = torch.ones(image_features.shape[:2], dtype=torch.bool, device=text_mask.device)
            parts.append(image_features)
            keeps.append(image_mask.to(text_mask.device))
        sequence = torch.cat(parts, dim=1)
        keep = torch.cat(keeps, dim=1)
        return self.reasoning(sequence, src_key_padding_mask=~keep), keep

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
        transmission, _, fused, keep = self._through_channel(images, ids, unit_mask, channel, no, image_stream,
                                                             text_stream, text_no)
        return VQAOutput(self.answer_head(masked_mean(fused, keep)), transmission)

    def _through_channel(self, images, ids, unit_mask, channel, no, image_stream, text_stream, text_no=None):
        """:meth:`forward` up to the reasoning module: what was sent (:class:`VQATransmission`), the
        objects' attribute values (:meth:`_transmit_image`) and :meth:`_fuse`'s features and mask."""
        image, values = self._transmit_image(images)
        text = self.transmit_question_ids(ids, unit_mask)
        if self.config.text_only:
            image_received = image.symbols  # nothing sent
        else:
            image_received = pass_through_channel(image, channel, no, image_stream)
        text_received = pass_through_channel(text, channel, no if text_no is None else text_no, text_stream)
        fused, keep = self._fuse(image_received, text_received, unit_mask, image.unit_mask)
        return VQATransmission(image, text), values, fused, keep

    def loss(self, images: torch.Tensor, ids: torch.Tensor, unit_mask: torch.Tensor, answer_ids: torch.Tensor,
             channel: nn.Module | None = None, no: float | torch.Tensor = 0.0, image_stream=None,
             text_stream=None) -> torch.Tensor:
        """Answer cross-entropy (the paper's task loss) through the channel, plus
        ``grounding_weight`` x :meth:`grounding_loss`; scalar float32."""
        transmission, values, fused, keep = self._through_channel(images, ids, unit_mask, channel, no, image_stream,
                                                                  text_stream)
        answer_loss = F.cross_entropy(self.answer_head(masked_mean(fused, keep)), answer_ids)
        if not self.config.grounding:
            return answer_loss
        words = ids.shape[1]
        grounding = self.grounding_loss(fused[:, 1:1 + words], fused[:, 1 + words:], ids, unit_mask, values,
                                        transmission.image.unit_mask)
        return answer_loss + self.config.grounding_weight * grounding

    def grounding_loss(self, word_features: torch.Tensor, object_features: torch.Tensor, ids: torch.Tensor,
                       unit_mask: torch.Tensor, values: torch.Tensor, object_mask: torch.Tensor) -> torch.Tensor:
        """Whether each question word names an attribute of each sent object, read from the receiver's
        fused features: binary cross-entropy of ``grounding_head(object) . word / sqrt(d)`` against
        "the word is the object's colour, shape (singular or plural), size or material" as the
        transmitter's object head sees the object. Only attribute words count.

        DeepSC-VQA trained on answers alone answers from the question: the answer loss does not teach
        the receiver which object a question refers to. This is the counterpart of M4SC's alignment
        stage (its LLM learns to name the objects of its image tokens), with labels from the frozen
        pretrained encoder, so it needs no scene files.

        Args:
            word_features: ``[batch, words, d]``; object_features: ``[batch, K, d]`` (reasoning output).
            ids, unit_mask: ``[batch, words]`` question word ids / which are real.
            values: ``[batch, K, 4]`` int64 object attribute values (:meth:`PretrainedImageEncoder.encode`).
            object_mask: ``[batch, K]`` bool, which objects were sent.

        Returns:
            Scalar float32 (0 when no pair counts).
        """
        if not hasattr(self, "word_attributes"):
            raise ValueError("the grounding loss needs the question tokenizer")
        attribute, value = self.word_attributes[ids.to(self.device)].unbind(-1)  # [batch, words] each
        scores = torch.einsum("bkd,bwd->bkw", self.grounding_head(object_features), word_features)
        scores = scores / self.config.d_model ** 0.5
        said = values.gather(-1, attribute.clamp(min=0).unsqueeze(1).expand(-1, values.shape[1], -1))
        target = (said == value.unsqueeze(1)).to(scores.dtype)
        counted = object_mask.unsqueeze(2) & (unit_mask & (attribute >= 0)).unsqueeze(1)
        if not counted.any():
            return scores.sum() * 0.0
        return F.binary_cross_entropy_with_logits(scores[counted], target[counted])

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
    :func:`simulator.baselines.folders.load_model_folder`)."""
    return load_model_folder(directory, "deepsc_vqa", DeepSCVQAConfig, DeepSCVQA, device)
