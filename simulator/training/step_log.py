"""The progress of a training loop (codec stages and baselines): a tqdm bar and the ``train_log.csv`` rows."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from simulator.files import append_csv_row

__all__ = ["StepLog"]


class StepLog:
    """Every ``every`` optimizer steps and at the last one, a CSV row with the loss, the learning rate,
    the throughput since the previous row (samples/s) and the elapsed wall time (s); a progress bar
    when ``progress``.

    Args:
        path: the CSV log (``columns``; rows are appended, the header written once).
        total: the loop's last step; ``start``: the step it resumes at.
        fixed: columns every row repeats (e.g. the stage name).
        write: False on the ranks of a distributed run that do not log (the bar still advances).
    """

    def __init__(self, path: Path, columns: Sequence[str], total: int, start: int, every: int, desc: str,
                 progress: bool, fixed: dict | None = None, write: bool = True):
        self.path, self.columns, self.total, self.every = path, columns, total, every
        self.fixed, self.write = dict(fixed or {}), write
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True)
        self.started = self.window_start = time.perf_counter()
        self.window_samples = 0

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
