"""The data preset travels: the training config's image size, the preset check of a data folder,
the eval set's folder and statistics, and the run manifest."""

from __future__ import annotations

import json

import pytest

from simulator.data.clevr_generator import GeneratorConfig, data_preset, generate_clevr
from simulator.errors import UserError


def test_training_image_size_comes_from_the_preset_unless_set():
    from simulator.training.config import DataConfig

    assert DataConfig(preset="clevr_small").image_size == 96
    assert DataConfig(preset="clevr").image_size == 64
    assert DataConfig(preset="clevr_small", image_size=64).image_size == 64


def test_a_folder_of_another_preset_is_refused_before_training(tmp_path):
    from simulator.training.config import DataConfig
    from simulator.training.data import ensure_data

    generate_clevr(tmp_path, GeneratorConfig.from_preset("clevr", 6, seed=1))
    assert data_preset(tmp_path) == "clevr"
    with pytest.raises(UserError, match="holds preset 'clevr' data, the recipe asks for 'clevr_small'"):
        ensure_data(DataConfig(clevr_dir=str(tmp_path), preset="clevr_small", text_dir=None))
    ensure_data(DataConfig(clevr_dir=str(tmp_path), preset="clevr", text_dir=None))  # the right preset passes


def test_folders_not_made_here_have_no_preset(tmp_path):
    assert data_preset(tmp_path) is None
    (tmp_path / "stats.json").write_text(json.dumps({"generator": "someone else", "preset": "clevr_small"}))
    assert data_preset(tmp_path) is None


def test_eval_sets_of_each_preset_live_apart_and_have_its_statistics(tmp_path, monkeypatch):
    from simulator.assets import default_eval_clevr_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    small = default_eval_clevr_dir(num_images=4, preset="clevr_small")
    full = default_eval_clevr_dir(num_images=4, preset="clevr")
    assert small.name == "clevr-eval-clevr_small-12345-4" and full.name == "clevr-eval-12345-4"
    assert data_preset(small) == "clevr_small" and data_preset(full) == "clevr"
    scenes = json.loads((small / "scenes" / "CLEVR_test_scenes.json").read_text())["scenes"]
    assert all(3 <= len(scene["objects"]) <= 5 for scene in scenes)


def test_validation_and_test_sets_come_from_their_own_seeds_and_share_no_scene(tmp_path, monkeypatch):
    from simulator.assets import EVAL_DATA_SEED, VALIDATION_DATA_SEED, default_eval_clevr_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    val = default_eval_clevr_dir(num_images=4, preset="clevr_small", split="val")
    test = default_eval_clevr_dir(num_images=4, preset="clevr_small", split="test")
    assert val.name == f"clevr-eval-clevr_small-{VALIDATION_DATA_SEED}-4" and VALIDATION_DATA_SEED not in (0, EVAL_DATA_SEED)
    assert test.name == f"clevr-eval-clevr_small-{EVAL_DATA_SEED}-4"

    def scenes(root):
        return [json.dumps(scene["objects"], sort_keys=True)
                for scene in json.loads((root / "scenes" / "CLEVR_test_scenes.json").read_text())["scenes"]]

    assert not set(scenes(val)) & set(scenes(test))
    with pytest.raises(ValueError, match="split must be one of val, test"):
        default_eval_clevr_dir(num_images=4, split="train")
