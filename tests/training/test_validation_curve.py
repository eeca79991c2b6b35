"""A stage's learning curve on validation data (``val_every``): rows at the right steps, from the
validation split only, the same after a resume as without one."""

import csv
import json

import pytest

import simulator.data.clevr_generator as clevr_generator
import simulator.evaluation as evaluation
from simulator.training.config import TrainConfig
from simulator.training.trainer import Trainer
from simulator.training.validation import VAL_LOG
from tests.training.conftest import killed_then_resumed, make_config


def _config(tiny_data, out_dir, **instruct):
    data = make_config(tiny_data, out_dir, steps=4, checkpoint_every=2).model_dump()
    data["stages"]["instruct"].update({"val_every": 2, "val_samples": 3, "val_tasks": ["vqa", "classify"], **instruct})
    return TrainConfig.model_validate(data)


def _rows(out_dir):
    return [{key: value for key, value in row.items() if key != "eval_s"}
            for row in csv.DictReader((out_dir / VAL_LOG).open())]


@pytest.fixture
def splits_read(monkeypatch):
    """The training folder counts as the user's own (its val split is read, not a generated set);
    records every split the curve reads."""
    monkeypatch.setattr(clevr_generator, "is_generated", lambda folder: False)
    read, original = [], evaluation.load_eval_samples

    def recording(task, num_samples, data_dir=None, split="test", *args, **kwargs):
        read.append(split)
        return original(task, num_samples, data_dir, split, *args, **kwargs)

    monkeypatch.setattr(evaluation, "load_eval_samples", recording)
    return read


def test_the_curve_scores_each_task_every_val_every_steps_on_validation_data(tiny_data, tmp_path, splits_read):
    trainer = Trainer(_config(tiny_data, tmp_path))
    trainer.prepare()
    trainer.run_stage("instruct", trainer.fresh_model(), resume=False)
    rows = _rows(tmp_path)
    assert [(r["step"], r["task"]) for r in rows] == [("2", "vqa"), ("2", "classify"), ("4", "vqa"), ("4", "classify")]
    assert [int(r["samples_seen"]) for r in rows] == [8, 8, 16, 16]  # batch 4
    assert all(0.0 <= float(r["bs_score"]) <= 1.0 and r["metric"] == "accuracy" for r in rows)
    assert {r["num_samples"] for r in rows if r["task"] == "classify"} == {"3"}
    assert splits_read and set(splits_read) == {"val"}
    from simulator.training.model_card import write_model_card

    final = tmp_path / "stage2_instruct" / "final"
    write_model_card(final, trainer.config, "python -m simulator train X", [], [], curve=rows)
    assert json.loads((final / "model_card.json").read_text())["validation_curve"] == rows
    card = (final / "MODEL_CARD.md").read_text()
    assert "## Learning curve (validation data, not test)" in card
    assert f"| instruct | 4 | 16 | classify | accuracy | {rows[-1]['bs_score']} |" in card


def test_a_resumed_stage_writes_the_curve_of_an_uninterrupted_one(tiny_data, tmp_path, splits_read, monkeypatch):
    straight = Trainer(_config(tiny_data, tmp_path / "a"))
    straight.prepare()
    straight.run_stage("instruct", straight.fresh_model(), resume=False)

    interrupted = Trainer(_config(tiny_data, tmp_path / "b"))
    interrupted.prepare()
    killed_then_resumed(interrupted, "instruct", monkeypatch)  # killed at step 4: after the score at step 2
    assert _rows(tmp_path / "b") == _rows(tmp_path / "a")
