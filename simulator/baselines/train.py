"""Training and evaluation of the baselines (DeepSC, DeepSC-VQA), driven by YAML files such as
``scenarios/train_deepsc.yaml`` whose first key ``model: deepsc | deepsc_vqa`` selects the model.

The loop follows the M4SC trainer (:mod:`simulator.training.trainer`): AdamW, linear warm-up then
cosine decay, gradient clipping at 1, batch ``k`` drawn from a generator seeded by
``(seed, model, k)`` (:func:`simulator.training.data.batch_generator`), so a resumed run sees exactly
the batches and channel draws of an uninterrupted one; atomic checkpoints; a CSV log.

Each batch goes through the channel: a channel drawn from ``training.channels`` per batch and an
SNR = Es/N0 (dB) drawn uniformly from ``training.snr_db`` per sample; a fraction
``training.noise_free_fraction`` of the samples is sent without noise.

Folder layout of a run (``out_dir``)::

    tokenizer/          the locally trained word-level tokenizer
    train_log.csv       step, loss, lr, samples_per_s, elapsed_s
    checkpoint/         latest checkpoint of an unfinished run (model folder + trainer_state.pt)
    final/              the trained model: load_deepsc(...) / load_deepsc_vqa(...)
    eval.csv            accuracy vs SNR on the evaluation split (when ``evaluation`` is set)
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from simulator.baselines.deepsc import (
    CONFIG_FILE,
    DeepSC,
    DeepSCConfig,
    load_deepsc,
    load_model_weights,
    save_deepsc,
)
from simulator.baselines.deepsc_vqa import DeepSCVQA, DeepSCVQAConfig, load_deepsc_vqa, save_deepsc_vqa
from simulator.config_io import StrictModel
from simulator.device import resolve_device
from simulator.errors import UserError
from simulator.training.run_files import append_csv_row, drop_csv_rows, write_dir_atomically

__all__ = [
    "ScheduleConfig",
    "EvaluationConfig",
    "DeepSCTrainConfig",
    "DeepSCVQATrainConfig",
    "BASELINE_CONFIGS",
    "load_train_config",
    "train_baseline",
    "train_deepsc",
    "train_deepsc_vqa",
    "evaluate_deepsc",
    "evaluate_deepsc_vqa",
    "draw_channel_conditions",
    "write_eval_csv",
    "EVAL_COLUMNS",
]

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
LOG_COLUMNS = ("step", "loss", "lr", "samples_per_s", "elapsed_s")
EVAL_COLUMNS = ("system", "task", "channel", "snr_db", "accuracy", "bleu4", "num_samples", "symbols_per_sample")
NOISE_FREE = "none"


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


class _RunConfig(_Strict):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(default=None, ge=1)
    checkpoint_every: int = Field(default=200, ge=1)
    log_every: int = Field(default=10, ge=1)
    architecture: dict[str, Any] = Field(default_factory=dict, description="overrides of the model config fields")
    training: ScheduleConfig
    evaluation: EvaluationConfig | None = Field(default_factory=EvaluationConfig)


class DeepSCTrainConfig(_RunConfig):
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


class DeepSCVQATrainConfig(_RunConfig):
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
        _check_architecture(DeepSCVQAConfig, self.architecture, placeholders)
        return self


BASELINE_CONFIGS: dict[str, type[_RunConfig]] = {"deepsc": DeepSCTrainConfig, "deepsc_vqa": DeepSCVQATrainConfig}
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


def train_baseline(config: DeepSCTrainConfig | DeepSCVQATrainConfig, resume: bool = False, progress: bool = False) -> Path:
    """Train the model the config names; returns its ``final`` folder."""
    if isinstance(config, DeepSCTrainConfig):
        return train_deepsc(config, resume, progress)
    return train_deepsc_vqa(config, resume, progress)


# ---- shared loop --------------------------------------------------------------------------------


def _make_channels(names: Sequence[str], equalizer: str) -> dict[str, torch.nn.Module]:
    from channels.registry import make_channel

    return {name: make_channel(name, equalizer=equalizer) for name in dict.fromkeys(names)}


def draw_channel_conditions(schedule: ScheduleConfig, batch: int, generator: torch.Generator) -> tuple[str, torch.Tensor]:
    """One batch's channel name and per-sample complex noise power ``N0`` ``[batch]`` float32 (linear;
    0 for the noise-free share)."""
    from channels.conventions import snr_db_to_no

    name = schedule.channels[int(torch.randint(len(schedule.channels), (1,), generator=generator))]
    low, high = schedule.snr_db
    snr_db = low + (high - low) * torch.rand(batch, generator=generator)
    no = snr_db_to_no(snr_db)
    if schedule.noise_free_fraction > 0:
        clean = torch.rand(batch, generator=generator) < schedule.noise_free_fraction
        no = torch.where(clean, torch.zeros_like(no), no)
    return name, no


def _run_loop(config: _RunConfig, model: torch.nn.Module, batch_loss: Callable[[int], tuple[torch.Tensor, int]],
              save: Callable[[torch.nn.Module, Path], Any], resume: bool, progress: bool) -> Path:
    """Optimise ``model`` for ``config.training.steps`` steps; returns ``out_dir/final``.

    ``batch_loss(step)`` returns ``(loss, samples)`` for optimizer step ``step``, drawing its batch
    and channel from ``batch_generator(seed, model, step)``.
    """
    from simulator.training.data import batch_generator
    from simulator.training.trainer import cosine_lr

    schedule = config.training
    out_dir = Path(config.out_dir)
    final_dir, checkpoint_dir = out_dir / "final", out_dir / "checkpoint"
    log_path = out_dir / "train_log.csv"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    start = 0
    if checkpoint_dir.exists():
        if not resume:
            raise UserError(f"{checkpoint_dir} exists from an interrupted run: pass --resume to continue it, "
                            f"or delete it to start again")
        load_model_weights(model, checkpoint_dir, next(model.parameters()).device)
        try:
            state = torch.load(checkpoint_dir / STATE_FILE, map_location=next(model.parameters()).device, weights_only=True)
        except (OSError, RuntimeError) as err:
            raise UserError(f"cannot read {checkpoint_dir / STATE_FILE}: {err}") from None
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        drop_csv_rows(log_path, LOG_COLUMNS, lambda row: int(row["step"]) > start)
        logger.info("%s: resuming at step %d", config.model, start)
    model.train()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=schedule.steps, initial=start, desc=config.model, unit="step", dynamic_ncols=True)
    t0 = window_start = time.perf_counter()
    window_samples = 0
    for step in range(start, schedule.steps):
        lr = schedule.lr * cosine_lr(step, schedule)
        # Dropout draws from the global generator: seed it per step so that a resume is exact.
        torch.manual_seed(batch_generator(config.seed, f"{config.model}/dropout", step).initial_seed())
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, samples = batch_loss(step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        window_samples += samples
        done = step + 1
        if done % config.log_every == 0 or done == schedule.steps:
            now = time.perf_counter()
            rate = window_samples / max(now - window_start, 1e-9)
            append_csv_row(log_path, {"step": done, "loss": round(float(loss.detach()), 5), "lr": lr,
                                      "samples_per_s": round(rate, 2), "elapsed_s": round(now - t0, 2)}, LOG_COLUMNS)
            window_start, window_samples = now, 0
            if bar is not None:
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", samples_per_s=f"{rate:.1f}")
        if bar is not None:
            bar.update(1)
        if done % config.checkpoint_every == 0 and done < schedule.steps:
            def save_checkpoint(path: Path, step_done: int = done) -> None:
                save(model, path)
                torch.save({"step": step_done, "optimizer": optimizer.state_dict()}, path / STATE_FILE)

            write_dir_atomically(save_checkpoint, checkpoint_dir)
            logger.info("%s: checkpoint at step %d", config.model, done)
    if bar is not None:
        bar.close()
    model.eval()
    write_dir_atomically(lambda path: save(model, path), final_dir)
    if checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    return final_dir


def write_eval_csv(rows: list[dict], path: Path) -> Path:
    """Write evaluation rows (columns :data:`EVAL_COLUMNS`) atomically."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EVAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def _tokenizer(out_dir: Path, texts: list[str], vocab_size: int):
    """The run's tokenizer: trained on the training texts once, then reused (so resume is exact)."""
    from transformers import AutoTokenizer

    from simulator.models.tokenizer import train_word_tokenizer

    path = out_dir / "tokenizer"
    if (path / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    tokenizer = train_word_tokenizer(texts, vocab_size=vocab_size)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))
    return tokenizer


