"""Measurements behind ``python -m simulator bench``: the M4SC link pipeline at several user counts.

One *pipeline pass* serves ``N`` users one VQA task each (snapshot): the BS transmitter (vision +
projector + LLM generation, all users in one padded batch), the semantic comparator, the channel
(AWGN; the broadcast seen by every user, the private symbols on each user's own link), the
receivers (recombination, channel decoder, LM head), and bookkeeping (texts, scores). The
transmitter generates in chunks of ``generation_batch_size`` prompts, the scenario default, as
``run`` does (one padded batch of 256 would decode until its longest answer ends). Times are
wall-clock seconds on this machine; the FLOP bound divides the forward FLOPs actually run
(``torch.utils.flop_counter``) by a measured fp32 matmul throughput of this machine.
"""

from __future__ import annotations

import math
import time

import torch

__all__ = ["matmul_flops_per_s", "copy_bytes_per_s", "PipelineBench", "TransmitterBench", "measure_training"]


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(work, repeats: int, device) -> float:
    """Fastest of ``repeats`` timed calls of ``work()`` after one warm-up, waiting for the device each time."""
    work()
    _synchronize(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops_per_s(size: int = 1024, repeats: int = 10, device="cpu", dtype=torch.float32) -> float:
    """Best matmul throughput (FLOP/s) over ``repeats`` products of two random ``size x size`` matrices."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size ** 3 / _best_seconds(lambda: torch.mm(a, b), repeats, device)


def copy_bytes_per_s(num_bytes: int = 1 << 30, repeats: int = 5, device="cpu") -> float:
    """Best device-memory bandwidth (bytes read + written per second) of one large tensor copy."""
    source = torch.randn(num_bytes // 4, device=device)
    target = torch.empty_like(source)
    return 2 * source.numel() * 4 / _best_seconds(lambda: target.copy_(source), repeats, device)


class PipelineBench:
    """Runs pipeline passes of the shipped (or given) codec on held-out VQA tasks.

    Args:
        checkpoint: codec folder (None: the shipped one).
        num_tasks: distinct tasks to cycle through (user ``u`` gets task ``u mod num_tasks``).
        device: where the codec runs; the comparator and the channels run on the CPU, as in ``run``.
    """

    def __init__(self, checkpoint=None, num_tasks: int = 256, threshold: float = 0.95, snr_db: float = 10.0,
                 generation_batch_size: int | None = None, device="cpu"):
        from simulator.evaluation import default_checkpoint, load_eval_samples
        from simulator.models.checkpoint import load_codec
        from simulator.sharing import SemanticComparator

        self.device = torch.device(device)
        self.use_model(load_codec(checkpoint or default_checkpoint(), device=str(self.device), inference=True))
        self.comparator = SemanticComparator(threshold)
        self.snr_db = snr_db
        if generation_batch_size is None:
            from simulator.scenario import ModelSection

            generation_batch_size = ModelSection.model_fields["generation_batch_size"].default
        self.generation_batch_size = generation_batch_size
        samples = load_eval_samples("vqa", num_tasks)
        # Prepared once, outside the timed passes.
        self.prompts, images, _ = self.transmitter.inputs([("vqa", s.input_text, s.image) for s in samples])
        self.images = images.to(self.device)
        self.answers = [s.references[0] for s in samples]

    def use_model(self, model) -> None:
        """Time ``model`` (an inference codec, e.g. a quantised copy) from now on."""
        from simulator.models.transceiver import Receiver, Transmitter

        self.model = model
        self.transmitter, self.receiver = Transmitter(model), Receiver.from_model(model)

    @torch.inference_mode()
    def run(self, num_users: int, seed: int = 0) -> dict[str, float]:
        """One pass for ``num_users`` users; returns seconds per part and ``total_s``."""
        from channels.conventions import snr_db_to_no
        from channels.flat import AWGNChannel, broadcast
        from channels.randomness import user_generators
        from simulator.data.metrics import vqa_accuracy
        from simulator.sharing import recombine

        rows = [u % len(self.prompts) for u in range(num_users)]
        prompts = [self.prompts[r] for r in rows]
        times = {}
        start = time.perf_counter()
        sent = self._transmit(prompts, self.images[rows])
        times["transmitter_s"] = time.perf_counter() - start
        mark = time.perf_counter()
        plan = self.comparator(sent.hidden, sent.token_mask, sent.tokens)
        times["comparator_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        channel, no = AWGNChannel(equalizer="mmse"), snr_db_to_no(self.snr_db)
        num_tokens, c = sent.symbols.shape[1], sent.symbols.shape[2]
        private = channel(sent.symbols.reshape(1, num_users, num_tokens * c), no,
                          user_generators(seed, num_users, 0)).x_hat.reshape(num_users, num_tokens, c)
        public = torch.zeros(num_users, 0, c, dtype=private.dtype)
        if plan.num_public:
            public_symbols = self.model.channel_encoder(plan.public_vectors.to(self.device)).cpu().reshape(1, -1)
            public = channel(broadcast(public_symbols, num_users), no,
                             user_generators(seed, num_users, 1)).x_hat.reshape(num_users, plan.num_public, c)
        times["channel_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        received = recombine(public, private, plan)
        _, texts = self.receiver(received.to(self.device), sent.token_mask.to(self.device))
        times["receiver_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        accuracy = vqa_accuracy(texts, [self.answers[r] for r in rows])
        times["bookkeeping_s"] = time.perf_counter() - mark
        times["total_s"] = time.perf_counter() - start
        times["accuracy"] = accuracy
        return times

    def _transmit(self, prompts: list[str], images: torch.Tensor):
        """The transmitter over chunks of ``generation_batch_size``, re-padded to one token grid."""
        from simulator.models.transceiver import Transmission

        step = self.generation_batch_size
        parts = [self.transmitter(prompts[i:i + step], images[i:i + step]) for i in range(0, len(prompts), step)]
        width = max(p.tokens.shape[1] for p in parts)

        def pad(tensor, value=0):
            extra = width - tensor.shape[1]
            if extra == 0:
                return tensor
            filler = tensor.new_full((tensor.shape[0], extra, *tensor.shape[2:]), value)
            return torch.cat([tensor, filler], dim=1)

        return Transmission(*(torch.cat([pad(getattr(p, name).cpu()) for p in parts])
                              for name in ("tokens", "token_mask", "hidden", "symbols")))

    def forward_flops(self, num_users: int) -> float:
        """FLOPs of the forward passes one pipeline pass runs (transmitter + receiver)."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self.run(num_users)
        return float(counter.get_total_flops())


class TransmitterBench:
    """Times the BS transmitter alone (vision + projector + LLM generation + channel encoder).

    For the ``paper`` profile without a checkpoint the weights are random: no pretrained SigLIP or
    Gemma installs offline, and speed does not depend on the weights' values, only on the shapes.
    Every pass decodes exactly ``max_new_tokens`` steps (EOS ignored), so all passes do the same work.

    Args:
        profile: codec profile used when ``checkpoint`` is None (``tiny`` then means the shipped codec).
        checkpoint: codec folder to time instead.
        device: torch device; dtype: weight dtype (bf16 is what a GPU user serves the paper profile in).
    """

    def __init__(self, profile: str = "paper", checkpoint=None, device="cpu", dtype=torch.float32,
                 max_new_tokens: int | None = None):
        from simulator.data.templates import render_prompt
        from simulator.evaluation import default_checkpoint
        from simulator.models.checkpoint import load_codec
        from simulator.models.config import profile_config
        from simulator.models.mllm import M4SCModel
        from simulator.models.transceiver import Transmitter

        self.device, self.dtype = torch.device(device), dtype
        timed_as_loaded = checkpoint is not None or profile == "tiny"
        # The codec to time, or (random paper model) the shipped one for its tokenizer and texts.
        loaded = load_codec(checkpoint or default_checkpoint(), device=str(self.device) if timed_as_loaded else "cpu")
        if timed_as_loaded:
            self.model = loaded
        else:
            # The shipped word-level tokenizer stands in for Gemma's: prompt lengths are alike, and
            # its ids are valid in any larger vocabulary.
            previous = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                with self.device:
                    self.model = M4SCModel(profile_config(profile), loaded.tokenizer)
            finally:
                torch.set_default_dtype(previous)
        self.model = self.model.to(dtype).eval().merge_lora()  # the timed model only, as load_codec(inference=True) does
        self.transmitter = Transmitter(self.model)
        self.max_new_tokens = max_new_tokens or self.model.config.max_new_tokens
        instruction = loaded.config.instructions.get("vqa")
        self.prompt = render_prompt("vqa", "What colour is the large cube behind the small sphere?", "", instruction)
        self.image_size = int(self.model.vision.config.image_size)

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def _pass(self, batch_size: int, images: torch.Tensor) -> None:
        sent = self.transmitter([self.prompt] * batch_size, images, max_new_tokens=self.max_new_tokens,
                                stop_at_eos=False)
        sent.symbols.sum().item()  # waits for the device

    @torch.inference_mode()
    def run(self, batch_size: int, repeats: int = 3) -> dict[str, float]:
        """Median of ``repeats`` timed passes after one warm-up; seconds, FLOPs and memory of one pass."""
        from torch.utils.flop_counter import FlopCounterMode

        generator = torch.Generator(device="cpu").manual_seed(batch_size)
        images = (torch.rand(batch_size, 3, self.image_size, self.image_size, generator=generator) * 2 - 1)
        images = images.to(self.device, self.dtype)
        self._pass(batch_size, images)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self._pass(batch_size, images)
            times.append(time.perf_counter() - start)
        row = {"seconds": sorted(times)[len(times) // 2], "batch_size": batch_size, "new_tokens": self.max_new_tokens}
        if self.device.type == "cuda":
            row["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        counter = FlopCounterMode(display=False)
        with counter:
            self._pass(batch_size, images)
        row["flops"] = float(counter.get_total_flops())
        row["samples_per_s"] = batch_size / row["seconds"]
        row["tokens_per_s"] = batch_size * self.max_new_tokens / row["seconds"]
        return row


def measure_training(config, stages: list[str], steps: int, precisions=("fp32", "bf16"), warmup: int = 1) -> dict:
    """Seconds per training sample of each of ``stages`` of a recipe (``config``, a
    :class:`~simulator.training.config.TrainConfig`) at each precision: ``warmup + steps`` optimizer
    steps of the stage from a fresh codec in a temporary run folder (data and weights as the recipe
    says), the median per-step rate of the last ``steps`` (``log_every`` 1; validation, checkpoints
    and token pools off). Returns ``{stage: {precision: {"s_per_sample", "s_per_step", "runs_as"}}}``
    plus each stage's ``bf16_speedup`` where both ran."""
    import csv
    import statistics
    import tempfile
    from pathlib import Path

    from simulator.device import resolve_device
    from simulator.training.config import TrainConfig
    from simulator.training.precision import describe
    from simulator.training.trainer import Trainer

    report: dict = {}
    train_data = None
    with tempfile.TemporaryDirectory(prefix="m4sc-bench-train-") as tmp:
        for precision in precisions:
            for name in stages:
                data = config.model_dump()
                stage = {**data["stages"][name], "steps": warmup + steps, "val_every": 0, "pool_samples": 0,
                         "pool_top_words": 0}
                out = Path(tmp) / f"{precision}-{name}"
                data.update(precision=precision, out_dir=str(out), log_every=1, checkpoint_every=10**6,
                            stages={name: stage}, init_checkpoint=None)
                trainer = Trainer(TrainConfig.model_validate(data))
                if train_data is None:
                    trainer.prepare()
                    train_data = trainer.train_data
                trainer.train_data = train_data
                trainer.run_stage(name, trainer.fresh_model(), resume=False)
                rates = [float(row["samples_per_s"]) for row in csv.DictReader((out / "train_log.csv").open())][warmup:]
                per_sample = 1.0 / statistics.median(rates)
                report.setdefault(name, {})[precision] = {
                    "s_per_sample": round(per_sample, 6), "s_per_step": round(per_sample * stage["batch_size"], 4),
                    "runs_as": describe(precision, resolve_device(config.device))}
    for row in report.values():
        if "fp32" in row and "bf16" in row:
            row["bf16_speedup"] = round(row["fp32"]["s_per_sample"] / row["bf16"]["s_per_sample"], 2)
    return report
