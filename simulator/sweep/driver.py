"""The sweep from start to end: plan (read, expand, validate, check the folder), run the points locally
or on Ray, write each part as it arrives, combine, and record the manifest."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from simulator.provenance import process_record
from simulator.sweep.grid import (GridPoint, SweepFile, expand_grid, grid_columns, load_sweep, prepare_data, resolve_base,
                                  validate_points)
from simulator.sweep.point import execute_point
from simulator.sweep.ray_backend import ray_session, run_on_ray
from simulator.sweep.store import SweepDirectory

__all__ = ["SweepPlan", "plan_sweep", "run_sweep"]


@dataclass
class SweepPlan:
    """A validated sweep, ready to run (nothing written yet)."""

    sweep: SweepFile
    sweep_path: Path
    base: Path
    points: list[GridPoint]
    directory: SweepDirectory
    name: str
    scenarios: list = field(default_factory=list)


def plan_sweep(sweep_path: str | Path, out: str | Path | None = None, resume: bool = False) -> SweepPlan:
    """Read the sweep, expand and validate every point, check the output folder. Writes nothing."""
    sweep_path = Path(sweep_path)
    sweep = load_sweep(sweep_path)
    base = resolve_base(sweep, sweep_path)
    points = expand_grid(sweep)
    scenarios = validate_points(base, points)
    name = sweep.name or sweep_path.stem
    folder = Path(out) if out else Path(sweep.out_dir) if sweep.out_dir else Path("results") / name
    directory = SweepDirectory(folder, grid_columns(sweep))
    directory.check(resume, base)
    return SweepPlan(sweep, sweep_path, base, points, directory, name, scenarios)


def run_sweep(plan: SweepPlan, *, use_ray: bool, address: str | None = None, resume: bool = False,
              max_parallel: int | None = None, on_start: Callable[[int, int], None] | None = None,
              on_point: Callable[[GridPoint, dict], None] | None = None) -> dict:
    """Run the plan's points (skipping finished ones with ``resume``); returns the manifest.

    ``on_start(total, skipped)`` is called once before the first point, ``on_point(point, outcome)``
    after each point that ran. KeyboardInterrupt: the finished parts are combined, the manifest says
    ``interrupted``, and the interrupt is raised again.
    """
    directory, sweep = plan.directory, plan.sweep
    started = time.time()
    dump = {**sweep.dump(), "base": str(plan.base), "name": plan.name, "out_dir": str(directory.path)}
    skipped = [p for p in plan.points if resume and directory.finished(p.point_id)]
    skipped_ids = {p.point_id for p in skipped}
    todo = [p for p in plan.points if p.point_id not in skipped_ids]
    by_id = {p.point_id: p for p in plan.points}
    records: dict[str, dict] = {}
    manifest = {"status": "running", "name": plan.name, "description": sweep.description,
                "sweep_file": str(plan.sweep_path), "base": str(plan.base), "out": str(directory.path),
                "started_unix": round(started, 3), "points_total": len(plan.points), "points_skipped": len(skipped),
                "grid_keys": list(sweep.grid), "set": sweep.set_, "resources": sweep.resources.model_dump(),
                "max_parallel": max_parallel, "ray": None, **process_record()}
    directory.start(dump)

    def record(outcome: dict) -> None:
        point = by_id[outcome["point_id"]]
        directory.write_part(point, outcome)
        records[point.point_id] = outcome
        if on_point is not None:
            on_point(point, outcome)

    def finish(status: str, error: str | None = None) -> dict:
        rows = directory.combine(plan.points)
        points = []
        for point in plan.points:
            saved = directory.status(point.point_id) or {}
            points.append({"point_id": point.point_id, "grid": point.grid_values,
                           "status": saved.get("status", "pending"), "wall_s": saved.get("wall_s"),
                           "error": saved.get("error"), "resumed": point.point_id in skipped_ids})
        manifest.update(status=status, rows=rows, wall_time_s=round(time.time() - started, 3), codecs=_codecs(plan),
                        points_ok=sum(p["status"] == "ok" for p in points),
                        points_error=sum(p["status"] == "error" for p in points),
                        points_ran=len(records), points=points)
        if error:
            manifest["error"] = error
        directory.cleanup()
        directory.write_manifest(manifest)
        return manifest

    specs = [{"point_id": p.point_id, "base": str(plan.base), "overrides": p.override_strings()} for p in todo]
    try:
        if address is None and specs:
            todo_ids = {spec["point_id"] for spec in specs}
            prepare_data([s for p, s in zip(plan.points, plan.scenarios) if p.point_id in todo_ids])
        if on_start is not None:
            on_start(len(plan.points), len(skipped))
        if use_ray and specs:
            with ray_session(address, directory.path, sweep.resources) as info:
                manifest["ray"] = info
                directory.write_manifest(manifest)
                run_on_ray(specs, sweep.resources, sweep.max_retries, max_parallel or len(specs), record)
        else:
            directory.write_manifest(manifest)
            for spec in specs:
                record(execute_point(spec))
    except KeyboardInterrupt:
        finish("interrupted")
        raise
    except BaseException as err:
        finish("failed", error=f"{type(err).__name__}: {err}")
        raise
    errors = sum(o["status"] != "ok" for o in records.values())
    if manifest.get("ray") and manifest["ray"].get("mode") == "local" and not errors:
        temp_dir = manifest["ray"].get("temp_dir")
        if temp_dir and Path(temp_dir).parent == directory.path.resolve():
            shutil.rmtree(temp_dir, ignore_errors=True)  # Ray's session logs are kept only when a point failed
    manifest = finish("complete")
    if manifest["points_error"]:
        manifest["status"] = "incomplete"
        directory.write_manifest(manifest)
    return manifest


def _codecs(plan) -> list[dict]:
    """The distinct codecs the finished points ran (checkpoint, its SHA-256, profile, base-LLM
    provenance), each with the systems that used it: from the points' records, resumed ones included."""
    found: dict[tuple, dict] = {}
    for point in plan.points:
        saved = plan.directory.status(point.point_id) or {}
        for system, record in (saved.get("codecs") or {}).items():
            entry = found.setdefault((record["checkpoint"], record["checkpoint_sha256"]), {**record, "systems": []})
            if system not in entry["systems"]:
                entry["systems"].append(system)
    return list(found.values())
