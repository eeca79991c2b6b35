"""Reading typed YAML configs (scenarios, sweeps, training) with one-line errors.

YAML is read with ``yaml.safe_load``; validation errors from pydantic become one
:class:`~simulator.errors.UserError` line naming the file and the dotted field path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from simulator.errors import UserError

__all__ = ["load_yaml_config", "validation_message", "apply_overrides", "read_yaml", "check_task_weights"]

Model = TypeVar("Model")


def validation_message(err) -> str:
    """The first problem of a pydantic ``ValidationError`` as ``field.path: message``."""
    first = err.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ())) or "(top level)"
    message = first.get("msg", str(err))
    message = message.removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = "unknown key"
    return f"{location}: {message}"


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path`` (safe loader); UserError when missing, unreadable or not a mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{path}: invalid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a mapping of keys to values")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested dict, in place."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UserError(f"--set: bad key {key!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"--set {key}: cannot parse value {raw!r}") from None
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: {part!r} is not a mapping")
            node = child
        node[parts[-1]] = value
    return data


def load_yaml_config(path: str | Path, model: type[Model], overrides: list[str] | None = None) -> Model:
    """Read, override and validate; any problem is one UserError line naming the file and field."""
    from pydantic import ValidationError

    data = apply_overrides(read_yaml(path), overrides or [])
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(f"{path}: {validation_message(err)}") from None


def check_task_weights(tasks: dict[str, float], known) -> dict[str, float]:
    """A task-mixture mapping: known task names, finite weights >= 0, not all 0 (ValueError otherwise)."""
    import math

    unknown = sorted(set(tasks) - set(known))
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}; tasks are {', '.join(known)}")
    if any(not math.isfinite(w) or w < 0 for w in tasks.values()) or sum(tasks.values()) <= 0:
        raise ValueError("task weights must be >= 0 and not all 0")
    return tasks
