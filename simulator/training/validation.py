"""A stage's learning curve on validation data: every ``val_every`` optimizer steps (and at the
stage's last), the codec answers ``val_samples`` validation samples of each of ``val_tasks``, and a
row per task goes to ``val_log.csv`` beside ``train_log.csv``.

The score is the base station's own answer, noise-free (``bs_score``: what the LLM learnt), and the
answer after the channel codec without noise (``score``; meaningful from stage joint on). Images are
the generated validation set of the run's preset (:data:`~simulator.assets.VALIDATION_DATA_SEED`)
when the training folder was generated, else that folder's ``val`` split; sentences are the corpus'
``val`` split. Test data is never read here.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from simulator.files import append_csv_row, drop_csv_rows

__all__ = ["VAL_LOG", "VAL_COLUMNS", "ValidationCurve"]

VAL_LOG = "val_log.csv"
VAL_COLUMNS = ("stage", "step", "samples_seen", "task", "metric", "bs_score", "score", "num_samples", "eval_s")


class ValidationCurve:
    """Scores a stage's codec on validation data at its steps.

    Args:
        config: the run (:class:`~simulator.training.config.TrainConfig`).
        name: the stage; its ``val_every``, ``val_samples`` and ``val_tasks`` say what and when.
        start: the step the stage (re)starts at: rows of this stage past it are dropped first.
        samples_per_step: training samples per optimizer step (``samples_seen = step x this``).
        write: False on the ranks of a distributed run that do not log.
    """

    def __init__(self, config, name: str, start: int, samples_per_step: int, write: bool = True):
        stage = config.stages[name]
        self.config, self.name, self.stage = config, name, stage
        self.samples_per_step, self.write = samples_per_step, write
        self.path = Path(config.out_dir) / VAL_LOG
        self._samples: dict[str, list] | None = None
        if write and stage.val_every:
            drop_csv_rows(self.path, VAL_COLUMNS, lambda row: row["stage"] == name and int(row["step"]) > start)
            self.samples()  # read now: missing validation data fails at the stage's start, not hours in

    def due(self, done: int) -> bool:
        """Whether step ``done`` (1-based) is scored."""
        every = self.stage.val_every
        return bool(every) and self.write and (done % every == 0 or done == self.stage.steps)

    def samples(self) -> dict[str, list]:
        """Task -> its validation samples (read once)."""
        if self._samples is None:
            from simulator.data.clevr_generator import is_generated
            from simulator.evaluation import load_eval_samples

            data = self.config.data
            clevr_dir = None if is_generated(data.clevr_dir) else data.clevr_dir
            self._samples = {task: load_eval_samples(task, self.stage.val_samples, clevr_dir, "val", data.text_dir,
                                                     data.text_subset, data.preset)
                             for task in self.stage.val_tasks}
        return self._samples

    @torch.no_grad()
    def score(self, model, done: int) -> list[dict]:
        """Score ``model`` (left in the mode it was in) at step ``done``; append and return the rows."""
        from simulator.evaluation import evaluate

        was_training = model.training
        model.eval()
        rows = []
        try:
            for task, samples in self.samples().items():
                began = time.perf_counter()
                result = evaluate(model, samples, "awgn", [float("inf")])[0]
                metric = "bleu4" if task == "caption" else "accuracy"
                rows.append({"stage": self.name, "step": done, "samples_seen": done * self.samples_per_step,
                             "task": task, "metric": metric, "bs_score": round(result[f"{metric}_noiseless"], 5),
                             "score": round(result[metric], 5), "num_samples": len(samples),
                             "eval_s": round(time.perf_counter() - began, 2)})
        finally:
            model.train(was_training)
        for row in rows:
            append_csv_row(self.path, row, VAL_COLUMNS)
        return rows
