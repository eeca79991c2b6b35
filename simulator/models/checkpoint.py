"""Save and load the semantic codec, HF-style: ``config.json`` + ``model.safetensors`` + tokenizer.

A folder written by :func:`save_codec` loads with :func:`load_codec` and nothing else: no hub, no
pickle (safetensors only). LoRA adapters are saved unmerged inside the state dict, so stage 3 can
resume training them. When the config names pretrained weight folders (``vision_path`` /
``llm_path``, the ``paper`` profile), those weights are not copied: only the parts this project
trains (projector, LoRA, channel codec, and any non-pretrained part) are saved, and the tokenizer
is the LLM folder's (``package:`` models: unpacked from their optional extra on first use).
"""

from __future__ import annotations

import json
from pathlib import Path

from simulator.errors import not_a_folder
from simulator.models.config import CodecConfig
from simulator.models.pretrained import PretrainedModelError, resolve_llm_path

__all__ = ["CheckpointError", "save_codec", "load_codec", "load_weights", "load_tokenizer", "read_weights",
           "check_weights", "read_codec_config", "FORMAT_VERSION", "CONFIG_FILE", "WEIGHTS_FILE"]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, corrupt, or does not match its config."""


def _pretrained_prefixes(config: CodecConfig) -> tuple[str, ...]:
    prefixes = []
    if config.vision_path:
        prefixes.append("vision.")
    if config.llm_path:
        prefixes.append("llm.")
    return tuple(prefixes)


def _is_saved(key: str, skipped: tuple[str, ...]) -> bool:
    return "lora_" in key or not key.startswith(skipped) if skipped else True


def save_codec(model, directory: str | Path) -> Path:
    """Write ``config.json``, ``model.safetensors`` and the tokenizer files into ``directory``.

    Files are written under temporary names and renamed, so an interrupted save leaves the
    previous checkpoint intact.
    """
    from safetensors.torch import save_file

    if getattr(model, "lora_merged", False):
        # Its base weights already hold the adapters, which the state dict also carries.
        raise CheckpointError("cannot save a codec whose LoRA adapters are merged (an inference-only copy)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    skipped = _pretrained_prefixes(model.config)
    state = {}
    seen = {}
    for key, tensor in model.state_dict().items():
        if not _is_saved(key, skipped):
            continue
        # Tied weights (Gemma's lm_head = embedding) are stored once.
        pointer = (tensor.data_ptr(), tuple(tensor.shape))
        if pointer in seen:
            continue
        seen[pointer] = key
        state[key] = tensor.detach().contiguous().cpu()
    tmp_weights = directory / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp_weights), metadata={"format_version": str(FORMAT_VERSION)})
    tmp_config = directory / (CONFIG_FILE + ".tmp")
    payload = {"format_version": FORMAT_VERSION, "codec": model.config.to_dict()}
    tmp_config.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if model.tokenizer is not None and not model.config.llm_path:
        # A pretrained LLM's tokenizer is part of its folder (and its licence): read from there on load.
        model.tokenizer.save_pretrained(str(directory))
    tmp_weights.replace(directory / WEIGHTS_FILE)
    tmp_config.replace(directory / CONFIG_FILE)
    return directory


def read_codec_config(directory: str | Path) -> CodecConfig:
    """The :class:`CodecConfig` stored in a checkpoint folder."""
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise CheckpointError(not_a_folder(directory, "checkpoint folder"))
    if not path.is_file():
        raise CheckpointError(f"checkpoint has no {CONFIG_FILE}: {path}")
    try:
        payload = json.loads(path.read_text())
        if payload.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: format_version {payload.get('format_version')!r}, expected {FORMAT_VERSION}")
        if "codec" not in payload and isinstance(payload.get("model"), str):
            raise CheckpointError(f"{directory} holds a {payload['model']} baseline, not an M4SC codec; compare "
                                  f"baselines in a scenario (systems: [m4sc, {payload['model']}])")
        return CodecConfig.from_dict(payload["codec"])
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"corrupt {path}: {err}") from None


def load_codec(directory: str | Path, device: str = "cpu", inference: bool = False):
    """Build an :class:`~simulator.models.mllm.M4SCModel` from a checkpoint folder (eval mode).

    ``inference=True``: for simulation only, with the LoRA adapters merged into the base weights
    (:meth:`~simulator.models.mllm.M4SCModel.merge_lora`); such a model cannot be trained or saved.
    """
    from simulator.models.mllm import M4SCModel

    directory = Path(directory)
    config = read_codec_config(directory)
    if not (directory / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"checkpoint has no {WEIGHTS_FILE}: {directory / WEIGHTS_FILE}")
    try:
        tokenizer = load_tokenizer(resolve_llm_path(config.llm_path) if config.llm_path else directory)
        model = M4SCModel(config, tokenizer).to(device)
    except PretrainedModelError as err:
        raise CheckpointError(f"{directory}: {err}") from None
    load_weights(model, directory, device)
    if inference:
        model.merge_lora()
    return model.eval()


def load_tokenizer(directory: Path, error: type[Exception] = CheckpointError):
    """The tokenizer saved in a checkpoint (or pretrained LLM) folder, local files only, padding on the
    left (batched generation needs it); ``error`` with the reason if unreadable."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as err:
        raise error(f"cannot load the tokenizer in {directory}: {err}") from None
    tokenizer.padding_side = "left"
    return tokenizer


def load_weights(model, directory: str | Path, device: str = "cpu") -> None:
    """Load ``directory/model.safetensors`` into an already built model of the same config."""
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint has no {WEIGHTS_FILE}: {weights}")
    state = read_weights(weights, device)
    skipped = _pretrained_prefixes(model.config)
    check_weights(state, model.state_dict(), weights,
                  required=lambda k: _is_saved(k, skipped) and not _is_tied(model, k))
    model.load_state_dict(state, strict=False)


def read_weights(weights: Path, device: str = "cpu", error: type[Exception] = CheckpointError) -> dict:
    """The tensors of a safetensors file; ``error`` (one line) when it is corrupt or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as err:
        raise error(f"corrupt weights file {weights}: {err}") from None


def check_weights(state: dict, expected: dict, weights: Path, required=None,
                  error: type[Exception] = CheckpointError) -> None:
    """Raise ``error`` naming the first missing, unexpected or wrongly shaped tensor.

    ``required(key)`` tells which keys of ``expected`` must be in ``state`` (default: all).
    """
    missing = [k for k in expected if k not in state and (required is None or required(k))]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    details = []
    if missing:
        details.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if mismatched:
        k = mismatched[0]
        details.append(f"{len(mismatched)} with wrong shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
    raise error(f"weights in {weights} do not match config.json: " + "; ".join(details))


def _is_tied(model, key: str) -> bool:
    """True for the output embedding when the LLM ties it to the input embedding."""
    tied = getattr(model.base_llm.config, "tie_word_embeddings", False)
    return tied and key.endswith("lm_head.weight")