def _already_trained(config: _RunConfig) -> Path | None:
    final = Path(config.out_dir) / "final"
    if (final / "config.json").is_file():
        logger.info("%s already trained: %s", config.model, final)
        return final
    return None


def _point_noise(snr_db: float) -> float:
    from channels.conventions import snr_db_to_no

    return 0.0 if math.isinf(snr_db) else float(snr_db_to_no(snr_db))


# ---- DeepSC -------------------------------------------------------------------------------------


def _sentiment_samples(text_dir: str, subset: str, split: str) -> list[tuple[str, str]]:
    from simulator.data.loaders import SentimentCorpusDataset

    corpus = SentimentCorpusDataset(text_dir, split, subset)
    if not corpus.samples:
        raise UserError(f"no samples in {text_dir}/{subset}/{split}.jsonl")
    return [(s["text"], s["label"]) for s in corpus.samples]


def train_deepsc(config: DeepSCTrainConfig, resume: bool = False, progress: bool = False) -> Path:
    """Train DeepSC through the channel on the sentiment corpus; returns ``out_dir/final``.

    When ``config.evaluation`` is set, also writes ``out_dir/eval.csv`` (:func:`evaluate_deepsc`).
    A run whose ``final`` folder exists is not trained again.
    """
    from simulator.training.data import batch_generator

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    final = _already_trained(config)
    if final is None:
        device = resolve_device(config.device)
        samples = _sentiment_samples(config.text_dir, config.text_subset, "train")
        tokenizer = _tokenizer(Path(config.out_dir), [t for t, _ in samples], config.tokenizer_vocab_size)
        labels = tuple(sorted({label for _, label in samples}))
        if len(labels) < 2:
            raise UserError(f"{config.text_dir}/{config.text_subset}: the training split has only label(s) {list(labels)}")
        model_config = DeepSCConfig.from_dict({**config.architecture, "vocab_size": len(tokenizer), "labels": labels,
                                               "pad_token_id": tokenizer.pad_token_id,
                                               "bos_token_id": tokenizer.bos_token_id,
                                               "eos_token_id": tokenizer.eos_token_id})
        torch.manual_seed(config.seed)
        model = DeepSC(model_config, tokenizer).to(device)
        channels = _make_channels(config.training.channels, config.training.equalizer)
        label_index = {label: i for i, label in enumerate(labels)}
        schedule = config.training

        def batch_loss(step: int) -> tuple[torch.Tensor, int]:
            generator = batch_generator(config.seed, "deepsc", step)
            rows = torch.randint(len(samples), (schedule.batch_size,), generator=generator).tolist()
            ids, mask = model.tokenize([samples[r][0] for r in rows])
            label_ids = torch.tensor([label_index[samples[r][1]] for r in rows], device=device)
            name, no = draw_channel_conditions(schedule, len(rows), generator)
            loss, _ = model.loss(ids, mask, label_ids, channels[name], no.to(device), generator,
                                 config.reconstruction_weight, config.classification_weight)
            return loss, len(rows)

        final = _run_loop(config, model, batch_loss, save_deepsc, resume, progress)
    if config.evaluation is not None:
        evaluation = config.evaluation
        samples = _sentiment_samples(config.text_dir, config.text_subset, evaluation.split)
        tasks = ["classify"] + (["reconstruct"] if config.reconstruction_weight > 0 else [])
        rows = evaluate_deepsc(load_deepsc(final, resolve_device(config.device)), samples[: evaluation.max_samples],
                               evaluation.snr_db, evaluation.channels, evaluation.noise_free, evaluation.equalizer,
                               evaluation.seed, evaluation.batch_size, tasks)
        write_eval_csv(rows, Path(config.out_dir) / "eval.csv")
    return final


