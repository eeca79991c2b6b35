"""Reading typed YAML configs (scenarios, sweeps, training) with one-line errors.

YAML is read with a ``yaml.SafeLoader`` that refuses duplicate keys; validation errors from
pydantic become one :class:`~simulator.errors.UserError` line naming the file and the dotted field
path.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from simulator.errors import UserError

__all__ = ["StrictModel", "load_yaml_config", "validation_message", "apply_overrides", "read_yaml", "check_task_weights"]

Model = TypeVar("Model")


class StrictModel(BaseModel):
    """Base of the config models: unknown keys are errors, and so are ``true``/``false`` for a number
    and a number for ``true``/``false`` (pydantic alone reads ``num_users: true`` as 1)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, value, info: ValidationInfo):
        field = cls.model_fields.get(info.field_name)
        if field is not None:
            problem = _bool_number_mixup(value, field.annotation)
            if problem:
                raise ValueError(problem)
        return value


_NUMBERS = {int, float}
_SEQUENCES = (list, tuple, set, frozenset)


def _bool_number_mixup(value, annotation) -> str | None:
    """Why ``value`` is a boolean where ``annotation`` wants a number or the reverse (also inside a
    list of numbers); None when it is not."""
    admitted = _leaf_types(annotation)
    if isinstance(value, bool):
        return f"must be a number, not {str(value).lower()}" if bool not in admitted and admitted & _NUMBERS else None
    if isinstance(value, (int, float)):
        return f"must be true or false, not {value}" if admitted <= {bool, type(None)} and bool in admitted else None
    if isinstance(value, (list, tuple)):
        element_types = set()
        for leaf in admitted:
            if typing.get_origin(leaf) in _SEQUENCES:
                element_types |= set().union(*(_leaf_types(a) for a in typing.get_args(leaf) if a is not Ellipsis))
        if bool not in element_types and element_types & _NUMBERS and any(isinstance(v, bool) for v in value):
            return "must be a list of numbers, not true/false"
    return None


def _leaf_types(annotation) -> set:
    """The types an annotation admits: ``int | None`` -> {int, NoneType}; ``Annotated`` unwrapped;
    generics such as ``list[float]`` and ``Literal`` kept whole."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return set().union(*(_leaf_types(arg) for arg in typing.get_args(annotation)))
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    return {annotation}


def validation_message(err) -> str:
    """The first problem of a pydantic ``ValidationError`` as ``field.path: message`` (a check of
    the whole config, e.g. the workload size, as its message alone)."""
    first = err.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ()))
    message = first.get("msg", str(err))
    message = message.removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = "unknown key"
    return f"{location}: {message}" if location else message


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path`` (safe loader, duplicate keys refused); UserError when missing,
    a folder, not UTF-8, invalid or not a mapping."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a config file")
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}): a config file must be YAML") from None
    try:
        data = yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader: plain data only
    except _DuplicateKey as err:
        raise UserError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{path}: invalid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a mapping of keys to values")
    return data


def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """``yaml.SafeLoader`` that refuses a key given twice in one mapping (the plain loader keeps
        the last silently, so a second ``channel:`` section would replace the first unseen)."""

        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(f"duplicate key {key!r} on line {line} (first on line {seen[key]})")
                    seen[key] = line
                except TypeError:  # an unhashable key: the base class reports it
                    continue
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


class _DuplicateKey(Exception):
    pass


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


#: Largest weight of a task mixture (weights are relative: a larger one is a typo).
MAX_TASK_WEIGHT = 1e6


def check_task_weights(tasks: dict[str, float], known) -> dict[str, float]:
    """A task-mixture mapping: known task names, weights in [0, 1e6], not all 0 (ValueError otherwise)."""
    unknown = sorted(set(tasks) - set(known))
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}; tasks are {', '.join(known)}")
    if any(not 0 <= w <= MAX_TASK_WEIGHT for w in tasks.values()) or sum(tasks.values()) <= 0:
        raise ValueError(f"task weights must be in [0, {MAX_TASK_WEIGHT:g}] and not all 0")
    return tasks
