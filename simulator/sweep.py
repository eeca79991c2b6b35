"""Parameter sweeps over scenarios (``python -m simulator sweep SWEEP.yaml``), locally or on Ray.

A sweep file (:class:`SweepFile`) names a base scenario, fixed overrides (``set``) and a grid of
overrides (``grid``: dotted scenario key -> list of values; the cartesian product is swept). Each
grid point is the base scenario with ``set`` and its grid values applied exactly as
``run --set key=value`` would apply them, and is run through the same code path as ``run``
(:class:`simulator.runner.RunSetup`, :class:`simulator.engine.SweepRunner`,
:func:`simulator.results.summarize`). A grid value may itself be a list (``snr_db: [[0], [10]]``:
two points, one SNR each).

Point id: the first 10 hex digits of the SHA-256 of the point's overrides (``set`` and grid values,
JSON with sorted keys). It does not change when the grid is extended, so a resumed sweep with more
values only runs the new points. ``20`` and ``20.0`` are different values (and ids).

Output folder::

    sweep.yaml               the sweep as run (defaults filled in, base resolved to an absolute path)
    parts/<point_id>.parquet the point's rows (columns of simulator.results.COLUMNS + grid columns + point_id)
    parts/<point_id>.json    status ok / error, error message, wall time, overrides, worker host/pid
    metrics.parquet          every ok part of this sweep's grid, in grid order (rebuilt at the end)
    manifest.json            status, per-point table, versions, git commit, timings

Every file is written to a temporary name and moved into place with ``os.replace``; a part's json
is written after its parquet, so an ``ok`` json always has its rows. Grid keys become extra
columns named by the dotted key; list/dict values are stored as JSON text; a key that already is a
column (``snr_db``, ``num_users``, ``seed``) is not repeated: that column holds the row's value.

Ray: points are remote tasks with the sweep's per-point resources, retried on worker loss; the
worker returns the rows to the driver, which writes the parts (the output folder need not be
shared with cluster nodes). Each worker process keeps the codecs it loaded (keyed by checkpoint
path, device and weight-file mtime) and reuses them for later points.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.errors import UserError
from simulator.results import atomic_write_bytes

__all__ = ["SweepFile", "SweepResources", "GridPoint", "load_sweep", "expand_grid", "point_id", "execute_point",
           "SweepDirectory", "run_sweep", "ray_session"]

#: AF_UNIX socket paths are limited to 107 bytes; Ray puts sockets ~70 characters below its temp dir.
_RAY_SOCKET_MARGIN = 72
_UNIX_PATH_MAX = 107


class SweepResources(BaseModel):
    """Resources of one grid point (a Ray task)."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(default=1, gt=0)
    num_gpus: float = Field(default=0, ge=0)


class SweepFile(BaseModel):
    """A sweep YAML. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, description="sweep name; None: the YAML file's stem")
    description: str = ""
    base: str = Field(description="base scenario YAML, relative to the sweep file (or to the working directory)")
    set_: dict[str, Any] = Field(default_factory=dict, alias="set", description="fixed overrides, dotted keys")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values (cartesian product)")
    resources: SweepResources = Field(default_factory=SweepResources)
    out_dir: str | None = Field(default=None, description="output folder; None: results/<name>")
    ray: bool = Field(default=True, description="false: run the points one after another in this process")
    max_retries: int = Field(default=2, ge=0, description="Ray retries of a point whose worker died")

    @field_validator("set_", "grid")
    @classmethod
    def _dotted_keys(cls, values: dict) -> dict:
        for key in values:
            if not isinstance(key, str) or not all(part.strip() for part in key.split(".")):
                raise ValueError(f"bad key {key!r} (expected a dotted scenario key such as channel.name)")
        return values

    @field_validator("grid")
    @classmethod
    def _grid_values(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if not values:
                raise ValueError(f"{key}: give at least one value")
            canonical = [json.dumps(v, sort_keys=True) for v in values]
            if len(set(canonical)) != len(canonical):
                raise ValueError(f"{key}: values must be distinct")
        return grid

    @model_validator(mode="after")
    def _set_and_grid_disjoint(self) -> "SweepFile":
        both = sorted(set(self.set_) & set(self.grid))
        if both:
            raise ValueError(f"{both[0]} is both in set and in grid")
        return self

    def dump(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


@dataclass
class GridPoint:
    """One point: its id, grid values (dotted key -> value) and all overrides (set + grid)."""

    index: int
    point_id: str
    grid_values: dict[str, Any]
    overrides: dict[str, Any]

    def override_strings(self) -> list[str]:
        """``key=value`` strings for :func:`simulator.config_io.apply_overrides` (as ``run --set``)."""
        return [f"{key}={_yaml_value(value)}" for key, value in self.overrides.items()]

    def label(self) -> str:
        return ", ".join(f"{key}={json.dumps(value)}" for key, value in self.grid_values.items()) or "(no grid)"


def _yaml_value(value: Any) -> str:
    """A YAML text that ``yaml.safe_load`` reads back as ``value`` exactly (floats such as 1e-5 included)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip()
    return text.removesuffix("...").strip()