@torch.no_grad()
def evaluate_deepsc(model: DeepSC | str | Path, samples: Sequence[tuple[str, str]], snr_db: Sequence[float] = (0.0, 10.0),
                    channels: Sequence[str] = ("awgn",), noise_free: bool = True, equalizer: str = "mmse",
                    seed: int = 0, batch_size: int = 128, tasks: Sequence[str] = ("classify",)) -> list[dict]:
    """DeepSC accuracy vs SNR.

    Args:
        model: a :class:`DeepSC` or its folder.
        samples: ``(text, label)`` pairs.
        snr_db: SNR points, Es/N0 in dB.
        channels: channel names (:func:`channels.registry.make_channel`), each at every SNR.
        noise_free: add a row without channel noise (``channel = "none"``, ``snr_db = inf``).
        equalizer: the receivers' equalizer.
        seed: noise seed; every point starts from it (common random numbers across SNRs).
        tasks: ``"classify"`` (accuracy of the classification head) and/or ``"reconstruct"``
            (greedy sentence reconstruction: ``accuracy`` = exact sentence match, ``bleu4`` = corpus
            BLEU-4 in [0, 100]).

    Returns:
        Rows with :data:`EVAL_COLUMNS`: ``system`` "deepsc", ``task``, ``channel``, ``snr_db``,
        ``accuracy`` (fraction), ``bleu4`` (NaN for classify), ``num_samples``,
        ``symbols_per_sample`` (mean complex channel uses per text).
    """
    from simulator.data.metrics import caption_bleu4, classification_accuracy

    if not isinstance(model, DeepSC):
        model = load_deepsc(model)
    model.eval()
    unknown = sorted(set(tasks) - {"classify", "reconstruct"})
    if unknown:
        raise ValueError(f"unknown DeepSC evaluation task {unknown[0]!r}; tasks are classify, reconstruct")
    texts, labels = [t for t, _ in samples], [l for _, l in samples]
    symbols = model.symbols_per_text(texts)
    mean_symbols = sum(symbols) / max(len(symbols), 1)
    blocks = _make_channels(channels, equalizer) if channels else {}
    rows = []
    for channel_name, snr in _evaluation_points_from(snr_db, channels, noise_free):
        channel = None if channel_name == NOISE_FREE else blocks[channel_name]
        no = _point_noise(snr)
        for task in tasks:
            generator = torch.Generator().manual_seed(seed)
            predictions = []
            for start in range(0, len(texts), batch_size):
                chunk = texts[start:start + batch_size]
                if task == "classify":
                    predictions += model.classify(chunk, channel, no, generator)
                else:
                    predictions += model.reconstruct(chunk, channel, no, generator)
            if task == "classify":
                accuracy, bleu = classification_accuracy(predictions, labels), math.nan
            else:
                references = [model.tokenizer.decode(model.tokenizer.encode(t, add_special_tokens=False)[: model.config.max_words],
                                                     skip_special_tokens=True) for t in texts]
                accuracy = sum(p == r for p, r in zip(predictions, references)) / max(len(texts), 1)
                bleu = caption_bleu4(predictions, [[r] for r in references])
            rows.append({"system": "deepsc", "task": task, "channel": channel_name, "snr_db": snr,
                         "accuracy": accuracy, "bleu4": bleu, "num_samples": len(texts),
                         "symbols_per_sample": mean_symbols})
            logger.info("deepsc %s %s %.1f dB: accuracy %.4f", task, channel_name, snr, accuracy)
    return rows


