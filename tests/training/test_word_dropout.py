"""Word dropout of classification texts in training: its rate, that it touches nothing else (not even
the random stream when off), that the trainer applies the stage's setting, and its one-line errors."""

import pytest
import torch
from pydantic import ValidationError

from simulator.training.config import DataConfig
from simulator.training.data import load_task_data
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config


@pytest.fixture
def train_data(tiny_data):
    return load_task_data(DataConfig(clevr_dir=str(tiny_data / "clevr"), text_dir=str(tiny_data / "text")), "train")


def test_words_are_replaced_at_the_rate_and_the_label_and_length_are_kept(train_data):
    generator = torch.Generator().manual_seed(0)
    originals = {text: label for text, label in train_data.classify}
    dropped = words = 0
    for _ in range(2000):
        example = train_data.sample("classify", generator, word_dropout=0.3, unk="<unk>")
        tokens = example["input_text"].split()
        matches = [text for text in originals
                   if len(text.split()) == len(tokens)
                   and all(t == "<unk>" or t == w for t, w in zip(tokens, text.split()))]
        assert matches and example["output"] in {originals[text] for text in matches}
        dropped += tokens.count("<unk>")
        words += len(tokens)
    assert dropped / words == pytest.approx(0.3, abs=0.02)  # 8000 words: binomial sd 0.005


def test_zero_dropout_draws_nothing_and_other_tasks_are_untouched(train_data):
    plain, with_zero = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for task in ["classify", "vqa", "caption", "classify"]:
        a, b = train_data.sample(task, plain), train_data.sample(task, with_zero, word_dropout=0.0)
        assert a["input_text"] == b["input_text"] and a["output"] == b["output"]
    assert torch.equal(plain.get_state(), with_zero.get_state())
    for task in ["vqa", "caption"]:
        a = train_data.sample(task, torch.Generator().manual_seed(9))
        b = train_data.sample(task, torch.Generator().manual_seed(9), word_dropout=0.9)
        assert a["input_text"] == b["input_text"] and a["output"] == b["output"]


@pytest.mark.parametrize("stage", ["lm", "instruct"])
def test_the_trainer_applies_the_stages_dropout_to_classification_texts_only(tiny_data, tmp_path, stage):
    trainer = Trainer(make_config(tiny_data, tmp_path, steps=1, **{stage: {"word_dropout": 0.9, "batch_size": 48}}))
    trainer.prepare()
    drawn = []
    real_sample = trainer.train_data.sample
    trainer.train_data.sample = lambda *args, **kwargs: drawn.append(real_sample(*args, **kwargs)) or drawn[-1]
    trainer.run_stage(stage, trainer.fresh_model(), resume=False)
    words = {task: [w for e in drawn if e["task"] == task for w in (e["input_text"] or "").split()]
             for task in ("classify", "vqa", "caption")}
    assert len(drawn) == 48 and words["classify"] and words["vqa"]
    assert words["classify"].count("<unk>") / len(words["classify"]) > 0.7
    assert "<unk>" not in words["vqa"] + words["caption"]


@pytest.mark.parametrize("stage, value, message", [
    ("vision", 0.1, "reads no classification texts"),
    ("align", 0.1, "reads no classification texts"),
    ("instruct", 1.0, "less than 1"),
    ("lm", -0.1, "greater than or equal to 0"),
])
def test_bad_word_dropout_is_refused(tiny_data, tmp_path, stage, value, message):
    with pytest.raises(ValidationError, match=message):
        make_config(tiny_data, tmp_path, **{stage: {"word_dropout": value}})
