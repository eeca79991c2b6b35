"""Task accuracy of a semantic codec through a channel, sample by sample (``python -m simulator eval``).

Each sample is one transmission: the BS generates the answer (caption, label) and its per-token
semantic vectors, the channel encoder maps them to ``c`` complex symbols per token (Es = 1), the
symbols cross the channel (flat Rayleigh fades once per token, i.e. coherence = ``c`` symbols;
MMSE equalisation, as in stage-3 training), and the receiver decodes them. ``snr_db = inf``
bypasses the channel (noise-free, but still through the channel codec).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from simulator.assets import SHIPPED_CHECKPOINT as DEFAULT_CHECKPOINT
from simulator.assets import SHIPPED_DATA_PRESET, SPLIT_DATA_SEEDS, default_eval_clevr_dir
from simulator.errors import UserError
from simulator.links import semantic_channel

__all__ = ["EvalSample", "load_eval_samples", "evaluate", "transmit", "with_other_images", "DEFAULT_CHECKPOINT",
           "default_checkpoint"]


def default_checkpoint() -> Path:
    """The codec shipped inside the package; UserError if this installation lacks it."""
    if not (DEFAULT_CHECKPOINT / "config.json").is_file():
        raise UserError(f"no shipped checkpoint at {DEFAULT_CHECKPOINT}; pass --checkpoint DIR "
                        f"(train one with: python -m simulator train scenarios/train_tiny.yaml)")
    return DEFAULT_CHECKPOINT


@dataclass
class EvalSample:
    """One task instance: ``image`` ``[3, H, W]`` float in [0, 1] or None; ``references`` are the accepted outputs.

    Not :class:`simulator.workload.Task`, which names its image file for the engine's pool to load:
    an eval sample carries its pixels, because some exist only in memory (the oracle's rendered
    attribute images, :mod:`simulator.training.oracle`). Both reach the codec the same way, as
    ``(kind, text, image)`` through :meth:`simulator.models.transceiver.Transmitter.send`.
    """

    task: str
    input_text: str | None
    references: list[str]
    image: torch.Tensor | None = None


def load_eval_samples(task: str, num_samples: int, data_dir: str | Path | None = None, split: str = "test",
                      text_dir: str | Path | None = None, subset: str = "sentences",
                      preset: str = SHIPPED_DATA_PRESET) -> list[EvalSample]:
    """The first ``num_samples`` samples of ``task`` from split ``split`` of a CLEVR-layout folder or a
    sentiment corpus. Without a folder (``data_dir`` None) the images are the generated evaluation set
    of ``preset`` for ``split`` ("val" or "test": each has a generator seed of its own,
    :data:`~simulator.assets.SPLIT_DATA_SEEDS`)."""
    from simulator.data.loaders import ClevrCaptionDataset, ClevrVQADataset, SentimentCorpusDataset

    if task == "classify":
        from simulator.data.sentiment import DEFAULT_TEXT_DIR

        root = Path(text_dir) if text_dir else Path(DEFAULT_TEXT_DIR).expanduser()
        corpus = SentimentCorpusDataset(root, split, subset)
        return [EvalSample("classify", s["text"], [s["label"]]) for s in corpus.samples[:num_samples]]
    if data_dir:
        root = Path(data_dir)
    else:
        if split not in SPLIT_DATA_SEEDS:
            raise UserError(f"split {split!r}: the generated evaluation sets are {' and '.join(SPLIT_DATA_SEEDS)}")
        root, split = default_eval_clevr_dir(preset=preset, split=split), "test"
    if task == "vqa":
        dataset = ClevrVQADataset(root, split)
        answered = [i for i, q in enumerate(dataset.questions) if q.get("answer") is not None][:num_samples]
        if dataset.questions and not answered:
            raise UserError(f"{root}: the {split} questions have no answers (as in real CLEVR's test split); "
                            "evaluate on another --split")
        return [EvalSample("vqa", item["question"], [str(item["answer"])], item["image"])
                for item in (dataset[i] for i in answered)]
    if task == "caption":
        dataset = ClevrCaptionDataset(root, split)
        count = min(num_samples, len(dataset))
        return [EvalSample("caption", None, item["captions"], item["image"]) for item in (dataset[i] for i in range(count))]
    raise UserError(f"unknown task {task!r}; tasks are vqa, caption, classify")


@torch.inference_mode()
def evaluate(model, samples: list[EvalSample], channel: str, snr_db_list: list[float], seed: int = 0,
             batch_size: int = 32, rate: int | None = None) -> list[dict]:
    """Score ``samples`` at each SNR (dB; ``inf`` = noise-free). One row per SNR.

    ``rate``: send every token as the first ``rate`` of its ``c`` symbols (a nested codec's rates,
    :attr:`~simulator.models.config.CodecConfig.rates`); None: all ``c``.

    Row keys: ``task``, ``channel``, ``snr_db``, ``accuracy`` (vqa/classify) or ``bleu`` and
    ``rouge_l`` (caption), ``accuracy_noiseless`` / ``bleu4_noiseless`` (the BS's own output, before
    the channel; the names of ``metrics.parquet``),
    ``num_samples``, ``symbols_per_sample`` (mean complex channel uses per sample).
    """
    from channels.conventions import snr_db_to_no
    from simulator.data.metrics import task_score
    from simulator.models.transceiver import Receiver

    if not samples:
        raise UserError("no evaluation samples")
    if rate is not None and rate not in model.config.rates:
        raise UserError(f"--rate {rate}: the codec serves {', '.join(map(str, model.config.rates))} symbols per token")
    task = samples[0].task
    references = [s.references for s in samples]
    receiver = Receiver.from_model(model)
    c = model.config.channel_symbols_per_token
    try:
        block = semantic_channel(channel, coherence_symbols=c)  # one fade per token
    except ValueError as err:
        raise UserError(str(err)) from None
    sent = transmit(model, samples, batch_size)
    if rate is not None:
        sent = [_at_rate(model, t, rate) for t in sent]
    bs_texts = [text for t in sent for text in model.decode_text(t.tokens, t.token_mask)]
    bs_scores = {f"{k}_noiseless": v for k, v in task_score(task, bs_texts, references, rouge=True).items()}
    symbols = float(sum(int(t.token_mask.sum()) for t in sent)) * (rate or c) / len(samples)
    rows = []
    for snr_db in snr_db_list:
        generator = torch.Generator().manual_seed(seed)
        texts = []
        for t in sent:
            batch, tokens, _ = t.symbols.shape
            if math.isinf(snr_db) and snr_db > 0:
                received = t.symbols
            else:
                flat = t.symbols.reshape(batch, 1, tokens * c)
                received = block(flat, snr_db_to_no(snr_db), generator).x_hat.reshape(batch, tokens, c)
            rates = None if rate is None else torch.full(t.token_mask.shape, rate, device=received.device)
            texts += receiver(received, t.token_mask, rates)[1]
        noise_free = math.isinf(snr_db)
        rows.append({"task": task, "channel": "none" if noise_free else channel, "snr_db": None if noise_free else snr_db,
                     **task_score(task, texts, references, rouge=True), **bs_scores, "num_samples": len(samples),
                     "symbols_per_sample": symbols})
    return rows


def with_other_images(samples: list[EvalSample]) -> list[EvalSample]:
    """The same questions, each with another scene's image: the distinct images, in order of first
    appearance, pass each one's questions to the next (cyclically), so no question keeps its image.
    What a codec scores then is what it answers without the right image (the image-swap check);
    UserError with fewer than two distinct images."""
    from dataclasses import replace

    keys = [None if s.image is None else s.image.numpy().tobytes() for s in samples]
    distinct = list(dict.fromkeys(k for k in keys if k is not None))
    if len(distinct) < 2:
        raise UserError("--wrong-image needs samples of at least two different images")
    image_of = {k: s.image for k, s in zip(keys, samples) if k is not None}
    following = {key: image_of[distinct[(i + 1) % len(distinct)]] for i, key in enumerate(distinct)}
    return [s if k is None else replace(s, image=following[k]) for k, s in zip(keys, samples)]


@torch.inference_mode()
def transmit(model, samples: list[EvalSample], batch_size: int = 32) -> list:
    """The BS's side for ``samples`` (any mix of tasks), ``batch_size`` at a time through
    :meth:`~simulator.models.transceiver.Transmitter.send`; one Transmission per batch."""
    from simulator.models.transceiver import Transmitter

    transmitter = Transmitter(model)
    return [transmitter.send([(s.task, s.input_text, s.image) for s in samples[start:start + batch_size]])
            for start in range(0, len(samples), batch_size)]


def _at_rate(model, sent, rate: int):
    """``sent`` with every token re-encoded as the first ``rate`` of its symbols (zero after them)."""
    from dataclasses import replace

    rates = torch.full(sent.token_mask.shape, rate, device=sent.hidden.device)
    symbols = model.channel_encoder(sent.hidden, rates) * sent.token_mask.unsqueeze(-1)
    return replace(sent, symbols=symbols)
