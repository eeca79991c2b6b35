"""The result store of a sweep: its output folder, one part per point, combined at the end."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any, Callable

from simulator.errors import UserError
from simulator.files import atomic_write_bytes, atomic_write_yaml, create_folder
from simulator.sweep.grid import GridPoint

__all__ = ["SweepDirectory"]


class SweepDirectory:
    """The output folder of a sweep (see the module docstring for its layout)."""

    SWEEP = "sweep.yaml"
    MANIFEST = "manifest.json"
    METRICS = "metrics.parquet"
    PARTS = "parts"

    def __init__(self, path: str | Path, columns: dict[str, Callable[[Any], Any]]):
        self.path = Path(path)
        self.parts = self.path / self.PARTS
        self.columns = columns

    def is_empty(self) -> bool:
        return not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir()))

    def check(self, resume: bool, base: Path) -> None:
        """UserError when the folder is in use (without resume) or holds a sweep of another base."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out: {self.path} is a file")
        if not resume:
            if not self.is_empty():
                raise UserError(f"--out: {self.path} exists and is not empty; use --resume or choose another folder")
            return
        previous = self.path / self.SWEEP
        if previous.is_file():
            import yaml

            try:
                old_base = (yaml.safe_load(previous.read_text(encoding="utf-8")) or {}).get("base")
            except (yaml.YAMLError, AttributeError):
                raise UserError(f"--resume: cannot read {previous}") from None
            if old_base is not None and Path(old_base) != base:
                raise UserError(f"--resume: {self.path} holds a sweep of base {old_base}, not {base}")

    def start(self, sweep_dump: dict) -> None:
        create_folder(self.parts)
        atomic_write_yaml(self.path / self.SWEEP, sweep_dump)

    def status(self, pid: str) -> dict | None:
        """The point's recorded json, or None."""
        try:
            return json.loads((self.parts / f"{pid}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def finished(self, pid: str) -> bool:
        record = self.status(pid)
        return bool(record) and record.get("status") == "ok" and (self.parts / f"{pid}.parquet").is_file()

    def _point_frame(self, point: GridPoint, rows: list[dict]):
        from simulator.results import metrics_frame

        frame = metrics_frame(rows)
        for column, convert in self.columns.items():
            frame[column] = [convert(point.grid_values[column])] * len(frame)
        frame["point_id"] = point.point_id
        frame["point_id"] = frame["point_id"].astype("string")
        return frame

    def write_part(self, point: GridPoint, outcome: dict) -> None:
        """Rows first (ok only), then the json record; both atomically."""
        if outcome["status"] == "ok":
            buffer = io.BytesIO()
            self._point_frame(point, outcome["rows"]).to_parquet(buffer, index=False)
            atomic_write_bytes(self.parts / f"{point.point_id}.parquet", buffer.getvalue())
        else:
            (self.parts / f"{point.point_id}.parquet").unlink(missing_ok=True)
        record = {"point_id": point.point_id, "status": outcome["status"], "error": outcome["error"],
                  "wall_s": outcome["wall_s"], "rows": len(outcome["rows"]), "grid": point.grid_values,
                  "overrides": point.overrides, "host": outcome.get("host"), "pid": outcome.get("pid"),
                  "ray_node": outcome.get("ray_node"), **outcome.get("info", {})}
        text = json.dumps(record, indent=2, default=str) + "\n"
        atomic_write_bytes(self.parts / f"{point.point_id}.json", text.encode("utf-8"))

    def combine(self, points: list[GridPoint]) -> int:
        """Rebuild ``metrics.parquet`` from the ok parts of ``points`` (grid order); returns its rows."""
        import pandas as pd

        frames = [pd.read_parquet(self.parts / f"{p.point_id}.parquet") for p in points if self.finished(p.point_id)]
        frames = [f for f in frames if not f.empty]
        if frames:
            frame = pd.concat(frames, ignore_index=True)
        else:
            frame = self._point_frame(points[0], []) if points else pd.DataFrame()
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        atomic_write_bytes(self.path / self.METRICS, buffer.getvalue())
        return len(frame)

    def write_manifest(self, manifest: dict) -> None:
        text = json.dumps(manifest, indent=2, default=str) + "\n"
        atomic_write_bytes(self.path / self.MANIFEST, text.encode("utf-8"))

    def cleanup(self) -> None:
        for stale in itertools.chain(self.path.glob("*.tmp"), self.parts.glob("*.tmp")):
            stale.unlink(missing_ok=True)
