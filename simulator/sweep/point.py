"""One grid point, run in a Ray worker or in the driver's process: the same code path as ``run``."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from simulator.errors import UserError

__all__ = ["ModelCache", "execute_point"]


class ModelCache:
    """Models loaded in this process, reused across sweep points (they are read-only during a
    run): a worker loads each checkpoint once. Keyed by kind, folder, device and the weights'
    modification time (a retrained checkpoint is loaded again); at most ``size`` kept."""

    def __init__(self, size: int = 4):
        self.size = size
        self._models: dict[tuple, Any] = {}

    def get(self, kind: str, directory: str | Path, device, load: Callable[[], Any]) -> Any:
        path = Path(directory).resolve()
        try:
            mtime = (path / "model.safetensors").stat().st_mtime
        except OSError:
            mtime = -1.0
        key = (kind, str(path), str(device), mtime)
        if key not in self._models:
            model = load()
            while len(self._models) >= self.size:
                self._models.pop(next(iter(self._models)))
            self._models[key] = model
        return self._models[key]


_MODELS = ModelCache()


def _run_scenario(base: str, overrides: list[str]) -> tuple[list[dict], dict]:
    """What ``run BASE --set ...`` computes: the summary rows of every point of the scenario."""
    import uuid

    from simulator.runner import RunSetup

    # RunSetup only checks that its output folder is free; it is never created (the sweep writes parts).
    unused_out = Path(tempfile.gettempdir()) / f"m4sc-sweep-unused-{uuid.uuid4().hex}"
    setup = RunSetup(base, overrides, unused_out, models=_MODELS)
    runner = setup.runner
    runner.prepare()
    rows = []
    for results in runner.run():
        for result in results:
            rows += setup.rows(result)
    manifest = setup.manifest()
    # Each codec's checkpoint hash and base-LLM provenance, as run's manifest records them.
    codecs = {"m4sc": {key: manifest[key] for key in ("checkpoint", "checkpoint_sha256", "codec_profile", "codec_llm")},
              **manifest["codecs"]}
    info = {"checkpoint": str(setup.checkpoint), "tasks_per_point": runner.tasks_per_run, "codecs": codecs}
    return rows, info


def _ray_node_id() -> str | None:
    """The Ray node running this process (a cluster's hosts can share a name), or None outside Ray."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - Ray missing or not a Ray worker: no node
        return None


def execute_point(spec: dict) -> dict:
    """Run one grid point; never raises for a failing point (status ``error`` with the message).

    ``spec``: ``point_id``, ``base`` (absolute scenario path), ``overrides`` (``key=value`` strings).
    Returns ``point_id``, ``status``, ``error``, ``wall_s``, ``rows`` (list of dicts), ``host``, ``pid``,
    ``ray_node`` and ``info``.
    """
    began = time.perf_counter()
    outcome = {"point_id": spec["point_id"], "status": "ok", "error": None, "rows": [], "info": {},
               "host": socket.gethostname(), "pid": os.getpid(), "ray_node": _ray_node_id()}
    try:
        outcome["rows"], outcome["info"] = _run_scenario(spec["base"], spec["overrides"])
    except UserError as err:
        outcome.update(status="error", error=str(err))
    except Exception as err:  # noqa: BLE001 - a failing point is recorded, the sweep goes on
        outcome.update(status="error", error=f"{type(err).__name__}: {err}")
    outcome["wall_s"] = round(time.perf_counter() - began, 3)
    return outcome