def _evaluation_points_from(snr_db: Sequence[float], channels: Sequence[str], noise_free: bool) -> list[tuple[str, float]]:
    points = [(NOISE_FREE, math.inf)] if noise_free else []
    return points + [(channel, float(snr)) for channel in channels for snr in snr_db]


# ---- DeepSC-VQA ---------------------------------------------------------------------------------


def _vqa_data(config: DeepSCVQATrainConfig, split: str):
    from simulator.training.config import DataConfig
    from simulator.training.data import load_task_data

    data = load_task_data(DataConfig(clevr_dir=config.clevr_dir, text_dir=None, image_size=config.image_size), split, referred=False)
    if not data.vqa:
        raise UserError(f"{config.clevr_dir}: no answered questions in the {split} split")
    return data


def _vision_codec(settings: VisionEncoderSettings):
    """The M4SC codec whose vision encoder DeepSC-VQA starts from; one-line UserError when it is missing."""
    from simulator.models.checkpoint import CheckpointError, load_codec

    folder = Path(settings.checkpoint)
    if not (folder / CONFIG_FILE).is_file():
        raise UserError(f"vision_encoder.checkpoint {folder} does not exist: run "
                        f"`python -m simulator train scenarios/train_tiny.yaml --stage vision` first")
    try:
        return load_codec(folder, "cpu")
    except CheckpointError as err:
        raise UserError(f"vision_encoder.checkpoint: {err}") from None


