"""PyTorch datasets for the CLEVR v1.0 layout (generated or real), IMDB ``aclImdb`` and the
prepared sentiment corpus. Every item is a dict with a ``task`` key ("vqa", "caption",
"classify") so the instruction collator can mix tasks in one batch.

Images are returned as ``[3, H, W]`` float32 in [0, 1] (``image_size`` resizes to a square).
A missing directory or file, or a JSON file without an expected field, raises
:class:`simulator.errors.UserError` naming the path and the field.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from simulator.errors import UserError

__all__ = [
    "load_image",
    "read_clevr_json",
    "ClevrVQADataset",
    "ClevrCaptionDataset",
    "AclImdbDataset",
    "SentimentCorpusDataset",
]

logger = logging.getLogger(__name__)

_QUESTION_FIELDS = ("image_index", "image_filename", "question")
_SCENE_FIELDS = ("image_index", "image_filename", "objects")
_CAPTION_FIELDS = ("image_index", "image_filename", "captions")


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{what} not found: {path}")
    return path


def read_clevr_json(path: Path, list_key: str, fields: tuple[str, ...]) -> list[dict]:
    """Entries of ``path[list_key]``, each checked for ``fields``."""
    if not path.is_file():
        raise UserError(f"missing file: {path}")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(payload, dict) or not isinstance(payload.get(list_key), list):
        raise UserError(f"{path}: missing field '{list_key}' (a list)")
    for position, entry in enumerate(payload[list_key]):
        missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
        if missing:
            raise UserError(f"{path}: {list_key}[{position}] lacks field '{missing[0]}'")
    return payload[list_key]


def load_image(path: Path, image_size: int | None = None) -> torch.Tensor:
    """RGB image as ``[3, H, W]`` float32 in [0, 1]; resized to ``image_size``^2 when given."""
    if not path.is_file():
        raise UserError(f"missing image: {path}")
    with Image.open(path) as img:
        img = img.convert("RGB")
        if image_size is not None and img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.BILINEAR)
        array = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class _ClevrSplit(Dataset):
    """One split's images and the records of one annotation file (``folder/CLEVR_<split>_<name>.json``,
    list ``name``); an item is :meth:`_item` of a record, with its image loaded."""

    def __init__(self, root: str | Path, split: str, image_size: int | None, name: str, fields) -> None:
        self.root = _require_dir(Path(root), "CLEVR directory")
        self.split = split
        self.image_dir = _require_dir(self.root / "images" / split, "CLEVR image directory")
        self.image_size = image_size
        self.path = self.root / name / f"CLEVR_{split}_{name}.json"
        self.records = read_clevr_json(self.path, name, fields)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        item = self._item(self.records[index])
        image = load_image(self.image_dir / item["image_filename"], self.image_size)
        return {"task": item["task"], "image": image, **item}

    def _item(self, record: dict) -> dict:
        raise NotImplementedError


class ClevrVQADataset(_ClevrSplit):
    """Questions of one split of a CLEVR-layout directory.

    Item: ``image`` [3, H, W] float32, ``question`` str, ``answer`` str or None (real CLEVR test
    has no answers), ``question_family_index`` int or None, ``image_index``, ``image_filename``,
    ``program`` (list or None), ``task`` = "vqa".
    """

    def __init__(self, root: str | Path, split: str = "train", image_size: int | None = None) -> None:
        super().__init__(root, split, image_size, "questions", _QUESTION_FIELDS)
        self.questions = self.records
        logger.info("CLEVR %s: %d questions from %s", split, len(self.questions), self.path)

    def _item(self, q: dict) -> dict:
        return {"task": "vqa", "question": q["question"], "answer": q.get("answer"),
                "question_family_index": q.get("question_family_index"), "image_index": q["image_index"],
                "image_filename": q["image_filename"], "program": q.get("program")}


class ClevrCaptionDataset(_ClevrSplit):
    """Images of one split with their reference captions (``captions/CLEVR_<split>_captions.json``,
    a project extension of the CLEVR layout). Item: ``image``, ``captions`` list[str],
    ``caption`` (the first reference, the training target), ``image_index``, ``image_filename``,
    ``task`` = "caption"."""

    def __init__(self, root: str | Path, split: str = "train", image_size: int | None = None) -> None:
        super().__init__(root, split, image_size, "captions", _CAPTION_FIELDS)
        self.entries = self.records
        for position, entry in enumerate(self.entries):
            if not entry["captions"] or not all(isinstance(c, str) for c in entry["captions"]):
                raise UserError(f"{self.path}: captions[{position}] field 'captions' must be a non-empty list of strings")

    def _item(self, entry: dict) -> dict:
        return {"task": "caption", "captions": list(entry["captions"]), "caption": entry["captions"][0],
                "image_index": entry["image_index"], "image_filename": entry["image_filename"]}


_IMDB_FILE = re.compile(r"^(\d+)_(\d+)\.txt$")
LABELS = ("negative", "positive")


class AclImdbDataset(Dataset):
    """IMDB large movie review data set in its ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``
    layout. ``root`` is the ``aclImdb`` directory or its parent. Item: ``text`` (``<br />``
    turned into newlines), ``label`` "positive"/"negative", ``rating`` int, ``task`` = "classify".
    Files are read in sorted order (neg first), so indices are stable."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = Path(root)
        if (root / "aclImdb").is_dir():
            root = root / "aclImdb"
        _require_dir(root, "aclImdb directory")
        if split not in ("train", "test"):
            raise UserError(f"aclImdb split must be 'train' or 'test', got {split!r}")
        self.samples: list[tuple[Path, str, int]] = []
        for folder, label in (("neg", "negative"), ("pos", "positive")):
            directory = _require_dir(root / split / folder, "aclImdb class directory")
            for path in sorted(directory.glob("*.txt")):
                match = _IMDB_FILE.match(path.name)
                if match is None:
                    raise UserError(f"unexpected aclImdb file name (want <id>_<rating>.txt): {path}")
                self.samples.append((path, label, int(match.group(2))))
        if not self.samples:
            raise UserError(f"no reviews under {root / split}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        path, label, rating = self.samples[index]
        text = path.read_text(encoding="utf-8", errors="replace").replace("<br />", "\n").strip()
        return {"task": "classify", "text": text, "label": label, "rating": rating}


class SentimentCorpusDataset(Dataset):
    """A corpus written by ``python -m simulator data text``: ``<root>/<subset>/<split>.jsonl`` with
    one ``{"text": ..., "label": ...}`` per line. Item: ``text``, ``label``, ``task`` = "classify"."""

    def __init__(self, root: str | Path, split: str = "train", subset: str = "sentences") -> None:
        path = _require_dir(Path(root), "sentiment corpus directory") / subset / f"{split}.jsonl"
        if not path.is_file():
            raise UserError(f"missing file: {path} (prepare it with: python -m simulator data text --out {root})")
        self.samples: list[dict] = []
        for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{line_number}: not valid JSON ({err.msg})") from err
            for field in ("text", "label"):
                if not isinstance(record.get(field), str):
                    raise UserError(f"{path}:{line_number}: missing field '{field}'")
            self.samples.append({"task": "classify", "text": record["text"], "label": record["label"]})

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return dict(self.samples[index])
