"""The baselines' checkpoint folders: ``config.json`` (``{"format_version", "model": kind, "config"}``),
``model.safetensors`` and the tokenizer files, in the file names and weight checks of the codec's
folders (:mod:`simulator.models.checkpoint`)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from simulator.errors import not_a_folder
from simulator.models.checkpoint import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    CheckpointError,
    check_weights,
    load_tokenizer,
    read_weights,
)

__all__ = ["BaselineCheckpointError", "StoredConfig", "save_model_folder", "read_model_folder", "load_model_weights",
           "load_model_folder", "config_from_dict"]


class BaselineCheckpointError(CheckpointError):
    """A baseline checkpoint folder is missing, corrupt, of another model, or does not match its
    config. A :class:`ValueError` (through :class:`simulator.models.checkpoint.CheckpointError`,
    which the command line already reports as one line)."""



def save_model_folder(model: nn.Module, config_dict: dict, kind: str, directory: str | Path, tokenizer=None) -> Path:
    """Write ``config.json`` (``{"format_version", "model": kind, "config"}``), ``model.safetensors``
    and the tokenizer files; weights and config are renamed into place last."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().contiguous().cpu() for key, tensor in model.state_dict().items()}
    tmp_weights = directory / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp_weights), metadata={"format_version": str(FORMAT_VERSION), "model": kind})
    tmp_config = directory / (CONFIG_FILE + ".tmp")
    payload = {"format_version": FORMAT_VERSION, "model": kind, "config": config_dict}
    tmp_config.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    tmp_weights.replace(directory / WEIGHTS_FILE)
    tmp_config.replace(directory / CONFIG_FILE)
    return directory


def read_model_folder(directory: str | Path, kind: str) -> tuple[dict, Any]:
    """The stored config dict and tokenizer of a folder written by :func:`save_model_folder`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BaselineCheckpointError(not_a_folder(directory, "checkpoint folder"))
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise BaselineCheckpointError(f"checkpoint has no {CONFIG_FILE}: {path}")
    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as err:
        raise BaselineCheckpointError(f"corrupt {path}: {err}") from None
    if payload.get("format_version") != FORMAT_VERSION:
        raise BaselineCheckpointError(f"{path}: format_version {payload.get('format_version')!r}, expected {FORMAT_VERSION}")
    if payload.get("model") != kind:
        raise BaselineCheckpointError(f"{path}: holds a {payload.get('model')!r} model, expected {kind!r}")
    if not isinstance(payload.get("config"), dict):
        raise BaselineCheckpointError(f"corrupt {path}: no 'config' object")
    if not (directory / WEIGHTS_FILE).is_file():
        raise BaselineCheckpointError(f"checkpoint has no {WEIGHTS_FILE}: {directory / WEIGHTS_FILE}")
    return payload["config"], load_tokenizer(directory, BaselineCheckpointError)


def load_model_weights(model: nn.Module, directory: str | Path, device: str | torch.device = "cpu") -> None:
    """Load ``directory/model.safetensors`` into ``model``; every key and shape must match."""
    weights = Path(directory) / WEIGHTS_FILE
    state = read_weights(weights, str(device), error=BaselineCheckpointError)
    check_weights(state, model.state_dict(), weights, error=BaselineCheckpointError)
    model.load_state_dict(state)


def load_model_folder(directory: str | Path, kind: str, config_cls, model_cls, device: str | torch.device = "cpu"):
    """Build ``model_cls(config, tokenizer)`` from a :func:`save_model_folder` folder of ``kind`` (eval mode).

    Raises:
        BaselineCheckpointError: missing/corrupt files, another model's folder, or weights that do
            not match ``config.json``.
    """
    data, tokenizer = read_model_folder(directory, kind)
    try:
        config = config_cls.from_dict(data)
    except ValueError as err:
        raise BaselineCheckpointError(f"{Path(directory) / CONFIG_FILE}: {err}") from None
    if len(tokenizer) != config.vocab_size:
        raise BaselineCheckpointError(f"{directory}: tokenizer has {len(tokenizer)} entries, config.json says vocab_size {config.vocab_size}")
    model = model_cls(config, tokenizer).to(device)
    load_model_weights(model, directory, device)
    return model.eval()


def config_from_dict(cls, data: dict, what: str):
    """Build the dataclass ``cls`` from ``data``; unknown keys and bad values raise ValueError."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} config key(s): {', '.join(unknown)}")
    try:
        return cls(**copy.deepcopy(data))
    except TypeError as err:
        raise ValueError(f"bad {what} config: {err}") from None


class StoredConfig:
    """Mixin of a baseline's architecture dataclass: the ``config.json`` round trip and the checks
    every transformer baseline makes. ``KIND`` prefixes the field names in error messages."""

    KIND: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return config_from_dict(cls, data, cls.KIND)

    def check_positive(self, *names: str) -> None:
        """ValueError unless every field of ``names`` is an integer >= 1 (booleans are not)."""
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{self.KIND}.{name} must be an integer >= 1, got {value!r}")

    def check_transformer(self, classes: tuple, what: str) -> None:
        """The widths (``d_model`` even and a multiple of ``num_heads``), ``dropout`` in [0, 1) and
        ``classes`` (the output names, ``what``): at least two, distinct."""
        if self.d_model % self.num_heads or self.d_model % 2:
            raise ValueError(f"{self.KIND}.d_model ({self.d_model}) must be even and divisible by num_heads ({self.num_heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"{self.KIND}.dropout must be in [0, 1), got {self.dropout}")
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"{self.KIND}.{what} must be >= 2 distinct names, got {list(classes)}")

