"""The sweep file and its grid: points, their ids and overrides, checked before anything runs."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.errors import UserError

__all__ = ["SweepResources", "SweepFile", "GridPoint", "point_id", "load_sweep", "resolve_base", "expand_grid",
           "validate_points", "prepare_data", "grid_columns"]


class SweepResources(BaseModel):
    """Resources of one grid point (a Ray task)."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(default=1, gt=0, description="CPUs Ray reserves for one point")
    num_gpus: float = Field(default=0, ge=0, description="GPUs Ray reserves for one point (a fraction shares a GPU)")


class SweepFile(BaseModel):
    """A sweep YAML. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, description="sweep name; None: the YAML file's stem")
    description: str = Field(default="", description="free text, recorded in the sweep's manifest.json")
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
    from simulator.workload import resolve_clevr_dir

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
