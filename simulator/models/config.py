"""Typed configuration of the M4SC semantic codec, and the named profiles.

A :class:`CodecConfig` fully describes the model's architecture (what ``config.json`` in a
checkpoint holds). The ``vision`` and ``llm`` sections are keyword arguments of the
``transformers`` configs (``SiglipVisionConfig``; the causal LM's config class chosen by
``llm["model_type"]``: ``gemma2`` in the paper, also ``gemma3_text``, ``llama``, ...).

Profiles:
- ``tiny``: the same classes at CPU-trainable sizes; trained from scratch by this project.
- ``paper``: SigLIP-so400m-patch14-384 + Gemma-2-2b-it at the paper's widths (KAN 1152 -> 2304 ->
  2304, channel codec 2304 -> 512 reals). Weights come from local directories
  (``vision_path``, ``llm_path``); without them the model can still be built on the ``meta``
  device to check sizes.
- ``gemma3-270m``: Google's pretrained Gemma-3-270M (``llm_path: package:gemma3-270m``, the optional
  extra ``gemma``) with the tiny profile's vision encoder and object tokens.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["IMAGE_POSITIONS", "VISUAL_TOKENS", "CodecConfig", "check_channel_rates", "LoraSettings", "ProjectorSettings", "PROFILES", "profile_config"]

IMAGE_POSITIONS = ("before_prompt", "after_prompt")
VISUAL_TOKENS = ("patches", "objects")


@dataclass
class ProjectorSettings:
    """Cross-modal projector: ``kind`` is ``"kan"`` (the paper) or ``"mlp"`` (the ablation)."""

    kind: str = "kan"
    hidden_dim: int | None = None  # None: the projector's output width (LLM width x tokens_per_object)
    grid_size: int = 5
    order: int = 3
    grid_range: tuple[float, float] = (-2.0, 2.0)

    def __post_init__(self):
        if self.kind not in ("kan", "mlp"):
            raise ValueError(f"projector.kind must be 'kan' or 'mlp', got {self.kind!r}")
        self.grid_range = tuple(self.grid_range)


@dataclass
class LoraSettings:
    """LoRA on the LLM through ``peft`` (rank ``r``, scaling ``alpha / r``)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"lora.r must be >= 1, got {self.r}")
        self.target_modules = tuple(self.target_modules)


def check_channel_rates(rates, symbols_per_token: int) -> list[int]:
    """``rates`` as a list of ints, ascending, distinct, in ``[1, c]`` and ending at ``c`` (or empty);
    ValueError (one line) otherwise."""
    rates = list(rates or [])
    if any(isinstance(k, bool) or not isinstance(k, int) for k in rates):
        raise ValueError(f"channel_rates must be integers, got {rates!r}")
    if rates and (rates != sorted(set(rates)) or rates[0] < 1 or rates[-1] != symbols_per_token):
        raise ValueError(f"channel_rates must be distinct, ascending, >= 1 and end at channel_symbols_per_token "
                         f"({symbols_per_token}), got {rates}")
    return rates


