"""Loader round trips on fixtures in the real CLEVR v1.0 and aclImdb layouts, and bad layouts."""

from __future__ import annotations

import json

import pytest
import torch

from simulator.data.loaders import AclImdbDataset, ClevrCaptionDataset, ClevrVQADataset, SentimentCorpusDataset
from simulator.errors import UserError

from .conftest import write_aclimdb_fixture, write_real_clevr_fixture


def test_generated_clevr_round_trip(generated_clevr):
    questions = json.loads((generated_clevr / "questions/CLEVR_val_questions.json").read_text())["questions"]
    dataset = ClevrVQADataset(generated_clevr, "val")
    assert len(dataset) == len(questions)
    item = dataset[3]
    assert item["task"] == "vqa" and item["question"] == questions[3]["question"] and item["answer"] == questions[3]["answer"]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    captions = ClevrCaptionDataset(generated_clevr, "val")
    assert len(captions) == 2 and captions[1]["caption"] == captions[1]["captions"][0]


def test_real_clevr_layout_round_trip(tmp_path):
    root = write_real_clevr_fixture(tmp_path / "CLEVR_v1.0")
    dataset = ClevrVQADataset(root, "val", image_size=64)
    assert len(dataset) == 2
    item = dataset[1]
    assert item["image"].shape == (3, 64, 64)
    assert item["answer"] == "1" and item["question_family_index"] == 40
    assert ClevrVQADataset(root, "val")[0]["image"].shape == (3, 320, 480)


def test_real_clevr_test_split_without_answers(tmp_path):
    root = write_real_clevr_fixture(tmp_path / "CLEVR_v1.0", split="test", with_answers=False)
    item = ClevrVQADataset(root, "test")[0]
    assert item["answer"] is None and item["program"] is None


def test_clevr_missing_and_malformed(tmp_path):
    with pytest.raises(UserError, match="images"):
        ClevrVQADataset(tmp_path, "val")
    root = write_real_clevr_fixture(tmp_path / "c")
    with pytest.raises(UserError, match="CLEVR_val_captions.json"):
        ClevrCaptionDataset(root, "val")
    path = root / "questions/CLEVR_val_questions.json"
    payload = json.loads(path.read_text())
    del payload["questions"][1]["image_filename"]
    path.write_text(json.dumps(payload))
    with pytest.raises(UserError, match=r"questions\[1\] lacks field 'image_filename'"):
        ClevrVQADataset(root, "val")
    path.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        ClevrVQADataset(root, "val")


def test_missing_image_names_the_file(tmp_path):
    root = write_real_clevr_fixture(tmp_path / "c")
    (root / "images/val/CLEVR_val_000001.png").unlink()
    with pytest.raises(UserError, match="CLEVR_val_000001.png"):
        ClevrVQADataset(root, "val")[1]


def test_aclimdb_round_trip(tmp_path):
    base = write_aclimdb_fixture(tmp_path)
    for root in (base, tmp_path):  # the aclImdb folder itself or its parent
        dataset = AclImdbDataset(root, "train")
        assert len(dataset) == 4
        assert [dataset[i]["label"] for i in range(4)] == ["negative", "negative", "positive", "positive"]
        assert dataset[2] == {"task": "classify", "text": "train pos review 0.\n\nSecond line.", "label": "positive", "rating": 8}


def test_aclimdb_missing_class_folder(tmp_path):
    base = write_aclimdb_fixture(tmp_path)
    for f in (base / "test/neg").iterdir():
        f.unlink()
    (base / "test/neg").rmdir()
    with pytest.raises(UserError, match=r"test/neg"):
        AclImdbDataset(base, "test")


def test_sentiment_corpus_round_trip(tmp_path):
    (tmp_path / "sentences").mkdir()
    (tmp_path / "sentences/val.jsonl").write_text('{"text": "fine film", "label": "positive"}\n\n{"text": "dull", "label": "negative"}\n')
    dataset = SentimentCorpusDataset(tmp_path, "val")
    assert [s["label"] for s in dataset] == ["positive", "negative"]
    with pytest.raises(UserError, match="train.jsonl"):
        SentimentCorpusDataset(tmp_path, "train")
    (tmp_path / "sentences/test.jsonl").write_text('{"text": "no label"}\n')
    with pytest.raises(UserError, match="test.jsonl:1: missing field 'label'"):
        SentimentCorpusDataset(tmp_path, "test")
