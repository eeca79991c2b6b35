"""Training: each stage changes exactly its parameter groups, resume is exact, loss goes down."""

import csv
import re

import pytest
import torch

from simulator.errors import UserError
from simulator.training.stages import _group_of
from simulator.training.loop import cosine_lr
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config

EXPECTED_GROUPS = {
    "lm": {"llm_base"},
    "align": {"projector"},
    "instruct": {"projector", "lora"},
    "joint": {"projector", "lora", "channel_codec"},
}


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("stage", ["vision", "lm", "align", "instruct", "joint"])
def test_stage_updates_exactly_its_parameters(tiny_data, tmp_path, stage):
    trainer = Trainer(make_config(tiny_data, tmp_path, steps=2))
    trainer.prepare()
    model = trainer.fresh_model()
    with torch.no_grad():  # LoRA B starts at zero; make LoRA A's gradient non-zero from step one
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.01)
    before = _snapshot(model)
    model, _ = trainer.run_stage(stage, model, resume=False)
    changed = {_group_of(name) for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    expected = {"vision"} if stage == "vision" else EXPECTED_GROUPS[stage]
    assert changed == expected


@pytest.mark.parametrize("stage, overrides", [
    ("instruct", {}),
    ("joint", {"trainable": ["channel_codec"], "pool_samples": 6, "pool_top_words": 3}),  # on a token pool
])
def test_resume_after_interruption_equals_uninterrupted_run(tiny_data, tmp_path, monkeypatch, stage, overrides):
    straight = Trainer(make_config(tiny_data, tmp_path / "a", steps=4, checkpoint_every=2, **{stage: overrides}))
    straight.prepare()
    reference, _ = straight.run_stage(stage, straight.fresh_model(), resume=False)

    interrupted = Trainer(make_config(tiny_data, tmp_path / "b", steps=4, checkpoint_every=2, **{stage: overrides}))
    interrupted.prepare()
    original_loss = Trainer._loss
    calls = {"n": 0}

    def dying_loss(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # step index 3, after the checkpoint at step 2
            raise KeyboardInterrupt
        return original_loss(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run_stage(stage, interrupted.fresh_model(), resume=False)
    monkeypatch.setattr(Trainer, "_loss", original_loss)
    checkpoint = interrupted.config.stage_dir(stage) / "checkpoint"
    assert checkpoint.is_dir()
    with pytest.raises(UserError, match="--resume"):
        interrupted.run_stage(stage, interrupted.fresh_model(), resume=False)
    resumed, final = interrupted.run_stage(stage, interrupted.fresh_model(), resume=True)
    assert not checkpoint.exists() and (final / "model.safetensors").is_file()
    log = list(csv.DictReader((tmp_path / "b" / "train_log.csv").open()))
    assert [int(r["step"]) for r in log] == [1, 2, 3, 4]  # nothing lost, nothing repeated
    reference_state = reference.state_dict()
    for name, value in resumed.state_dict().items():
        assert torch.allclose(value, reference_state[name], atol=1e-6, rtol=0), name


def test_loss_decreases_on_a_tiny_batch(tiny_data, tmp_path):
    config = make_config(tiny_data, tmp_path, steps=30, checkpoint_every=100, lm={"lr": 1e-2})
    trainer = Trainer(config)
    trainer.prepare()
    trainer.run_stage("lm", trainer.fresh_model(), resume=False)
    losses = [float(r["loss"]) for r in csv.DictReader((tmp_path / "train_log.csv").open())]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5


def test_whole_run_writes_final_and_skips_finished_stages(tiny_data, tmp_path):
    config = make_config(tiny_data, tmp_path, steps=1, checkpoint_every=100)
    final = Trainer(config).run("all")
    assert (final / "config.json").is_file() and (final / "tokenizer.json").is_file()
    steps_logged = len(list(csv.DictReader((tmp_path / "train_log.csv").open())))
    Trainer(config).run("all")  # every stage already final: nothing trains again
    assert len(list(csv.DictReader((tmp_path / "train_log.csv").open()))) == steps_logged


def test_cosine_schedule_warms_up_then_decays():
    from simulator.training.config import StageConfig

    stage = StageConfig(steps=100, batch_size=1, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    values = [cosine_lr(s, stage) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[-1] == pytest.approx(0.1, abs=0.01)


def test_later_stage_needs_the_earlier_result(tiny_data, tmp_path):
    with pytest.raises(UserError, match="run the earlier stages first"):
        Trainer(make_config(tiny_data, tmp_path)).run("3")


def test_stage_started_over_replaces_its_log_rows(tiny_data, tmp_path):
    """A stage trained again from step 0 in the same folder (its folder deleted, or a log copied
    from another run) logs its own steps only; other stages' rows stay."""
    import shutil

    from simulator.training.model_card import stage_summary

    for stage in ("vision", "lm", "align"):
        Trainer(make_config(tiny_data, tmp_path, steps=3, checkpoint_every=100)).run(stage)
    shutil.rmtree(tmp_path / "stage1_lm")
    Trainer(make_config(tiny_data, tmp_path, steps=2, checkpoint_every=100)).run("lm")
    log = list(csv.DictReader((tmp_path / "train_log.csv").open()))
    steps = {stage: [int(r["step"]) for r in log if r["stage"] == stage] for stage in ("vision", "lm", "align")}
    assert steps == {"vision": [1, 2, 3], "lm": [1, 2], "align": [1, 2, 3]}
    summary = {row["stage"]: row for row in stage_summary(tmp_path / "train_log.csv")}
    assert summary["lm"]["steps"] == 2
    assert summary["lm"]["time_s"] == round(float(log[-1]["elapsed_s"]), 1)  # not summed with the first run


def test_model_card_sums_wall_time_over_resumed_segments(tmp_path):
    from simulator.training.model_card import stage_summary

    log = tmp_path / "train_log.csv"
    log.write_text("stage,step,loss,lr,samples_per_s,elapsed_s\n"
                   "lm,1,4.0,0.1,10,5.0\nlm,2,3.0,0.1,10,10.0\n"   # killed after step 2
                   "lm,3,2.0,0.1,20,4.0\nlm,4,1.0,0.1,40,8.0\n"    # resumed: elapsed restarts
                   "joint,1,6.0,0.1,10,2.0\n")
    summary = {row["stage"]: row for row in stage_summary(log)}
    # s per sample: 1 / the median of 10, 10, 20, 40 samples/s
    assert summary["lm"] == {"stage": "lm", "steps": 4, "final_loss": 2.5, "time_s": 18.0, "s_per_sample": 0.0667}
    assert summary["joint"]["time_s"] == 2.0


@pytest.mark.parametrize("key, value", [("ignore_images", True), ("image_position", "after_prompt")])
def test_input_layout_switch_can_start_from_an_earlier_stage(tiny_data, tmp_path, key, value):
    """The question-only baseline, or the image after the prompt, from stage 1's result: saved
    with the new stage's codec, while the earlier stage keeps its own."""
    from simulator.models.checkpoint import read_codec_config

    for stage in ("vision", "lm", "align"):  # stages 0-1 with images
        Trainer(make_config(tiny_data, tmp_path, steps=1)).run(stage)
    config = make_config(tiny_data, tmp_path, steps=2)
    config = config.model_copy(update={"codec": {**config.codec, key: value}})
    final = Trainer(config).run("instruct")
    assert getattr(read_codec_config(final), key) == value
    assert getattr(read_codec_config(tmp_path / "stage1_align" / "final"), key) != value


@pytest.mark.parametrize("override, fragment", [
    ("codec.ignore_images=maybe", "ignore_images must be true or false"),
    ("codec.image_position=middle", "image_position must be one of before_prompt, after_prompt"),
    ("codec.channel_symbols_per_token=0", "channel_symbols_per_token must be >= 1"),
    ("codec.no_such_key=1", "unknown codec config key"),
])
def test_bad_codec_override_is_one_line_before_anything_is_written(run_cli, tmp_path, override, fragment):
    result = run_cli("train", "scenarios/train_tiny.yaml", "--out", str(tmp_path / "run"), "--set", override)
    assert result.returncode == 2 and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_joint_stage_with_rates_saves_a_nested_codec_and_trains_the_full_rate_too(tiny_data, tmp_path):
    from simulator.models.checkpoint import load_codec
    from simulator.training.stages import joint_loss

    config = make_config(tiny_data, tmp_path, steps=1, checkpoint_every=100, joint={"rates": [2, 4, 8]})
    final = Trainer(config).run("all")
    codec = load_codec(final)
    assert codec.config.rates == [2, 4, 8]

    trainer = Trainer(config)
    trainer.prepare()
    generator = torch.Generator().manual_seed(0)
    batch = trainer.collator(codec)([trainer.train_data.sample("vqa", generator) for _ in range(4)])
    with torch.no_grad():
        losses = {str(rates): float(joint_loss(codec, batch, "awgn", 5.0, torch.Generator().manual_seed(1),
                                               noise_free_weight=0.0, rates=rates))
                  for rates in (None, [8], [2, 4, 8])}
    # one rate is the single-rate loss; several add a second CE at a random k on top of the full rate's
    assert losses["[8]"] == losses["None"]
    assert losses["[2, 4, 8]"] > losses["None"] + 0.5


def test_joint_bs_target_is_the_token_the_bss_noise_free_head_picks(tiny_data, tmp_path):
    """channel_target 'bs': through a channel that delivers the BS's hidden states unchanged, the CE
    is against the noise-free head's own argmax, so it is at most the CE against the labels (token by
    token, -log p(argmax) <= -log p(label)); 'labels' then equals the noise-free CE."""
    import torch.nn.functional as F

    from simulator.training.stages import joint_loss, pixel_values_of, target_hidden_states

    trainer = Trainer(make_config(tiny_data, tmp_path, steps=1))
    trainer.prepare()
    codec = trainer.fresh_model()
    generator = torch.Generator().manual_seed(0)
    batch = trainer.collator(codec)([trainer.train_data.sample("vqa", generator) for _ in range(4)])
    c = codec.config.channel_symbols_per_token

    class Wire(torch.nn.Module):  # a channel codec that hands the LM head the BS's hidden state
        def __init__(self):
            super().__init__()
            self.linear, self.sent = torch.nn.Linear(1, 1), None

        def forward(self, x, rates=None):
            if x.is_complex():
                return self.sent
            self.sent = x
            return torch.ones(*x.shape[:-1], c, dtype=torch.complex64)

    with torch.no_grad():
        hidden, targets = target_hidden_states(codec, batch, *pixel_values_of(batch, "cpu"))
        logits = codec.logits(hidden).float()
        codec.channel_encoder = codec.channel_decoder = Wire()
        losses = {target: float(joint_loss(codec, batch, "awgn", 300.0, torch.Generator().manual_seed(1),
                                           noise_free_weight=0.0, channel_target=target))
                  for target in ("bs", "labels")}
    assert losses["bs"] == pytest.approx(float(F.cross_entropy(logits, logits.argmax(-1))), rel=1e-5)
    assert losses["labels"] == pytest.approx(float(F.cross_entropy(logits, targets)), rel=1e-5)
    assert losses["bs"] < losses["labels"] - 0.1


@pytest.mark.parametrize("rates, fragment", [([2, 4], "end at channel_symbols_per_token (8)"),
                                             ([4, 2, 8], "distinct, ascending")])
def test_joint_rates_must_be_ascending_and_end_at_c(tiny_data, tmp_path, rates, fragment):
    config = make_config(tiny_data, tmp_path, steps=1, checkpoint_every=100, joint={"rates": rates})
    with pytest.raises(UserError, match=re.escape(f"stages.joint.rates: channel_rates must be {fragment}")
                       if fragment.startswith("distinct") else re.escape(fragment)):
        Trainer(config).run("all")


def _with_rates_stage(config, **rates_stage):
    from simulator.training.config import TrainConfig

    data = config.model_dump()
    data["stages"]["rates"] = {"steps": 3, "batch_size": 4, "lr": 1e-2, **rates_stage}
    return TrainConfig.model_validate(data)


def test_rates_stage_trains_only_its_rate_codes_and_leaves_the_full_rate_codec_bit_identical(tiny_data, tmp_path):
    from simulator.models.checkpoint import load_codec

    config = _with_rates_stage(make_config(tiny_data, tmp_path, steps=1, checkpoint_every=100,
                                           joint={"rates": [4, 8]}), rates=[2, 4], short_codes=[1, 3])
    final = Trainer(config).run("all")
    before, after = load_codec(config.stage_dir("joint") / "final"), load_codec(final)
    assert after.config.rates == [1, 2, 3, 4, 8]
    assert after.config.channel_rate_decoders == [2, 4] and after.config.channel_short_codes == [1, 3]
    assert after.config.nested_rates == [2, 4, 8]
    old, new = before.state_dict(), after.state_dict()
    assert all(torch.equal(old[key], new[key]) for key in old)
    added = {key for key in new if key not in old}
    assert {key.split(".")[1] for key in added} == {"rate_decoders", "short_codes"}
    assert {_group_of(key) for key in added} == {"rate_codes"}
    assert {int(key.split(".")[2]) for key in added if ".rate_decoders." in key} == {2, 4}
    assert {(key.split(".")[0], int(key.split(".")[2])) for key in added if ".short_codes." in key} == \
        {(side, k) for side in ("channel_encoder", "channel_decoder") for k in (1, 3)}
    for k in (2, 4):  # each started as the shared decoder's first 2k columns and learnt
        assert not torch.allclose(new[f"channel_decoder.rate_decoders.{k}.weight"],
                                  old["channel_decoder.linear.weight"][:, :2 * k])
    torch.manual_seed(0)  # a short-coded token's symbols: Es = 1 over its k, zero after them
    symbols = after.channel_encoder(torch.randn(6, after.config.hidden_size), torch.tensor([1, 3, 1, 3, 8, 2]))
    for row, k in enumerate([1, 3, 1, 3, 8, 2]):
        assert torch.count_nonzero(symbols[row, k:]) == 0
        assert (symbols[row, :k].abs() ** 2).mean().item() == pytest.approx(1.0, abs=1e-5)


def test_rates_stage_settings_are_checked(tiny_data, tmp_path):
    from pydantic import ValidationError

    base = make_config(tiny_data, tmp_path, steps=1, checkpoint_every=100)
    with pytest.raises(ValidationError, match="list the rates k < c that get a decoder of their own"):
        _with_rates_stage(base)
    data = base.model_dump()
    data["stages"]["joint"]["short_codes"] = [2]
    with pytest.raises(ValidationError, match="stage 'joint': short_codes is a rates-stage setting"):
        type(base).model_validate(data)
    with pytest.raises(UserError, match=re.escape("stages.rates.rates: a rate has either a rate decoder or a "
                                                  "short code: both have [2]")):
        Trainer(_with_rates_stage(base, rates=[2, 4], short_codes=[2])).run("all")
    data = base.model_dump()
    data["stages"]["align"]["rates"] = [2, 8]
    with pytest.raises(ValidationError, match="stage 'align': rates is a joint- and rates-stage setting"):
        type(base).model_validate(data)
    with pytest.raises(UserError, match=re.escape("stages.rates.rates: rate decoders are for 1 <= k < c = 8, got [2, 8]")):
        Trainer(_with_rates_stage(base, rates=[2, 8])).run("all")
