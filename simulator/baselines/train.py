"""Training of the baselines (DeepSC, DeepSC-VQA), driven by YAML files such as ``scenarios/train_deepsc.yaml``
(:mod:`simulator.baselines.train_config`; the first key ``model: deepsc | deepsc_vqa`` selects the model).
Evaluation is :mod:`simulator.baselines.evaluate`, the model card :mod:`simulator.baselines.model_card`.

The loop is the M4SC trainer's (:func:`simulator.training.loop.fit`): AdamW, linear warm-up then
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

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from simulator.baselines.deepsc import DeepSC, DeepSCConfig, load_deepsc, save_deepsc
from simulator.baselines.deepsc_vqa import (
    DeepSCVQA,
    DeepSCVQAConfig,
    load_deepsc_vqa,
    save_deepsc_vqa,
)
from simulator.baselines.evaluate import (
    evaluate_deepsc,
    evaluate_deepsc_vqa,
    write_eval_csv,
)
from simulator.baselines.folders import load_model_weights
from simulator.baselines.train_config import (
    DeepSCTrainConfig,
    DeepSCVQATrainConfig,
    RunConfig,
    ScheduleConfig,
    VisionEncoderSettings,
)
from simulator.device import resolve_device
from simulator.errors import UserError
from simulator.files import write_dir_atomically
from simulator.links import channel_set
from simulator.models.checkpoint import CONFIG_FILE

__all__ = ["train_baseline", "train_deepsc", "train_deepsc_vqa", "draw_channel_conditions"]

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
LOG_COLUMNS = ("step", "loss", "lr", "samples_per_s", "elapsed_s")


def train_baseline(config: DeepSCTrainConfig | DeepSCVQATrainConfig, resume: bool = False, progress: bool = False) -> Path:
    """Train the model the config names; returns its ``final`` folder."""
    if isinstance(config, DeepSCTrainConfig):
        return train_deepsc(config, resume, progress)
    return train_deepsc_vqa(config, resume, progress)


# ---- shared loop --------------------------------------------------------------------------------


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


def _run_loop(config: RunConfig, model: torch.nn.Module, batch_loss: Callable[[int], tuple[torch.Tensor, int]],
              save: Callable[[torch.nn.Module, Path], Any], resume: bool, progress: bool) -> Path:
    """Optimise ``model`` for ``config.training.steps`` steps; returns ``out_dir/final``.

    ``batch_loss(step)`` returns ``(loss, samples)`` for optimizer step ``step``, drawing its batch
    and channel from ``batch_generator(seed, model, step)``.
    """
    from simulator.training.data import batch_generator
    from simulator.training.loop import StepLog, fit

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
        logger.info("%s: resuming at step %d", config.model, start)
    model.train()
    log = StepLog(log_path, LOG_COLUMNS, schedule.steps, start, config.log_every, config.model, progress)

    def step_loss(step: int) -> tuple[float, int]:
        # Dropout draws from the global generator: seed it per step so that a resume is exact.
        torch.manual_seed(batch_generator(config.seed, f"{config.model}/dropout", step).initial_seed())
        loss, samples = batch_loss(step)
        loss.backward()
        return float(loss.detach()), samples

    def save_checkpoint(done: int) -> None:
        def write(path: Path) -> None:
            save(model, path)
            torch.save({"step": done, "optimizer": optimizer.state_dict()}, path / STATE_FILE)

        write_dir_atomically(write, checkpoint_dir)
        logger.info("%s: checkpoint at step %d", config.model, done)

    fit(optimizer, params, schedule, start, step_loss, log, config.checkpoint_every, save_checkpoint)
    model.eval()
    write_dir_atomically(lambda path: save(model, path), final_dir)
    if checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    return final_dir


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


def _already_trained(config: RunConfig) -> Path | None:
    final = Path(config.out_dir) / "final"
    if (final / "config.json").is_file():
        logger.info("%s already trained: %s", config.model, final)
        return final
    return None


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
        channels = channel_set(config.training.channels, config.training.equalizer)
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
    from simulator.baselines.image_user import vision_encoder_from_codec
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
        channels = channel_set(config.training.channels, config.training.equalizer)
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