def train_deepsc_vqa(config: DeepSCVQATrainConfig, resume: bool = False, progress: bool = False) -> Path:
    """Train DeepSC-VQA through the channel on a CLEVR-layout directory; returns ``out_dir/final``.

    The answer vocabulary is the sorted set of training answers. With ``config.vision_encoder`` the
    image user starts from that codec's vision encoder (ignored by the text-only ablation,
    ``architecture.text_only``). When ``config.evaluation`` is set, also writes ``out_dir/eval.csv``
    (:func:`evaluate_deepsc_vqa`).
    """
    from simulator.baselines.deepsc_vqa import vision_encoder_from_codec
    from simulator.training.data import batch_generator

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    final = _already_trained(config)
    if final is None:
        device = resolve_device(config.device)
        codec = vision = None
        if config.vision_encoder is not None and not config.architecture.get("text_only"):
            settings = config.vision_encoder
            codec = _vision_codec(settings)
            vision = vision_encoder_from_codec(codec, config.image_size, settings.tokens, settings.freeze,
                                               settings.checkpoint, settings.attributes)
        data = _vqa_data(config, "train")
        tokenizer = _tokenizer(Path(config.out_dir), [q for _, q, _, _ in data.vqa], config.tokenizer_vocab_size)
        answers = tuple(sorted({a for _, _, a, _ in data.vqa}))
        model_config = DeepSCVQAConfig.from_dict({**config.architecture, "vocab_size": len(tokenizer), "answers": answers,
                                                  "image_size": config.image_size,
                                                  "pad_token_id": tokenizer.pad_token_id, "vision_encoder": vision})
        torch.manual_seed(config.seed)
        model = DeepSCVQA(model_config, tokenizer)
        if codec is not None:
            model.copy_vision_from(codec)
            del codec
        model = model.to(device)
        channels = _make_channels(config.training.channels, config.training.equalizer)
        answer_index = {a: i for i, a in enumerate(answers)}
        schedule = config.training

        def batch_loss(step: int) -> tuple[torch.Tensor, int]:
            generator = batch_generator(config.seed, "deepsc_vqa", step)
            picks = torch.randint(len(data.vqa), (schedule.batch_size,), generator=generator).tolist()
            rows = [data.vqa[i] for i in picks]
            images = data.images[[r[0] for r in rows]].to(device).float().div_(255.0)
            ids, mask = model.tokenize([r[1] for r in rows])
            answer_ids = torch.tensor([answer_index[r[2]] for r in rows], device=device)
            name, no = draw_channel_conditions(schedule, len(rows), generator)
            loss = model.loss(images, ids, mask, answer_ids, channels[name], no.to(device), generator, generator)
            return loss, len(rows)

        final = _run_loop(config, model, batch_loss, save_deepsc_vqa, resume, progress)
    if config.evaluation is not None:
        evaluation = config.evaluation
        data = _vqa_data(config, evaluation.split)
        rows = evaluate_deepsc_vqa(load_deepsc_vqa(final, resolve_device(config.device)), data.images,
                                   data.vqa[: evaluation.max_samples], evaluation.snr_db, evaluation.channels,
                                   evaluation.noise_free, evaluation.equalizer, evaluation.seed, evaluation.batch_size)
        write_eval_csv(rows, Path(config.out_dir) / "eval.csv")
    return final


