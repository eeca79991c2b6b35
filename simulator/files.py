"""Crash-safe files: atomic file writes and folder swaps (results, sweeps, rate tables, checkpoints) and the
training CSV log (shared by the codec and baseline trainers)."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from simulator.errors import UserError

__all__ = ["atomic_write_bytes", "atomic_write_yaml", "create_folder", "replace_dir", "write_dir_atomically", "append_csv_row", "drop_csv_rows"]


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a synced temporary file and ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)



def atomic_write_yaml(path: Path, data) -> None:
    """``data`` as block YAML (keys in their order) written atomically (:func:`atomic_write_bytes`)."""
    import yaml

    atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8"))


def create_folder(path: Path, option: str = "--out") -> None:
    """``mkdir -p path``; UserError naming the command-line ``option`` when the system refuses."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{option}: cannot create {path}: {err.strerror}") from None


def replace_dir(tmp: Path, target: Path) -> None:
    """Swap the complete folder ``tmp`` into ``target``; a kill at any point leaves one complete folder."""
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        shutil.rmtree(old)


def write_dir_atomically(write: Callable[[Path], object], target: Path) -> None:
    """Let ``write(folder)`` fill ``<target>.tmp`` (cleared first), then swap it into ``target``."""
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write(tmp)
    replace_dir(tmp, target)


def append_csv_row(path: Path, row: dict, columns: Sequence[str]) -> None:
    """Append one row (header first when the file is new) and flush it to disk."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        if new:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()
        os.fsync(handle.fileno())


def drop_csv_rows(path: Path, columns: Sequence[str], drop: Callable[[dict], bool]) -> None:
    """Rewrite ``path`` atomically without the rows for which ``drop(row)`` is true (e.g. steps redone after a resume)."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if not drop(row)]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
