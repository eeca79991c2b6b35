"""Accuracy of a trained baseline against SNR on a held-out split: rows of ``eval.csv``, the model card's scores."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from simulator.baselines.deepsc import DeepSC, load_deepsc
from simulator.baselines.deepsc_vqa import DeepSCVQA, load_deepsc_vqa
from simulator.links import channel_set

__all__ = ["EVAL_COLUMNS", "NOISE_FREE", "evaluate_deepsc", "evaluate_deepsc_vqa", "write_eval_csv"]

logger = logging.getLogger(__name__)

EVAL_COLUMNS = ("system", "task", "channel", "snr_db", "accuracy", "bleu4", "num_samples", "symbols_per_sample")
#: The ``channel`` of a noise-free row.
NOISE_FREE = "none"


def write_eval_csv(rows: list[dict], path: Path) -> Path:
    """Write evaluation rows (columns :data:`EVAL_COLUMNS`) atomically."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EVAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def _point_noise(snr_db: float) -> float:
    from channels.conventions import snr_db_to_no

    return 0.0 if math.isinf(snr_db) else float(snr_db_to_no(snr_db))


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
    blocks = channel_set(channels, equalizer) if channels else {}
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
    blocks = channel_set(channels, equalizer) if channels else {}
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