@torch.no_grad()
def evaluate_deepsc_vqa(model: DeepSCVQA | str | Path, images: torch.Tensor, questions: Sequence[tuple],
                        snr_db: Sequence[float] = (0.0, 10.0), channels: Sequence[str] = ("awgn",),
                        noise_free: bool = True, equalizer: str = "mmse", seed: int = 0,
                        batch_size: int = 128) -> list[dict]:
    """DeepSC-VQA accuracy vs SNR; both users at the same SNR, with independent draws.

    Args:
        model: a :class:`DeepSCVQA` or its folder.
        images: ``[N, 3, S, S]`` uint8 (0..255) or float32 in [0, 1].
        questions: ``(image_row, question, answer, ...)`` tuples (:attr:`TaskData.vqa` rows).
        snr_db, channels, noise_free, equalizer, seed, batch_size: as :func:`evaluate_deepsc`.

    Returns:
        Rows with :data:`EVAL_COLUMNS`: ``system`` "deepsc_vqa", ``task`` "vqa", ``accuracy``
        (normalised exact match, :func:`simulator.data.metrics.vqa_accuracy`), ``bleu4`` NaN,
        ``symbols_per_sample`` (mean complex channel uses of image user + text user).
    """
    from simulator.data.metrics import vqa_accuracy

    if not isinstance(model, DeepSCVQA):
        model = load_deepsc_vqa(model)
    model.eval()
    texts = [q[1] for q in questions]
    answers = [q[2] for q in questions]
    question_symbols = model.symbols_per_question(texts)
    image_symbols = 0
    for start in range(0, len(questions), batch_size):  # object tokens: only found objects are sent
        batch_images = images[[q[0] for q in questions[start:start + batch_size]]]
        image_symbols += int(model.image_symbols(batch_images.float() / 255.0 if batch_images.dtype == torch.uint8
                                                 else batch_images).sum())
    count = max(len(question_symbols), 1)
    mean_symbols = image_symbols / count + sum(question_symbols) / count
    blocks = _make_channels(channels, equalizer) if channels else {}
    rows = []
    for channel_name, snr in _evaluation_points_from(snr_db, channels, noise_free):
        channel = None if channel_name == NOISE_FREE else blocks[channel_name]
        no = _point_noise(snr)
        image_stream = torch.Generator().manual_seed(seed)
        text_stream = torch.Generator().manual_seed(seed + 1)
        predictions = []
        for start in range(0, len(questions), batch_size):
            chunk = questions[start:start + batch_size]
            batch_images = images[[q[0] for q in chunk]]
            if batch_images.dtype == torch.uint8:
                batch_images = batch_images.float() / 255.0
            predictions += model.answer(batch_images, [q[1] for q in chunk], channel, no, image_stream, text_stream)
        accuracy = vqa_accuracy(predictions, answers)
        rows.append({"system": "deepsc_vqa", "task": "vqa", "channel": channel_name, "snr_db": snr,
                     "accuracy": accuracy, "bleu4": math.nan, "num_samples": len(questions),
                     "symbols_per_sample": mean_symbols})
        logger.info("deepsc_vqa %s %.1f dB: accuracy %.4f", channel_name, snr, accuracy)
    return rows


# ---- model card ---------------------------------------------------------------------------------
def _image_user_description(model_config: dict) -> str:
    """What DeepSC-VQA's image user is, for the model card (from the stored model config)."""
    ablation = ("Compare with the text-only ablation (`--set architecture.text_only=true`), which answers "
                "from the question alone.")
    if model_config.get("text_only"):
        return ("None: this is the text-only ablation (`architecture.text_only: true`). The receiver never gets "
                "the image semantics, so it answers from the question alone; its accuracy is the question-only "
                "level the full model has to beat.")
    vision = model_config.get("vision_encoder")
    if not vision:
        return "A CNN (three stride-2 convolutions) trained from scratch with the answer loss. " + ablation
    if vision["tokens"] == "objects":
        tokens = (f"its image tokens are the patches the codec's object-centre head picks (at most "
                  f"{vision['max_objects']}; only found objects are sent and counted)")
    else:
        tokens = "its image tokens are all the encoder's patches"
    return (f"The SigLIP vision encoder of the M4SC codec `{vision['source']}` (the codec's stage-0 pre-training), "
            f"{'frozen' if vision['freeze'] else 'fine-tuned with the answer loss'}, in place of the paper's "
            f"pretrained ResNet-101; {tokens}, each mapped by a linear layer to d_model with a learned "
            f"patch-position embedding. " + ablation)


