"""DeepSC-VQA's image user: the CNN trained from scratch, or an M4SC codec's pretrained SigLIP encoder
(:class:`VisionEncoderConfig`, :func:`vision_encoder_from_codec`) in its place. Both take the
:class:`~simulator.baselines.deepsc_vqa.DeepSCVQAConfig` they serve (``config``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from simulator.baselines.blocks import transformer_encoder
from simulator.errors import UserError

__all__ = ["VisionEncoderConfig", "ImageSemanticEncoder", "PretrainedImageEncoder", "vision_encoder_from_codec",
           "CONV_DOWNSAMPLING", "VISION_TOKENS", "SIGLIP_FIELDS"]

CONV_DOWNSAMPLING = 8  # three stride-2 convolutions
VISION_TOKENS = ("patches", "objects")
# The transformers.SiglipVisionConfig fields that fix the encoder's architecture (and state dict).
SIGLIP_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels",
                 "image_size", "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout", "vision_use_head")


@dataclass
class VisionEncoderConfig:
    """The image user's pretrained feature extractor: an M4SC codec's SigLIP vision encoder.

    Attributes:
        siglip: the encoder's ``transformers.SiglipVisionConfig`` fields (:data:`SIGLIP_FIELDS`).
        tokens: ``"patches"`` (every patch is an image token) or ``"objects"`` (the patches the
            codec's object-centre head picks, at most ``max_objects``; empty slots are not sent).
        max_objects: image-token slots with ``tokens="objects"``.
        freeze: the encoder keeps the codec's weights in training (the object head always does:
            no gradient reaches it through the top-k pick).
        attributes: with ``tokens="objects"``, each token also gets a learned embedding of the object
            head's attribute probabilities (as the codec's ``object_attributes``).
        source: the codec folder the weights were copied from (provenance only).
    """

    siglip: dict
    tokens: str = "objects"
    max_objects: int = 10
    freeze: bool = True
    attributes: bool = False
    source: str = ""

    def __post_init__(self):
        missing = [name for name in SIGLIP_FIELDS if name not in self.siglip]
        if missing:
            raise ValueError(f"deepsc_vqa.vision_encoder.siglip lacks {', '.join(missing)}")
        for name in ("image_size", "patch_size"):
            value = self.siglip[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"deepsc_vqa.vision_encoder.siglip.{name} must be an integer >= 1, got {value!r}")
        if self.tokens not in VISION_TOKENS:
            raise ValueError(f"deepsc_vqa.vision_encoder.tokens must be one of {', '.join(VISION_TOKENS)}, got {self.tokens!r}")
        if not isinstance(self.max_objects, int) or isinstance(self.max_objects, bool) or self.max_objects < 1:
            raise ValueError(f"deepsc_vqa.vision_encoder.max_objects must be an integer >= 1, got {self.max_objects!r}")
        if self.attributes and self.tokens != "objects":
            raise ValueError("deepsc_vqa.vision_encoder.attributes needs tokens: objects")

    @property
    def num_patches(self) -> int:
        """Patches per image: ``(image_size / patch_size)^2``."""
        return (self.siglip["image_size"] // self.siglip["patch_size"]) ** 2

    @property
    def image_tokens(self) -> int:
        """Image-token slots: every patch, or ``max_objects``."""
        return min(self.max_objects, self.num_patches) if self.tokens == "objects" else self.num_patches


class ImageSemanticEncoder(nn.Module):
    """CNN + transformer: ``[batch, 3, S, S]`` float in [0, 1] -> ``[batch, (S/8)^2, d]`` float32."""

    def __init__(self, config):
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


class PretrainedImageEncoder(nn.Module):
    """SigLIP encoder (weights from an M4SC codec) + linear map to ``d`` + patch-position embedding +
    transformer: ``[batch, 3, S, S]`` float in [0, 1] -> tokens ``[batch, K, d]`` float32 and which
    are real ``[batch, K]`` bool (K = patches, or object slots; empty object slots are zero)."""

    def __init__(self, config):
        super().__init__()
        from transformers import SiglipVisionConfig, SiglipVisionModel

        from simulator.models.objects import OBJECT_CLASSES

        spec, d = config.vision_encoder, config.d_model
        self.spec = spec
        self.vision = SiglipVisionModel(SiglipVisionConfig(**spec.siglip))
        width = int(spec.siglip["hidden_size"])
        if spec.tokens == "objects":
            self.object_head = nn.Linear(width, sum(OBJECT_CLASSES)).requires_grad_(False)
        self.vision.requires_grad_(not spec.freeze)
        self.input = nn.Linear(width, d)
        self.positions = nn.Embedding(spec.num_patches, d)
        nn.init.normal_(self.positions.weight, std=0.02)
        if spec.attributes:
            self.attributes = nn.Linear(sum(OBJECT_CLASSES), d, bias=False)
        self.encoder = transformer_encoder(d, config.num_heads, config.ffn_dim, config.num_image_layers, config.dropout)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[batch, 3, S, S]`` in [0, 1] -> SigLIP's last hidden states ``[batch, P, D]``."""
        pixels = images * 2.0 - 1.0  # SigLIP's normalisation, as simulator.training.data.to_pixel_values
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.spec.freeze):
            return self.vision(pixel_values=pixels).last_hidden_state

    def detect_objects(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The codec's rule (:func:`simulator.models.objects.detect_objects`): ``[batch, P, D]`` ->
        ``patches [batch, K]`` int64, ``found [batch, K]`` bool."""
        from simulator.models.objects import detect_objects

        return detect_objects(self.object_head, features, self.spec.max_objects)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, real, _ = self.encode(images)
        return tokens, real

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`forward`'s tokens and mask, and with object tokens what the object head says each
        object is: ``values [batch, K, 4]`` int64, the most probable colour, shape, size and material
        (indices into :data:`simulator.data.attributes.COLORS`, ``SHAPES``, ``SIZES``, ``MATERIALS``);
        None for patch tokens."""
        from simulator.models.objects import attribute_argmax, object_attribute_probabilities, object_features

        features = self.features(images)
        values = None
        if self.spec.tokens == "patches":
            tokens = self.input(features) + self.positions.weight
            real = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        else:
            picked, patches, real = object_features(self.object_head, features, self.spec.max_objects)
            tokens = self.input(picked) + self.positions(patches)
            probabilities = object_attribute_probabilities(self.object_head, picked)
            if self.spec.attributes:
                tokens = tokens + self.attributes(probabilities)
            tokens = tokens * real.unsqueeze(-1).to(picked.dtype)
            values = attribute_argmax(probabilities)
        # An image without objects would leave its slots nothing to attend to (NaN): let them attend
        # to each other; they are not sent.
        attend = real | ~real.any(dim=1, keepdim=True)
        return self.encoder(tokens, src_key_padding_mask=~attend), real, values


def vision_encoder_from_codec(codec: nn.Module, image_size: int, tokens: str = "objects", freeze: bool = True,
                              source: str | Path = "", attributes: bool = False) -> VisionEncoderConfig:
    """Describe an M4SC codec's vision encoder as DeepSC-VQA's image encoder (then
    :meth:`DeepSCVQA.copy_vision_from` copies its weights).

    Args:
        codec: an :class:`~simulator.models.mllm.M4SCModel` (e.g. stage 0's, from
            :func:`simulator.models.checkpoint.load_codec`).
        image_size: the DeepSC-VQA image size; must equal the encoder's.
        tokens: ``"patches"`` or ``"objects"`` (needs the codec's object head, ``visual_tokens=objects``).
        freeze: keep the encoder's weights in training.
        source: the codec folder (recorded in the config).
        attributes: add the embedding of the object head's attribute probabilities (``tokens="objects"``).

    Raises:
        UserError: image size mismatch or no object head (one line).
    """
    siglip = codec.vision.config
    where = f" in {source}" if source else ""
    if siglip.image_size != image_size:
        raise UserError(f"the vision encoder{where} takes {siglip.image_size} px images, but image_size is "
                        f"{image_size}: set image_size: {siglip.image_size}")
    if tokens not in VISION_TOKENS:
        raise UserError(f"vision_encoder.tokens must be one of {', '.join(VISION_TOKENS)}, got {tokens!r}")
    if tokens == "objects" and not hasattr(codec, "object_head"):
        raise UserError(f"the codec{where} has no object head (its visual_tokens is {codec.config.visual_tokens!r}): "
                        f"use vision_encoder.tokens: patches")
    if attributes and tokens != "objects":
        raise UserError("vision_encoder.attributes needs vision_encoder.tokens: objects")
    return VisionEncoderConfig(siglip={name: getattr(siglip, name) for name in SIGLIP_FIELDS}, tokens=tokens,
                               max_objects=int(codec.config.max_objects), freeze=freeze, attributes=attributes,
                               source=str(source))
