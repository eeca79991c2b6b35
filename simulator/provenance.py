"""Where a number came from: the source commit, the library versions, the checkpoint's hash. Every
results folder (manifest) and every trained checkpoint (model card) records them from here."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

__all__ = ["git_commit", "code_versions", "checkpoint_hash", "process_record"]

_SOURCE_ROOT = Path(__file__).resolve().parents[1]
#: Distributions behind the numbers, as :func:`code_versions` reports them.
_PACKAGES = ("m4sc-simulator", "torch", "sionna-no-rt", "transformers", "peft", "torchao", "simpy", "numpy", "pandas",
             "pyarrow")


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, with ``-dirty`` when tracked files have
    changes; None outside a git checkout (an installed wheel)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_SOURCE_ROOT, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_SOURCE_ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


def code_versions() -> dict:
    """Versions of Python and the libraries behind the numbers (None: not installed)."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions


def checkpoint_hash(directory: str | Path) -> str:
    """SHA-256 over the checkpoint's ``config.json`` and ``model.safetensors`` (hex)."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        path = Path(directory) / name
        digest.update(name.encode())
        update_with_file(digest, path)
    return digest.hexdigest()


def update_with_file(digest, path: str | Path):
    """Feed the bytes of the file at ``path`` to ``digest`` (a ``hashlib`` object) in 1 MiB blocks;
    returns ``digest``."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest


def process_record() -> dict:
    """What a manifest records of the process writing it: commit, versions, platform, host and pid
    (a ``running`` manifest whose process is gone was killed: kill -9, power loss)."""
    return {"git_commit": git_commit(), "versions": code_versions(), "platform": platform.platform(),
            "host": platform.node(), "pid": os.getpid()}