def point_id(overrides: dict[str, Any]) -> str:
    """Stable short id of a point's overrides (order-independent)."""
    import hashlib

    text = json.dumps(overrides, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def load_sweep(path: str | Path) -> SweepFile:
    """Read and validate a sweep YAML; one-line UserError naming the field on any problem."""
    from simulator.config_io import load_yaml_config

    return load_yaml_config(path, SweepFile)


def resolve_base(sweep: SweepFile, sweep_path: str | Path) -> Path:
    """The base scenario file: relative to the sweep file first, then to the working directory."""
    base = Path(sweep.base).expanduser()
    if base.is_absolute():
        candidates = [base]
    else:
        candidates = [Path(sweep_path).resolve().parent / base, Path.cwd() / base]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"{sweep_path}: base: scenario file not found: {sweep.base}")


def expand_grid(sweep: SweepFile) -> list[GridPoint]:
    """The cartesian product of the grid, in YAML order (last key varies fastest)."""
    keys = list(sweep.grid)
    points = []
    for index, combo in enumerate(itertools.product(*(sweep.grid[k] for k in keys))):
        grid_values = dict(zip(keys, combo))
        overrides = {**sweep.set_, **grid_values}
        points.append(GridPoint(index, point_id(overrides), grid_values, overrides))
    return points


def validate_points(base: Path, points: list[GridPoint]) -> list:
    """Validate every point's scenario (schema only) before anything runs; UserError names the key.
    Returns the points' :class:`~simulator.scenario.Scenario` objects."""
    from simulator.scenario import load_scenario

    scenarios = []
    for point in points:
        try:
            scenarios.append(load_scenario(base, point.override_strings()))
        except UserError as err:
            raise UserError(f"grid point {point.point_id} ({point.label()}): {err}") from None
    return scenarios


def prepare_data(scenarios: list) -> None:
    """Generate the CLEVR-like eval sets the points use (each once, here), so that parallel points
    on this machine do not generate the same cache folder at the same time."""
    from simulator.engine import resolve_clevr_dir

    seen = set()
    for scenario in scenarios:
        if not {"vqa", "caption"} & set(scenario.traffic.active_tasks()) or scenario.data.clevr_dir is not None:
            continue
        key = (scenario.data.cache_dir, scenario.data.generator_seed, scenario.data.num_images, scenario.data.split)
        if key not in seen:
            seen.add(key)
            resolve_clevr_dir(scenario.data, scenario.data.split)


def grid_columns(sweep: SweepFile) -> dict[str, Callable[[Any], Any]]:
    """Extra column name -> converter of a grid value (scalars kept when a key's values agree in
    kind, JSON text otherwise). Keys that already are metric columns are left out."""
    from simulator.results import COLUMNS

    columns = {}
    for key, values in sweep.grid.items():
        if key in COLUMNS or key == "point_id":
            continue
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)
        kinds = {type(v) for v in values if v is not None}
        if numbers or kinds in ({bool}, {str}):
            columns[key] = lambda v: v
        else:
            columns[key] = lambda v: None if v is None else json.dumps(v, sort_keys=True)
    return columns


