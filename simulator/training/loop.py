"""The one training loop (:func:`fit`) of the codec stages and the baselines, its learning-rate schedule
(:func:`cosine_lr`) and its progress (:class:`StepLog`: a tqdm bar and the ``train_log.csv`` rows)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from simulator.errors import UserError
from simulator.files import append_csv_row, drop_csv_rows

__all__ = ["StepLog", "cosine_lr", "fit"]


class StepLog:
    """Every ``every`` optimizer steps and at the last one, a CSV row with the loss, the learning rate,
    the throughput since the previous row (samples/s) and the elapsed wall time (s); a progress bar
    when ``progress``.

    Args:
        path: the CSV log (``columns``; rows are appended, the header written once). Its rows of this
            loop (those matching ``fixed``) past ``start`` go first: steps to be redone after a resume,
            all of them when the loop starts over, so the log and the model card hold this run's.
        total: the loop's last step; ``start``: the step it resumes at.
        fixed: columns every row repeats (e.g. the stage name).
        write: False on the ranks of a distributed run that do not log (the bar still advances).
    """

    def __init__(self, path: Path, columns: Sequence[str], total: int, start: int, every: int, desc: str,
                 progress: bool, fixed: dict | None = None, write: bool = True):
        self.path, self.columns, self.total, self.every = path, columns, total, every
        self.fixed, self.write = dict(fixed or {}), write
        if write:
            try:
                drop_csv_rows(path, columns, lambda row: int(row["step"]) > start
                              and all(row.get(key) == str(value) for key, value in self.fixed.items()))
            except (KeyError, TypeError, ValueError) as err:
                raise UserError(f"{path} is not a training log of this run ({type(err).__name__}: {err}): "
                                f"move it away or use a new out_dir") from None
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True)
        self.started = self.window_start = time.perf_counter()
        self.window_samples = 0

    def restart_window(self) -> None:
        """Start the next ``samples_per_s`` window now (after set-up that belongs to the stage's wall
        time, ``elapsed_s``, but not to its throughput)."""
        self.window_start, self.window_samples = time.perf_counter(), 0

    def step(self, done: int, loss: float, lr: float, samples: int) -> None:
        """Record optimizer step ``done`` (1-based) that saw ``samples`` samples at mean ``loss``."""
        self.window_samples += samples
        if self.write and (done % self.every == 0 or done == self.total):
            now = time.perf_counter()
            rate = self.window_samples / max(now - self.window_start, 1e-9)
            append_csv_row(self.path, {**self.fixed, "step": done, "loss": round(loss, 5), "lr": lr,
                                       "samples_per_s": round(rate, 2), "elapsed_s": round(now - self.started, 2)},
                           self.columns)
            self.window_start, self.window_samples = now, 0
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{loss:.3f}", samples_per_s=f"{rate:.1f}")
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cosine_lr(step: int, schedule) -> float:
    """Learning-rate multiplier at optimizer step ``step`` of ``schedule`` (``steps``, ``warmup_steps``,
    ``min_lr_ratio``): linear warm-up, then cosine to ``min_lr_ratio``."""
    if schedule.warmup_steps and step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    span = max(1, schedule.steps - schedule.warmup_steps)
    progress = min(1.0, (step - schedule.warmup_steps) / span)
    return schedule.min_lr_ratio + (1 - schedule.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def fit(optimizer: torch.optim.Optimizer, params: list, schedule, start: int,
        step_loss: Callable[[int], tuple[float, int]], log: StepLog, checkpoint_every: int,
        save_checkpoint: Callable[[int], None], scaler=None, reduce: Callable[[float], float] | None = None,
        after_step: Callable[[int], None] | None = None) -> None:
    """Optimizer steps ``start .. schedule.steps - 1``: the learning rate ``schedule.lr x``
    :func:`cosine_lr`; ``step_loss(step)`` runs the step's forward and backward passes and returns
    ``(loss, samples)``; ``reduce(loss)`` (distributed runs) averages the gradients and the loss over
    processes; gradients clipped at norm 1; the optimizer step (through ``scaler`` with fp16); the
    log row; ``after_step(steps_done)`` (e.g. a validation score); ``save_checkpoint(steps_done)`` every
    ``checkpoint_every`` steps before the last."""
    for step in range(start, schedule.steps):
        lr = schedule.lr * cosine_lr(step, schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, samples = step_loss(step)
        if reduce is not None:
            loss = reduce(loss)
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        log.step(done, loss, lr, samples)
        if after_step is not None:
            after_step(done)
        if done % checkpoint_every == 0 and done < schedule.steps:
            save_checkpoint(done)
    log.close()

