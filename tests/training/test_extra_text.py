"""Extra labelled documents for classification: cut into sentences that keep their document's label,
training split only, drawn with the configured share."""

import json

import pytest
import torch

from simulator.errors import UserError
from simulator.training.config import DataConfig
from simulator.training.data import load_task_data, split_sentences


def test_split_sentences_keeps_the_marks_and_drops_fragments():
    text = "a fine , moving film . it works ! why ? the cast is superb and the score soars ."
    assert split_sentences(text) == ["a fine , moving film .", "the cast is superb and the score soars ."]
    assert split_sentences(text, min_words=1) == ["a fine , moving film .", "it works !", "why ?",
                                                  "the cast is superb and the score soars ."]


@pytest.fixture
def text_with_reviews(tiny_data, tmp_path):
    root = tmp_path / "text"
    for subset in ("sentences",):
        (root / subset).mkdir(parents=True)
        for split in ("train", "val", "test"):
            (root / subset / f"{split}.jsonl").write_text((tiny_data / "text" / subset / f"{split}.jsonl").read_text())
    reviews = {
        "train": [("the acting is wooden throughout . the plot drags on and on .", "negative"),
                  ("a joy from start to end . i loved every minute of it .", "positive")],
        "test": [("never seen in training , this review must stay out .", "positive")],
        "val": [("nor this one , which is for validation only .", "negative")],
    }
    (root / "reviews").mkdir()
    for split, rows in reviews.items():
        (root / "reviews" / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows))
    return root


def test_extra_sentences_carry_their_documents_label_and_come_from_train_only(tiny_data, text_with_reviews):
    config = DataConfig(clevr_dir=str(tiny_data / "clevr"), text_dir=str(text_with_reviews),
                        extra_text_subsets=["reviews"], extra_text_share=0.25)
    train = load_task_data(config, "train")
    assert sorted(train.classify_extra) == sorted([
        ("the acting is wooden throughout .", "negative"), ("the plot drags on and on .", "negative"),
        ("a joy from start to end .", "positive"), ("i loved every minute of it .", "positive")])
    assert load_task_data(config, "test").classify_extra is None  # evaluation never sees them
    generator = torch.Generator().manual_seed(0)
    extra = {text for text, _ in train.classify_extra}
    draws = [train.sample("classify", generator)["input_text"] in extra for _ in range(4000)]
    assert sum(draws) / len(draws) == pytest.approx(0.25, abs=0.03)  # binomial sd 0.007


def test_missing_extra_subset_is_one_line(tiny_data):
    config = DataConfig(clevr_dir=str(tiny_data / "clevr"), text_dir=str(tiny_data / "text"),
                        extra_text_subsets=["reviews"])
    with pytest.raises(UserError, match="reviews"):
        load_task_data(config, "train")