# ---- one point (runs in a Ray worker or in this process) ----------------------------------------
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

    from simulator.results import summarize
    from simulator.runner import RunSetup, channel_label

    # RunSetup only checks that its output folder is free; it is never created (the sweep writes parts).
    unused_out = Path(tempfile.gettempdir()) / f"m4sc-sweep-unused-{uuid.uuid4().hex}"
    setup = RunSetup(base, overrides, unused_out, models=_MODELS)
    runner = setup.runner
    runner.prepare()
    rows = []
    for results in runner.run():
        for result in results:
            rows += summarize(result, setup.scenario, channel_label(setup), setup.symbols_per_token)
    info = {"checkpoint": str(setup.checkpoint), "tasks_per_point": runner.tasks_per_run}
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


# ---- the output folder ---------------------------------------------------------------------------
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
        import yaml

        try:
            self.parts.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--out: cannot create {self.path}: {err.strerror}") from None
        text = yaml.safe_dump(sweep_dump, sort_keys=False, allow_unicode=True)
        atomic_write_bytes(self.path / self.SWEEP, text.encode("utf-8"))

    def status(self, pid: str) -> dict | None:
        """The point's recorded json, or None."""
        try:
            return json.loads((self.parts / f"{pid}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def finished(self, pid: str) -> bool:
        record = self.status(pid)
        return bool(record) and record.get("status") == "ok" and (self.parts / f"{pid}.parquet").is_file()

    def point_frame(self, point: GridPoint, rows: list[dict]):
        from simulator.results import _frame

        frame = _frame(rows)
        for column, convert in self.columns.items():
            frame[column] = [convert(point.grid_values[column])] * len(frame)
        frame["point_id"] = point.point_id
        frame["point_id"] = frame["point_id"].astype("string")
        return frame

    def write_part(self, point: GridPoint, outcome: dict) -> None:
        """Rows first (ok only), then the json record; both atomically."""
        if outcome["status"] == "ok":
            buffer = io.BytesIO()
            self.point_frame(point, outcome["rows"]).to_parquet(buffer, index=False)
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
            frame = self.point_frame(points[0], []) if points else pd.DataFrame()
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


# ---- Ray ------------------------------------------------------------------------------------------
def _ray_temp_dir(out: Path) -> tuple[Path, bool]:
    """``<out>/ray_tmp`` when Ray's socket paths below it fit AF_UNIX's limit; else a short /tmp folder.
    Returns the folder and whether it is a private temporary folder to delete afterwards."""
    preferred = (out / "ray_tmp").resolve()
    if len(str(preferred)) + _RAY_SOCKET_MARGIN <= _UNIX_PATH_MAX:
        return preferred, False
    return Path(tempfile.mkdtemp(prefix="m4sc-ray-", dir="/tmp")), True


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA: no GPU
        return 0


@contextmanager
def _loopback_only():
    """Keep an embedded Ray on 127.0.0.1. Ray turns ``_node_ip_address="127.0.0.1"`` into the address
    it routes to a public DNS server from; with its "cluster" switch off it uses the loopback address
    instead. The switch is read by this process (patched) and by the GCS, raylet and workers that
    ray.init starts (environment variable, inherited at their start)."""
    from ray._private import ray_constants

    variable = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved_env, saved_flag = os.environ.get(variable), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[variable] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = saved_env


_RAY_TOKEN_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _reset_ray_token_cache() -> None:
    from ray._raylet import AuthenticationTokenLoader

    AuthenticationTokenLoader.instance().reset_cache()


@contextmanager
def _token_in(folder: Path):
    """Token authentication for the embedded Ray with its token in ``folder/auth_token``.

    Ray 2.5x turns token authentication on for every new local cluster and, when it finds no token,
    writes a new one to ``~/.ray/auth_token``, where it stays and is picked up by every later Ray
    of that user. Here the token lives with the sweep's Ray files (``RAY_AUTH_TOKEN_PATH``, which
    Ray reads before ``~/.ray``). A user's own ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH``
    wins: then nothing changes. Yields the token file, or None."""
    if any(os.environ.get(name) for name in _RAY_TOKEN_VARIABLES):
        yield None
        return
    token_path = folder / "auth_token"
    descriptor = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    _reset_ray_token_cache()
    try:
        yield token_path
    finally:
        for name in _RAY_TOKEN_VARIABLES:  # ray.init sets RAY_AUTH_MODE=token for its children
            os.environ.pop(name, None)
        _reset_ray_token_cache()


@contextmanager
def ray_session(address: str | None, out: Path, resources: SweepResources):
    """Connect to ``address`` or start an embedded local Ray bound to loopback; always shut down.

    Yields a dict describing the session (``address``, ``mode``, ``num_cpus``, ``num_gpus``)."""
    import logging

    import ray

    if ray.is_initialized():
        raise UserError("Ray is already initialised in this process")
    # No usage reporting (it would try to reach an outside address).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    private_tmp = None
    info: dict[str, Any]
    with ExitStack() as session:  # the token's setting ends after ray.shutdown
        try:
            if address:
                try:
                    context = ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
                except Exception as err:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError ...
                    hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" else \
                        " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token in this environment)"
                    raise UserError(f"--address: cannot connect to Ray at {address}: {type(err).__name__}: {err}{hint}") from None
                info = {"mode": "cluster", "address": address}
            else:
                gpus = _gpu_count() if resources.num_gpus > 0 else 0
                if resources.num_gpus > gpus:
                    raise UserError(f"resources.num_gpus: {resources.num_gpus:g} per point, but this machine has "
                                    f"{gpus} GPU(s) (connect to a cluster with --address)")
                cpus = _cpu_count()
                if resources.num_cpus > cpus:
                    raise UserError(f"resources.num_cpus: {resources.num_cpus:g} per point, but this machine has {cpus} CPU(s)")
                temp_dir, is_private = _ray_temp_dir(out)
                private_tmp = temp_dir if is_private else None
                temp_dir.mkdir(parents=True, exist_ok=True)
                token_path = session.enter_context(_token_in(temp_dir))
                with _loopback_only():
                    context = ray.init(address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=False,
                                       _node_ip_address="127.0.0.1", _temp_dir=str(temp_dir), log_to_driver=False,
                                       logging_level=logging.ERROR, configure_logging=True)
                info = {"mode": "local", "address": getattr(context, "address_info", {}).get("address"),
                        "num_cpus": cpus, "num_gpus": gpus, "temp_dir": str(temp_dir),
                        "auth_token": None if token_path is None else str(token_path)}
            info["ray_version"] = ray.__version__
            yield info
        finally:
            if ray.is_initialized():
                ray.shutdown()
            if private_tmp is not None:
                shutil.rmtree(private_tmp, ignore_errors=True)


def _run_on_ray(specs: list[dict], resources: SweepResources, max_retries: int, max_parallel: int,
                on_outcome: Callable[[dict], None]) -> None:
    import ray

    remote = ray.remote(execute_point).options(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus,
                                               max_retries=max_retries, retry_exceptions=False)
    queue = list(specs)
    pending: dict = {}
    try:
        while queue or pending:
            while queue and len(pending) < max_parallel:
                spec = queue.pop(0)
                pending[remote.remote(spec)] = spec
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - worker lost beyond max_retries, cancelled ...
                    outcome = {"point_id": spec["point_id"], "status": "error", "rows": [], "info": {},
                               "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                               "wall_s": None}
                on_outcome(outcome)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


# ---- the sweep ----------------------------------------------------------------------------------
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
    from simulator.results import _git_commit, code_versions

    import platform

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
                "max_parallel": max_parallel, "ray": None, "git_commit": _git_commit(), "versions": code_versions(),
                "platform": platform.platform(), "host": platform.node(), "pid": os.getpid()}
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
        manifest.update(status=status, rows=rows, wall_time_s=round(time.time() - started, 3),
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
                _run_on_ray(specs, sweep.resources, sweep.max_retries, max_parallel or len(specs), record)
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
