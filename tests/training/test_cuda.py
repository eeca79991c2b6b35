"""The GPU path: the same code on CUDA gives the CPU's numbers. Skipped where no GPU is present (CI);
run on a GPU machine with ``python -m pytest -q tests/training/test_cuda.py``."""

import pytest
import torch

from channels.conventions import snr_db_to_no
from channels.flat import AWGNChannel, RayleighBlockFadingChannel
from channels.randomness import user_generators

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("channel", [AWGNChannel(equalizer="mmse"), RayleighBlockFadingChannel(equalizer="mmse")])
def test_channel_draws_do_not_depend_on_the_symbols_device(channel):
    x = torch.polar(torch.ones(2, 3, 64), torch.rand(2, 3, 64, generator=torch.Generator().manual_seed(1)))
    no = snr_db_to_no(5.0)
    on_cpu = channel(x, no, user_generators(7, 3)).x_hat
    on_gpu = channel(x.cuda(), no, user_generators(7, 3)).x_hat
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-5, atol=1e-5)


def test_ofdm_channel_runs_on_a_gpu_machine():
    from channels.registry import make_channel

    channel = make_channel("tdl")  # Sionna would put its blocks on cuda:0; this package keeps them on the CPU
    x = torch.polar(torch.ones(1, 2, 256), torch.zeros(1, 2, 256))
    out = channel(x, snr_db_to_no(30.0), user_generators(0, 2))
    assert out.x_hat.shape == x.shape and torch.isfinite(out.x_hat).all()


def test_training_on_cuda_matches_cpu_first_step_and_runs_every_stage(tiny_data, tmp_path):
    from simulator.training.trainer import Trainer
    from tests.training.conftest import make_config

    losses = {}
    for device in ("cpu", "cuda"):
        config = make_config(tiny_data, tmp_path / device, steps=2).model_copy(update={"device": device})
        final = Trainer(config).run("all")
        rows = (tmp_path / device / "train_log.csv").read_text().splitlines()
        header = rows[0].split(",")
        losses[device] = [float(r.split(",")[header.index("loss")]) for r in rows[1:]]
        assert (final / "config.json").is_file()
    # bf16 autocast on the GPU: the first step's loss (same weights, same batch) agrees to ~1%.
    assert losses["cuda"][0] == pytest.approx(losses["cpu"][0], rel=0.02)
    assert len(losses["cuda"]) == len(losses["cpu"])


def test_transmitter_on_cuda_sends_the_cpu_tokens():
    from simulator.evaluation import default_checkpoint, load_eval_samples
    from simulator.data.templates import render_prompt
    from simulator.models.checkpoint import load_codec
    from simulator.models.transceiver import Transmitter

    samples = load_eval_samples("vqa", 16)
    sent, texts = {}, {}
    for device in ("cpu", "cuda"):
        model = load_codec(default_checkpoint(), device=device)
        prompts = [render_prompt("vqa", s.input_text, "", model.config.instructions.get("vqa")) for s in samples]
        images = torch.stack([s.image for s in samples]) * 2 - 1
        sent[device] = Transmitter(model)(prompts, images)
        texts[device] = model.decode_text(sent[device].tokens, sent[device].token_mask)
    same = sum(a == b for a, b in zip(texts["cpu"], texts["cuda"]))
    assert same >= 15  # fp32 on both; kernel order may flip a rare near-tie
    torch.testing.assert_close(sent["cuda"].symbols.cpu()[:, :1], sent["cpu"].symbols[:, :1], rtol=1e-2, atol=1e-2)


def test_eval_and_run_commands_on_cuda(run_cli, tmp_path):
    import json

    result = run_cli("eval", "--task", "vqa", "--num-samples", "64", "--snr-db", "inf", "0", "--device", "cuda", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert 0.2 < rows[0]["accuracy_noiseless"] <= 1 and rows[1]["accuracy"] <= rows[0]["accuracy"] + 0.05
    result = run_cli("run", "scenarios/vqa_8users.yaml", "--out", str(tmp_path / "run"), "--set", "model.device=cuda",
                     "--set", "snr_db=[0,20]", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {row["system"] for row in summary} == {"m4sc", "deepsc_vqa", "digital_source", "digital_answer"}
