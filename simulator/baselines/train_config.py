"""The YAML of a baseline training run (``scenarios/train_deepsc.yaml``, ``train_deepsc_vqa.yaml``):
its first key ``model: deepsc | deepsc_vqa`` picks the config class; unknown keys are errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from simulator.baselines.deepsc import DeepSCConfig
from simulator.baselines.deepsc_vqa import DeepSCVQAConfig
from simulator.config_io import StrictModel
from simulator.errors import UserError

__all__ = ["ScheduleConfig", "EvaluationConfig", "DeepSCTrainConfig", "VisionEncoderSettings", "DeepSCVQATrainConfig",
           "BASELINE_CONFIGS", "RunConfig", "load_train_config"]


_Strict = StrictModel


class ScheduleConfig(_Strict):
    """Optimisation and channel settings of a run (field names as :class:`simulator.training.config.StageConfig`)."""

    steps: int = Field(ge=0, description="optimizer steps")
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    min_lr_ratio: float = Field(default=0.05, ge=0, le=1, description="cosine floor as a fraction of lr")
    snr_db: tuple[float, float] = Field(default=(0.0, 15.0), description="training SNR range in dB (Es/N0), uniform per sample")
    channels: list[Literal["awgn", "rayleigh"]] = Field(default_factory=lambda: ["awgn", "rayleigh"], min_length=1)
    equalizer: Literal["zf", "mmse"] = "mmse"
    noise_free_fraction: float = Field(default=0.0, ge=0, le=1, description="share of samples sent without noise")

    @field_validator("snr_db")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not (math.isfinite(value[0]) and math.isfinite(value[1])) or value[0] > value[1]:
            raise ValueError(f"snr_db must be [low, high] with low <= high (dB), got {list(value)}")
        return value


class EvaluationConfig(_Strict):
    """Accuracy vs SNR after training (written to ``out_dir/eval.csv``)."""

    split: str = "test"
    snr_db: list[float] = Field(default_factory=lambda: [0.0, 10.0])
    channels: list[Literal["awgn", "rayleigh"]] = Field(default_factory=lambda: ["awgn"])
    equalizer: Literal["zf", "mmse"] = "mmse"
    noise_free: bool = True
    max_samples: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=128, ge=1)
    seed: int = 0


class RunConfig(_Strict):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(default=None, ge=1)
    checkpoint_every: int = Field(default=200, ge=1)
    log_every: int = Field(default=10, ge=1)
    architecture: dict[str, Any] = Field(default_factory=dict, description="overrides of the model config fields")
    training: ScheduleConfig
    evaluation: EvaluationConfig | None = Field(default_factory=EvaluationConfig)


class DeepSCTrainConfig(RunConfig):
    """A DeepSC run: sentence reconstruction + sentiment classification on a prepared corpus."""

    model: Literal["deepsc"] = "deepsc"
    out_dir: str = "runs/deepsc"
    text_dir: str = "data/text"
    text_subset: str = "sentences"
    tokenizer_vocab_size: int = Field(default=4000, ge=16)
    reconstruction_weight: float = Field(default=1.0, ge=0)
    classification_weight: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "DeepSCTrainConfig":
        _check_architecture(DeepSCConfig, self.architecture, {"vocab_size": 16})
        if self.reconstruction_weight + self.classification_weight <= 0:
            raise ValueError("reconstruction_weight and classification_weight must not both be 0")
        return self


class VisionEncoderSettings(_Strict):
    """DeepSC-VQA's image user starts from the SigLIP vision encoder of an M4SC codec folder (e.g.
    stage 0 of ``scenarios/train_tiny.yaml``); its weights are copied into the DeepSC-VQA checkpoint."""

    checkpoint: str = Field(description="M4SC codec folder, e.g. runs/train_tiny/stage0_vision/final")
    freeze: bool = Field(default=True, description="keep the encoder's weights (false: fine-tune on the answer loss)")
    tokens: Literal["patches", "objects"] = Field(
        default="objects", description="every patch, or the patches the codec's object head picks (max_objects slots)")
    attributes: bool = Field(default=False, description="objects only: add an embedding of the object head's "
                                                          "attribute probabilities to each token")


class DeepSCVQATrainConfig(RunConfig):
    """A DeepSC-VQA run on a CLEVR-layout directory."""

    model: Literal["deepsc_vqa"] = "deepsc_vqa"
    out_dir: str = "runs/deepsc_vqa"
    clevr_dir: str = "data/clevr"
    image_size: Literal[64, 96, 128] = Field(default=64, description="images are resized to this square size")
    tokenizer_vocab_size: int = Field(default=1000, ge=16)
    vision_encoder: VisionEncoderSettings | None = Field(
        default=None, description="pretrained image encoder; null: the CNN, trained from scratch")

    @model_validator(mode="after")
    def _check(self) -> "DeepSCVQATrainConfig":
        if "vision_encoder" in self.architecture:
            raise ValueError("architecture.vision_encoder is set from the top-level vision_encoder key")
        placeholders = {"vocab_size": 16, "answers": ("a", "b")}
        if self.vision_encoder is None or self.architecture.get("text_only"):
            placeholders["image_size"] = self.image_size  # the encoder's size is checked when it is loaded
        elif self.vision_encoder.tokens == "objects":
            placeholders["grounding_weight"] = 0.0  # valid with object tokens; its value is checked below
            DeepSCVQAConfig.check_grounding_weight(self.architecture.get("grounding_weight", 0.0))
        _check_architecture(DeepSCVQAConfig, self.architecture, placeholders)
        return self


BASELINE_CONFIGS: dict[str, type[RunConfig]] = {"deepsc": DeepSCTrainConfig, "deepsc_vqa": DeepSCVQATrainConfig}
_SET_FROM_DATA = ("vocab_size", "labels", "answers", "image_size", "pad_token_id", "bos_token_id", "eos_token_id")


def _check_architecture(config_cls, architecture: dict, placeholders: dict) -> None:
    fixed = sorted(set(architecture) & set(_SET_FROM_DATA))
    if fixed:
        raise ValueError(f"architecture.{fixed[0]} is set from the data, not in the YAML")
    config_cls.from_dict({**architecture, **placeholders})


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> DeepSCTrainConfig | DeepSCVQATrainConfig:
    """Read a baseline training YAML; its ``model`` key picks the config class.

    Raises:
        UserError: missing file, bad YAML, unknown ``model``, unknown key or bad value (one line).
    """
    from pydantic import ValidationError

    from simulator.config_io import apply_overrides, read_yaml, validation_message

    data = apply_overrides(read_yaml(path), list(overrides))
    kind = data.get("model")
    if kind not in BASELINE_CONFIGS:
        raise UserError(f"{path}: model: must be one of {', '.join(BASELINE_CONFIGS)}, got {kind!r}")
    try:
        return BASELINE_CONFIGS[kind].model_validate(data)
    except ValidationError as err:
        raise UserError(f"{path}: {validation_message(err)}") from None
