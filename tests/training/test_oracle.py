"""Oracle visual tokens: the pictures spell each object's attributes exactly, and stage 2 trains on them."""

import pytest
import torch

from simulator.evaluation import EvalSample, evaluate
from simulator.training.data import load_task_data, to_pixel_values
from simulator.training.oracle import OracleProjector, oracle_images, oracle_vqa_accuracy, use_oracle_tokens
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config


def test_oracle_pictures_decode_to_the_scene_labels(tiny_data):
    config = make_config(tiny_data, "unused")
    data = load_task_data(config.data, "train")
    patch = 16
    labels = data.patch_targets(patch)  # [N, P, 4], attribute + 1
    assert (labels[..., 0] > 0).any()
    codes = OracleProjector(8, patch).codes(to_pixel_values(oracle_images(data, patch)))
    assert torch.equal(codes[:, 0], labels[..., 0]) and torch.equal(codes[:, 1], labels[..., 1])
    assert torch.equal(codes[:, 2], labels[..., 2] * 3 + labels[..., 3])
    no_image = OracleProjector(8, patch)(torch.zeros(2, 3, 64, 64))  # rows without an image are zeros
    assert no_image.shape == (2, 16, 8) and torch.isfinite(no_image).all()


def test_stage_two_learns_the_oracle_tables(tiny_data, tmp_path):
    config = make_config(tiny_data, tmp_path, steps=3)
    trainer = Trainer(config)
    trainer.prepare()
    patch = int(config.codec_config().vision["patch_size"])
    trainer.train_data.images = oracle_images(trainer.train_data, patch)
    model = trainer.fresh_model()
    use_oracle_tokens(model)
    before = [table.weight.detach().clone() for table in model.projector.tables]
    twin, other = trainer.fresh_model(), trainer.fresh_model()
    use_oracle_tokens(twin)
    use_oracle_tokens(other, seed=1)
    assert all(torch.equal(a, t.weight) for a, t in zip(before, twin.projector.tables))  # a run is reproducible
    assert not torch.equal(before[0], other.projector.tables[0].weight)
    model, _ = trainer.run_stage("instruct", model, resume=False)
    assert all(not torch.equal(old, table.weight) for old, table in zip(before, model.projector.tables))
    pixels = to_pixel_values(trainer.train_data.images[:1])
    assert torch.equal(model.encode_images(pixels), model.projector(pixels))  # the vision encoder is bypassed
    test = load_task_data(config.data, "test")
    result = oracle_vqa_accuracy(model, test, num_questions=6, batch_size=4)
    assert result["num_samples"] == 6 and 0.0 <= result["accuracy_noiseless"] <= 1.0
    assert sum(f["num_samples"] for f in result["families"].values()) == 6
    pictures = oracle_images(test, patch).float() / 255
    everything = [EvalSample("vqa", q, [a], pictures[row]) for row, q, a, _ in test.vqa[:6]]
    one_pass = evaluate(model, everything, "awgn", [float("inf")])[0]["accuracy_noiseless"]
    assert result["accuracy_noiseless"] == pytest.approx(one_pass)  # the families together are every question once


def test_oracle_run_refuses_a_missing_start_and_a_used_folder(tmp_path):
    from pathlib import Path

    from simulator.errors import UserError
    from simulator.training.oracle import main

    recipe = str(Path(__file__).parents[2] / "scenarios" / "train_tiny.yaml")
    with pytest.raises(UserError, match="--num-samples"):
        main([recipe, str(tmp_path), "--num-samples", "0"])
    with pytest.raises(UserError, match="stage1_align"):
        main([recipe, str(tmp_path)])
    (tmp_path / "stage1_align" / "final").mkdir(parents=True)
    (tmp_path / "stage1_align" / "final" / "config.json").write_text("{}")
    (tmp_path / "stage2_instruct").mkdir()
    with pytest.raises(UserError, match="afresh"):
        main([recipe, str(tmp_path)])
