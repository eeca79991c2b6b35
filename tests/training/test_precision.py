"""bf16 on the CPU: a recipe's ``precision: bf16`` runs under CPU autocast where the CPU multiplies
bf16, with frozen weights stored in bf16 once; elsewhere fp32 with one logged line."""

import csv
import logging

import pytest
import torch

from simulator.training import precision
from simulator.training.config import TrainConfig
from simulator.training.trainer import Trainer
from tests.training.conftest import killed_then_resumed, make_config

needs_bf16 = pytest.mark.skipif(not precision.cpu_supports_bf16(), reason="this CPU has no AVX-512 BF16 or AMX")


def _config(tiny_data, out_dir, mode, steps=1, checkpoint_every=100):
    data = make_config(tiny_data, out_dir, steps=steps, checkpoint_every=checkpoint_every).model_dump()
    data["precision"] = mode
    return TrainConfig.model_validate(data)


def _losses(out_dir, stage):
    return [float(row["loss"]) for row in csv.DictReader((out_dir / "train_log.csv").open()) if row["stage"] == stage]


@needs_bf16
@pytest.mark.parametrize("stage", ["align", "instruct"])
def test_one_bf16_step_matches_fp32_within_bf16_rounding(tiny_data, tmp_path, stage):
    """bf16 keeps 8 significant bits (relative rounding 2^-9 per operand): over a two-layer LLM
    and a KAN projector the step's loss stays within 2% of fp32's, and not equal to it (so the
    autocast really ran)."""
    losses = {}
    for mode in ("fp32", "bf16"):
        trainer = Trainer(_config(tiny_data, tmp_path / mode, mode))
        trainer.prepare()
        trainer.run_stage(stage, trainer.fresh_model(), resume=False)
        losses[mode] = _losses(tmp_path / mode, stage)[0]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)
    assert losses["bf16"] != losses["fp32"]


@needs_bf16
def test_bf16_runs_repeat_exactly_and_checkpoints_keep_fp32_weights(tiny_data, tmp_path):
    from safetensors.torch import load_file

    runs = []
    for name in ("a", "b"):
        trainer = Trainer(_config(tiny_data, tmp_path / name, "bf16", steps=3, checkpoint_every=2))
        trainer.prepare()
        model, final = trainer.run_stage("instruct", trainer.fresh_model(), resume=False)
        runs.append((_losses(tmp_path / name, "instruct"), model.state_dict()))
        saved = load_file(str(final / "model.safetensors"))
        assert {tensor.dtype for tensor in saved.values()} == {torch.float32}
        assert model.head_cast is None
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][key]), key


def test_a_cpu_without_bf16_runs_fp32_and_says_so_in_one_line(caplog):
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="simulator.training.precision"):
        assert precision.autocast_dtype("bf16", cpu, cpu_bf16=False) is None
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 and "runs in fp32" in lines[0] and "\n" not in lines[0]
    caplog.clear()
    assert precision.autocast_dtype("bf16", cpu, cpu_bf16=True) is torch.bfloat16
    assert precision.autocast_dtype("fp32", cpu, cpu_bf16=True) is None and not caplog.records


def test_frozen_weights_are_bf16_inside_and_their_fp32_values_come_back(tiny_data, tmp_path):
    from simulator.training.stages import set_trainable

    trainer = Trainer(_config(tiny_data, tmp_path, "bf16"))
    trainer.prepare()
    model = trainer.fresh_model()
    set_trainable(model, ["projector", "lora"])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    frozen_linear = dict(model.named_parameters())["llm.base_model.model.model.layers.0.mlp.up_proj.base_layer.weight"]
    embedding = model.base_llm.get_input_embeddings().weight
    with precision.FrozenInBF16(model, torch.bfloat16) as frozen:
        assert frozen_linear.dtype is torch.bfloat16
        assert embedding.dtype is torch.float32  # embedding tables stay fp32
        assert all(p.dtype is torch.float32 for p in model.parameters() if p.requires_grad)
        assert model.head_cast is not None and model.head_cast.dtype is torch.bfloat16
        with frozen.fp32():
            assert frozen_linear.dtype is torch.float32
        assert frozen_linear.dtype is torch.bfloat16
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    assert model.head_cast is None


@needs_bf16
def test_a_bf16_stage_resumed_after_a_kill_equals_an_uninterrupted_one(tiny_data, tmp_path, monkeypatch):
    """A long CPU recipe runs in chunks (``--resume``): under bf16 too, the result is the uninterrupted run's."""
    straight = Trainer(_config(tiny_data, tmp_path / "a", "bf16", steps=4, checkpoint_every=2))
    straight.prepare()
    reference, _ = straight.run_stage("instruct", straight.fresh_model(), resume=False)

    interrupted = Trainer(_config(tiny_data, tmp_path / "b", "bf16", steps=4, checkpoint_every=2))
    interrupted.prepare()
    resumed, _ = killed_then_resumed(interrupted, "instruct", monkeypatch)
    assert _losses(tmp_path / "b", "instruct") == _losses(tmp_path / "a", "instruct")
    expected = reference.state_dict()
    for name, value in resumed.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_the_training_benchmark_times_each_stage_in_both_precisions(tiny_data, tmp_path):
    from simulator.benchmark import measure_training

    data = make_config(tiny_data, tmp_path / "recipe").model_dump()
    data["stages"]["instruct"]["val_every"] = 1  # switched off in the benchmark
    report = measure_training(TrainConfig.model_validate(data), ["align", "instruct"], steps=2)
    assert set(report) == {"align", "instruct"}
    for row in report.values():
        assert row["fp32"]["s_per_sample"] > 0 and row["bf16"]["s_per_sample"] > 0
        assert row["fp32"]["s_per_step"] == pytest.approx(4 * row["fp32"]["s_per_sample"], rel=0.01, abs=1e-4)  # batch 4
        assert row["bf16_speedup"] == pytest.approx(row["fp32"]["s_per_sample"] / row["bf16"]["s_per_sample"], abs=0.006)
        assert row["fp32"]["runs_as"] == "fp32"
    assert not (tmp_path / "recipe").exists()  # runs in a temporary folder, never the recipe's


def test_bench_training_names_an_unknown_stage_in_one_line(tiny_data, tmp_path, run_cli):
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(make_config(tiny_data, tmp_path / "run").model_dump()))
    result = run_cli("bench", "--training", str(path), "--stages", "instruct,nope")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "'nope'" in result.stderr
