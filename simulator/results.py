"""Run outputs: the tidy metrics table, atomic writing, and the manifest (docs/main-job.md).

``results/<run>/`` holds

- ``metrics.parquet``: one row per (system, task, channel, sweep point, num_users, sharing
  variant, seed), columns :data:`COLUMNS`. Rewritten after every sweep point through a temporary
  file and ``os.replace``, so it is always a complete, readable table of the points finished;
- ``config.yaml``: the scenario as run, every default and derived value resolved;
- ``manifest.json``: status (``running`` / ``complete`` / ``interrupted`` / ``failed``), versions,
  git commit, seed, checkpoint hash, points done, timings, host and pid (a `running` manifest whose
  process is gone was killed). Also replaced atomically.

Accounting (analog semantics): symbols are complex channel uses; ``bytes = symbols x 2 reals x
bits_per_real / 8``; ``bytes_total = bytes(symbols_public + symbols_private) + overhead_bits / 8``.
``symbols_public`` counts each broadcast once: a public vector's ``c`` symbols are split evenly
among the users (tasks) sharing it, so summing rows over tasks gives the broadcast once.
Digital baselines (``digital_source``, ``digital_answer``): ``bytes_total`` is the information
payload (file / UTF-8 bytes) and ``symbols_private`` the coded channel uses at the MCS chosen
(CRC and ARQ retransmissions included).

Channel uses (the physical resource, every system alike): ``channel_uses = symbols_public +
symbols_private + overhead_bits / SIDE_INFO_BITS_PER_SYMBOL`` (side information sent at the lowest
MCS), and ``channel_uses_per_correct`` divides it by the row's correct answers.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from simulator.errors import UserError
from simulator.files import atomic_write_bytes, atomic_write_yaml, create_folder
from simulator.provenance import process_record

__all__ = ["COLUMNS", "KEY_COLUMNS", "METRIC_COLUMNS", "SIDE_INFO_BITS_PER_SYMBOL", "summarize", "RunDirectory", "metrics_frame"]

#: Spectral efficiency (information bits per complex symbol) at which side information (``overhead_bits``:
#: public-token maps, rate signalling) is counted in ``channel_uses``: the lowest MCS of the digital
#: chain (38.214 table 1, MCS 3: QPSK at code rate 0.245), where it is most robust. Checked against
#: :func:`channels.link_adaptation.mcs_table` by a test (kept literal so results import no Sionna).
SIDE_INFO_BITS_PER_SYMBOL = 0.490234375

#: Columns identifying a row.
KEY_COLUMNS = ["system", "task", "channel", "placement", "traffic", "snr_db", "tx_power_dbm", "num_users",
               "sharing", "threshold", "adaptation", "seed"]
#: Measured columns (units in the names: _s seconds, _db dB; symbols = complex channel uses).
METRIC_COLUMNS = [
    "num_tasks",
    "accuracy",              # vqa / classify: exact match after normalisation, fraction in [0, 1]; NaN for caption
    "bleu4",                 # caption: corpus BLEU-4 in [0, 100]; NaN otherwise
    "accuracy_noiseless",    # the BS's own output (no channel), same metric as accuracy
    "bleu4_noiseless",
    "token_accuracy",        # fraction of the BS's output tokens the users recovered
    "sequence_accuracy",     # fraction of tasks whose every token was recovered
    "tokens_total",          # output tokens over the row's tasks
    "tokens_public",         # of those, delivered through the broadcast
    "sharing_ratio",         # tokens_public / tokens_total
    "same_scene_fraction",   # tasks whose scene (image) another user in the same batch also has
    "symbols_public",        # broadcast complex symbols, counted once
    "symbols_private",       # unicast complex symbols
    "symbols_no_sharing",    # what unicasting everything would cost (M4SC: tokens_total x c)
    "symbols_per_token_mean",  # mean symbols a user received a token at (rate adaptation); NaN if not token coded
    "overhead_bits",         # side information (public-token maps, rate signalling)
    "bits_per_real",
    "bytes_total",
    "bytes_per_task",
    "channel_uses",          # complex symbols on the air: symbols_public + symbols_private + side information
    "channel_uses_per_task",
    "channel_uses_per_correct",  # channel_uses / correct answers (accuracy x num_tasks); NaN for caption or none right
    "answer_entropy_bits",   # entropy of the task kind's answers over the run's split; NaN for caption
    "answer_cond_entropy_bits",  # H(answer | input text) over the run's split, plug-in (the Fano bound's); NaN for caption
    "num_answers",           # distinct answers of the task kind over the run's split (the Fano bound's M); NaN for caption
    "snr_db_user_min",
    "snr_db_user_median",
    "snr_db_user_max",
    "latency_mean_s",        # arrival -> delivery = queueing + air time
    "latency_p50_s",
    "latency_p95_s",
    "latency_max_s",
    "queueing_mean_s",
    "air_time_mean_s",
]
COLUMNS = KEY_COLUMNS + METRIC_COLUMNS


def _score(kind: str, predictions: list[str], references: list[tuple[str, ...]]) -> tuple[float, float]:
    """``(accuracy, bleu4)`` of one task kind (the other one NaN)."""
    from simulator.data.metrics import task_score

    score = task_score(kind, predictions, references)
    return score.get("accuracy", math.nan), score.get("bleu4", math.nan)


def summarize(result, scenario, channel_label: str, symbols_per_token: int,
              answer_entropy_bits: dict[str, float] | None = None,
              answer_statistics: dict[str, dict[str, float]] | None = None) -> list[dict]:
    """Rows of one :class:`simulator.engine.PointResult`, one per task kind, in :data:`TASKS` order.
    ``answer_entropy_bits``: task kind -> entropy of its answers over the run's split (NaN if absent);
    ``answer_statistics``: task kind -> :meth:`~simulator.workload.TaskPool.answer_statistics`."""
    from simulator.scenario import TASKS

    bits_per_real = scenario.accounting.bits_per_real
    snr_users = np.asarray(result.snr_db_users, dtype=np.float64)
    point = result.point
    rows = []
    for kind in TASKS:
        records = sorted((r for r in result.records if r.task.kind == kind), key=lambda r: (r.arrival_s, r.user, r.start_s))
        if not records:
            continue
        references = [r.task.references for r in records]
        accuracy, bleu4 = _score(kind, [r.delivery.prediction for r in records], references)
        accuracy_noiseless, bleu4_noiseless = _score(kind, [r.delivery.reference_prediction for r in records], references)
        tokens = sum(r.tokens for r in records)
        public_tokens = sum(r.public_tokens for r in records)
        symbols_public = float(sum(r.symbols_public for r in records))
        symbols_private = int(sum(r.symbols_private for r in records))
        overhead = int(sum(r.overhead_bits for r in records))
        if records[0].payload_bits is not None:  # digital: the information bytes the chain carried
            bytes_total = sum(r.payload_bits for r in records) / 8
        else:
            bytes_total = (symbols_public + symbols_private) * 2 * bits_per_real / 8 + overhead / 8
        channel_uses = symbols_public + symbols_private + overhead / SIDE_INFO_BITS_PER_SYMBOL
        correct = accuracy * len(records) if not math.isnan(accuracy) else 0.0
        latency = np.array([r.latency_s for r in records])
        rows.append({
            "system": result.system,
            "task": kind,
            "channel": channel_label,
            "placement": scenario.placement.mode,
            "traffic": scenario.traffic.mode,
            "snr_db": float(point.snr_db) if point.snr_db is not None else float(np.median(snr_users)),
            "tx_power_dbm": float(point.tx_power_dbm) if point.tx_power_dbm is not None else math.nan,
            "num_users": scenario.num_users,
            "sharing": result.variant.enabled,
            "threshold": math.nan if result.variant.threshold is None else float(result.variant.threshold),
            "adaptation": result.adaptation.label,
            "seed": scenario.seed,
            "num_tasks": len(records),
            "accuracy": accuracy,
            "bleu4": bleu4,
            "accuracy_noiseless": accuracy_noiseless,
            "bleu4_noiseless": bleu4_noiseless,
            "token_accuracy": float(np.mean([r.delivery.token_accuracy for r in records])),
            "sequence_accuracy": float(np.mean([r.delivery.sequence_recovered for r in records])),
            "tokens_total": tokens,
            "tokens_public": public_tokens,
            "sharing_ratio": public_tokens / tokens if tokens else 0.0,
            "same_scene_fraction": float(np.mean([r.same_scene for r in records])),
            "symbols_public": symbols_public,
            "symbols_private": symbols_private,
            # With sharing off every system unicasts all it sends; only M4SC runs with sharing on.
            "symbols_no_sharing": tokens * symbols_per_token if result.variant.enabled
            else int(round(symbols_public)) + symbols_private,
            "symbols_per_token_mean": _symbols_per_token(records, tokens),
            "overhead_bits": overhead,
            "bits_per_real": bits_per_real,
            "bytes_total": bytes_total,
            "bytes_per_task": bytes_total / len(records),
            "channel_uses": channel_uses,
            "channel_uses_per_task": channel_uses / len(records),
            "channel_uses_per_correct": channel_uses / correct if correct > 0 else math.nan,
            "answer_entropy_bits": (answer_entropy_bits or {}).get(kind, math.nan),
            "answer_cond_entropy_bits": (answer_statistics or {}).get(kind, {}).get("answer_cond_entropy_bits", math.nan),
            "num_answers": (answer_statistics or {}).get(kind, {}).get("num_answers", math.nan),
            "snr_db_user_min": float(snr_users.min()),
            "snr_db_user_median": float(np.median(snr_users)),
            "snr_db_user_max": float(snr_users.max()),
            "latency_mean_s": float(latency.mean()),
            "latency_p50_s": float(np.percentile(latency, 50)),
            "latency_p95_s": float(np.percentile(latency, 95)),
            "latency_max_s": float(latency.max()),
            "queueing_mean_s": float(np.mean([r.queueing_s for r in records])),
            "air_time_mean_s": float(np.mean([r.air_time_s for r in records])),
        })
    return rows


def _symbols_per_token(records, tokens: int) -> float:
    if not tokens or any(r.token_symbols is None for r in records):
        return math.nan
    return sum(r.token_symbols for r in records) / tokens


# ---- files -------------------------------------------------------------------------------------
def metrics_frame(rows: list[dict]):
    import pandas as pd

    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("system", "task", "channel", "placement", "traffic", "adaptation"):
        frame[column] = frame[column].astype("string")
    frame["sharing"] = frame["sharing"].astype(bool)
    for column in ("num_users", "seed", "num_tasks", "tokens_total", "tokens_public", "symbols_private",
                   "symbols_no_sharing", "overhead_bits", "bits_per_real"):
        frame[column] = frame[column].astype("int64")
    return frame


class RunDirectory:
    """The output folder of one run.

    Args:
        path: the folder; it must not exist or be empty (checked by :meth:`check_free` before any
            work, so a bad run never writes into an existing result).
    """

    METRICS = "metrics.parquet"
    CONFIG = "config.yaml"
    MANIFEST = "manifest.json"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict] = []
        self.manifest: dict = {}
        self._started = time.time()

    def check_free(self) -> None:
        """UserError if the folder exists and is not empty (or is a file)."""
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise UserError(f"--out: {self.path} exists and is not empty; choose another folder")

    def start(self, resolved_config: dict, manifest: dict) -> None:
        """Create the folder; write ``config.yaml`` and a ``running`` manifest."""
        self.check_free()
        create_folder(self.path)
        atomic_write_yaml(self.path / self.CONFIG, resolved_config)
        self.manifest = {"status": "running", "started_unix": round(self._started, 3), **manifest,
                         "points_done": 0, "rows": 0, **process_record()}
        self._write_manifest()

    def add_rows(self, rows: list[dict]) -> None:
        """Append one sweep point's rows; rewrite ``metrics.parquet`` and the manifest atomically."""
        import io

        self.rows.extend(rows)
        buffer = io.BytesIO()
        metrics_frame(self.rows).to_parquet(buffer, index=False)
        atomic_write_bytes(self.path / self.METRICS, buffer.getvalue())
        self.manifest["points_done"] = self.manifest.get("points_done", 0) + 1
        self.manifest["rows"] = len(self.rows)
        self._write_manifest()

    def finish(self, status: str, error: str | None = None) -> None:
        """Record the final status (``complete`` / ``interrupted`` / ``failed``) and timings."""
        self.manifest["status"] = status
        self.manifest["wall_time_s"] = round(time.time() - self._started, 3)
        if error:
            self.manifest["error"] = error
        if not (self.path / self.METRICS).exists():  # interrupted before the first point: an empty table
            atomic_write_bytes(self.path / self.METRICS, _empty_parquet())
        for stale in self.path.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        self._write_manifest()

    def frame(self):
        """The rows so far as a DataFrame (columns :data:`COLUMNS`)."""
        return metrics_frame(self.rows)

    def _write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=2, sort_keys=False, default=str) + "\n"
        atomic_write_bytes(self.path / self.MANIFEST, text.encode("utf-8"))


def _empty_parquet() -> bytes:
    import io

    buffer = io.BytesIO()
    metrics_frame([]).to_parquet(buffer, index=False)
    return buffer.getvalue()