def write_baseline_card(config: DeepSCTrainConfig | DeepSCVQATrainConfig, command: str) -> Path:
    """Write ``MODEL_CARD.md`` + ``model_card.json`` into ``out_dir/final`` from the run's
    ``train_log.csv`` (steps, final loss, wall time summed over resumed segments) and ``eval.csv``."""
    import csv
    import json
    import platform
    from datetime import datetime, timezone

    from simulator.training.model_card import git_commit, stage_summary

    out_dir = Path(config.out_dir)
    final = out_dir / "final"
    runs = stage_summary(out_dir / "train_log.csv", default_stage=config.model)
    summary = runs[0] if runs else {"steps": 0, "final_loss": None, "time_s": 0.0}
    evaluation = list(csv.DictReader((out_dir / "eval.csv").open())) if (out_dir / "eval.csv").is_file() else []
    data = {"text_dir": config.text_dir, "text_subset": config.text_subset} if isinstance(config, DeepSCTrainConfig) \
        else {"clevr_dir": config.clevr_dir, "image_size": config.image_size}
    card = {
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": config.model,
        "command": command,
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "data": data,
        "architecture": json.loads((final / CONFIG_FILE).read_text()) if (final / CONFIG_FILE).is_file() else {},
        "training": {**config.training.model_dump(), "steps_done": summary["steps"],
                     "final_loss": summary["final_loss"], "time_s": summary["time_s"]},
        "scores": evaluation,
    }
    (final / "model_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    title = {"deepsc": "DeepSC (Xie et al., IEEE TSP 2021)",
             "deepsc_vqa": "DeepSC-VQA (Xie et al., IEEE JSAC 2022)"}[config.model]
    model_config = card["architecture"].get("config", {})
    if model_config.get("text_only"):
        title += ", text-only ablation"
    training = card["training"]
    lines = [f"# {title}, tiny", "",
             f"Trained with `{command}` at commit `{card['commit']}` ({card['machine']}).", "",
             "## Data", "", ", ".join(f"{k}: `{v}`" for k, v in data.items()) +
             " (test scores on the held-out split, never used in training).", ""]
    if config.model == "deepsc_vqa":
        lines += ["## Image user", "", _image_user_description(model_config), ""]
    lines += ["## Training", "",
              f"{training['steps_done']} steps of {config.training.batch_size}, lr {config.training.lr}, SNR "
              f"{config.training.snr_db[0]:g}..{config.training.snr_db[1]:g} dB over {', '.join(config.training.channels)} "
              f"({config.training.equalizer}); final loss {training['final_loss']}; "
              f"{training['time_s'] / 60:.1f} min wall.", "",
              "## Scores", "", "| task | channel | snr_db | accuracy | bleu4 | samples | symbols per sample |",
              "|---|---|---|---|---|---|---|"]
    def cell(value: str, digits: int) -> str:
        number = float(value)
        return "-" if number != number else f"{number:.{digits}f}"

    for row in evaluation:
        snr = "noise-free" if row["channel"] == NOISE_FREE else row["snr_db"]
        accuracy = "-" if row["task"] == "reconstruct" else cell(row["accuracy"], 3)
        lines.append(f"| {row['task']} | {row['channel']} | {snr} | {accuracy} | {cell(row['bleu4'], 3)} | "
                     f"{row['num_samples']} | {cell(row['symbols_per_sample'], 1)} |")
    (final / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
    return final / "MODEL_CARD.md"