@dataclass
class CodecConfig:
    """Architecture of the semantic codec.

    Attributes:
        profile: name of the profile it came from (informational).
        vision: ``SiglipVisionConfig`` keyword arguments.
        llm: causal-LM config keyword arguments, including ``model_type``.
        projector: cross-modal projector settings.
        lora: LoRA settings (``None``: no adapters).
        channel_symbols_per_token: ``c``, complex channel symbols per output token (the channel
            encoder maps ``d -> 2c`` reals). Paper: 256 (512 reals).
        channel_rates: the symbols per token ``k`` the channel codec was trained to serve, ascending
            and ending at ``c``: a token may be sent as the first ``k`` of its ``c`` symbols and
            decoded from them alone (nested codec, :mod:`simulator.models.channel_codec`). Empty: only
            ``c`` (a codec trained at one rate).
        channel_rate_decoders: rates ``k < c`` (among ``channel_rates``) that have a channel decoder
            of their own (``rate_decoders`` in :mod:`simulator.models.channel_codec`; stage ``rates``).
        channel_short_codes: rates ``k < c`` (among ``channel_rates``, none with a rate decoder) sent
            and read by an encoder and decoder MLP of their own, ``channel_short_code_width`` wide
            (``short_codes`` there): not prefixes of the nested code.
        max_new_tokens: generation limit per task.
        vision_path / llm_path: local directories with pretrained weights (``paper`` profile);
            ``llm_path`` may also be ``package:<name>``, a model an optional extra installs
            (:data:`simulator.models.pretrained.PACKAGED_MODELS`).
        instructions: per-task instruction texts the codec was trained with (task -> text); empty
            means the paper's texts (``simulator.data.templates``). Inference must use the same.
        ignore_images: the question-only baseline: the LLM never sees the visual tokens, so its
            answers come from the text alone (what the issue's VQA target is measured against).
        image_position: where the visual tokens sit in the LLM's input: ``"before_prompt"``
            (``[image][prompt][answer]``, LLaVA's and the paper's order) or ``"after_prompt"``
            (``[prompt][image][answer]``): in a causal LLM only then can the visual tokens attend to
            the question, so each can work out whether the question refers to its object.
        visual_tokens: what the LLM sees of an image: ``"patches"`` (every patch, the paper's) or
            ``"objects"`` (the patches an object-centre head on the vision encoder marks, at most
            ``max_objects``, each with a learned embedding of its patch position): a few tokens that
            each hold one object, so the LLM attends to objects instead of searching 64 patches.
        max_objects: visual slots with ``visual_tokens="objects"`` (unused slots are masked out).
        object_attributes: with ``visual_tokens="objects"``, each object token also gets a learned
            embedding of what the object head says about it (its colour, shape, size and material
            probabilities, ``[sum(OBJECT_CLASSES)] -> [d]``): the dense stage-0 labels then reach the
            LLM as near-symbolic tokens instead of having to be read out of the raw feature again.
        tokens_per_object: with ``visual_tokens="objects"``, LLM input tokens per object (the
            projector's output is that many ``d``-vectors, each with the object's position
            embedding): 4 lets an object read like the four words that name it, "large red metal
            cube" (stage ``anchor`` pulls token ``j`` towards the LLM's embedding of attribute
            ``j``'s word, in the spoken order size, colour, material, shape).
    """

    profile: str = "tiny"
    vision: dict[str, Any] = field(default_factory=dict)
    llm: dict[str, Any] = field(default_factory=dict)
    projector: ProjectorSettings = field(default_factory=ProjectorSettings)
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    channel_symbols_per_token: int = 64
    channel_rates: list[int] = field(default_factory=list)
    channel_rate_decoders: list[int] = field(default_factory=list)
    channel_short_codes: list[int] = field(default_factory=list)
    channel_short_code_width: int = 256
    max_new_tokens: int = 24
    vision_path: str | None = None
    llm_path: str | None = None
    instructions: dict[str, str] = field(default_factory=dict)
    ignore_images: bool = False
    image_position: str = "before_prompt"
    visual_tokens: str = "patches"
    max_objects: int = 10
    object_attributes: bool = False
    tokens_per_object: int = 1

    def __post_init__(self):
        if isinstance(self.projector, dict):
            self.projector = ProjectorSettings(**self.projector)
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
        if self.channel_symbols_per_token < 1:
            raise ValueError(f"channel_symbols_per_token must be >= 1, got {self.channel_symbols_per_token}")
        self.channel_rates = check_channel_rates(self.channel_rates, self.channel_symbols_per_token)
        for key in ("channel_rate_decoders", "channel_short_codes"):
            chosen = list(getattr(self, key) or [])
            setattr(self, key, chosen)
            if any(k not in self.channel_rates[:-1] for k in chosen) or chosen != sorted(set(chosen)):
                raise ValueError(f"{key} must be distinct, ascending rates below c among channel_rates "
                                 f"{self.channel_rates}, got {chosen}")
        if set(self.channel_rate_decoders) & set(self.channel_short_codes):
            raise ValueError(f"a rate has either a rate decoder or a short code: both have "
                             f"{sorted(set(self.channel_rate_decoders) & set(self.channel_short_codes))}")
        if isinstance(self.channel_short_code_width, bool) or not isinstance(self.channel_short_code_width, int) \
                or self.channel_short_code_width < 1:
            raise ValueError(f"channel_short_code_width must be an integer >= 1, got {self.channel_short_code_width!r}")
        if not isinstance(self.ignore_images, bool):
            raise ValueError(f"ignore_images must be true or false, got {self.ignore_images!r}")
        if self.image_position not in IMAGE_POSITIONS:
            raise ValueError(f"image_position must be one of {', '.join(IMAGE_POSITIONS)}, got {self.image_position!r}")
        if self.visual_tokens not in VISUAL_TOKENS:
            raise ValueError(f"visual_tokens must be one of {', '.join(VISUAL_TOKENS)}, got {self.visual_tokens!r}")
        if isinstance(self.max_objects, bool) or not isinstance(self.max_objects, int) or self.max_objects < 1:
            raise ValueError(f"max_objects must be an integer >= 1, got {self.max_objects!r}")
        if not isinstance(self.object_attributes, bool):
            raise ValueError(f"object_attributes must be true or false, got {self.object_attributes!r}")
        if self.object_attributes and self.visual_tokens != "objects":
            raise ValueError("object_attributes needs visual_tokens: objects (it embeds the object head's output)")
        if isinstance(self.tokens_per_object, bool) or not isinstance(self.tokens_per_object, int) \
                or self.tokens_per_object < 1:
            raise ValueError(f"tokens_per_object must be an integer >= 1, got {self.tokens_per_object!r}")
        if self.tokens_per_object > 1 and self.visual_tokens != "objects":
            raise ValueError("tokens_per_object > 1 needs visual_tokens: objects")
        if "model_type" not in self.llm:
            raise ValueError("llm.model_type is required (e.g. 'gemma2')")

    @property
    def rates(self) -> list[int]:
        """The symbols per token this codec serves, ascending (``[c]`` for a single-rate codec)."""
        return list(self.channel_rates) or [self.channel_symbols_per_token]

    @property
    def nested_rates(self) -> list[int]:
        """The rates whose symbols are prefixes of the full rate's (all but the short codes)."""
        return [k for k in self.rates if k not in self.channel_short_codes]

    @property
    def hidden_size(self) -> int:
        """``d``: width of the LLM's final hidden state, the semantic vector of one token."""
        return int(self.llm["hidden_size"])

    @property
    def num_patches(self) -> int:
        """Patches per image: ``(image_size / patch_size)^2``."""
        return (int(self.vision["image_size"]) // int(self.vision["patch_size"])) ** 2

    @property
    def num_image_tokens(self) -> int:
        """Visual slots per image in the LLM's input: every patch, or ``max_objects x tokens_per_object``."""
        return self.max_objects * self.tokens_per_object if self.visual_tokens == "objects" else self.num_patches

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown codec config key(s): {', '.join(unknown)}")
        return cls(**copy.deepcopy(data))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "CodecConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _siglip(**sizes) -> dict:
    """A SigLIP vision config: ``sizes`` plus what every profile shares (RGB, LayerNorm eps)."""
    return dict(num_channels=3, layer_norm_eps=1e-6, **sizes)


def _gemma2(**sizes) -> dict:
    """A Gemma-2 config: ``sizes`` plus Gemma-2's logit soft-capping (final 30, attention 50)."""
    return dict(model_type="gemma2", final_logit_softcapping=30.0, attn_logit_softcapping=50.0, **sizes)


def _profile(name: str, vision: dict, llm: dict, symbols_per_token: int, max_new_tokens: int) -> CodecConfig:
    """A profile of the paper's design: the KAN projector as wide as the LLM, LoRA r = 8 (alpha 16)."""
    return CodecConfig(profile=name, vision=vision, llm=llm,
                       projector=ProjectorSettings(kind="kan", hidden_dim=llm["hidden_size"]),
                       lora=LoraSettings(r=8, alpha=16), channel_symbols_per_token=symbols_per_token,
                       max_new_tokens=max_new_tokens)


# SigLIP-so400m-patch14-384 and Gemma-2-2b, as published in their config.json files.
_PAPER = _profile(
    "paper",
    _siglip(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=384,
            patch_size=14),
    _gemma2(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
            num_key_value_heads=4, head_dim=256, max_position_embeddings=8192, sliding_window=4096,
            query_pre_attn_scalar=256),
    symbols_per_token=256, max_new_tokens=32)

# Same classes at sizes a 2-core CPU trains in minutes. 2c = d, so an identity codec is possible.
_TINY = _profile(
    "tiny",
    _siglip(hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4, image_size=64, patch_size=8),
    _gemma2(vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, max_position_embeddings=512, sliding_window=256, query_pre_attn_scalar=32),
    symbols_per_token=64, max_new_tokens=24)

# Google's pretrained Gemma-3-270M (its published config.json) behind the tiny recipe's vision side:
# the stage-0 SigLIP at 96 px with 12 px patches and its object tokens (``train_gemma3_270m.yaml``
# copies them from the shipped tiny codec), a KAN projector 96 -> 640 -> 640, LoRA on the attention
# and MLP projections. The weights come from the optional extra ``gemma`` (``package:`` below, see
# :mod:`simulator.models.pretrained`). 2c = 64 reals per token, as the tiny codec sends: a 10x
# compression of the 640-wide semantic vector.
_GEMMA3_270M = CodecConfig(
    profile="gemma3-270m",
    vision=_siglip(hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4, image_size=96,
                   patch_size=12),
    llm=dict(model_type="gemma3_text", vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
             num_attention_heads=4, num_key_value_heads=1, head_dim=256, max_position_embeddings=32768,
             sliding_window=512, query_pre_attn_scalar=256, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh",
             tie_word_embeddings=True, bos_token_id=2, eos_token_id=1, pad_token_id=0,
             layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3),
    projector=ProjectorSettings(kind="kan", hidden_dim=640),
    lora=LoraSettings(r=8, alpha=16),
    channel_symbols_per_token=32, max_new_tokens=24, llm_path="package:gemma3-270m",
    visual_tokens="objects", max_objects=6)

PROFILES: dict[str, CodecConfig] = {"tiny": _TINY, "paper": _PAPER, "gemma3-270m": _GEMMA3_270M}


def profile_config(name: str, **overrides: Any) -> CodecConfig:
    """A fresh copy of profile ``name`` with top-level fields replaced by ``overrides``."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    data = PROFILES[name].to_dict()
    data.update(overrides)
    return CodecConfig.from_dict(data)
