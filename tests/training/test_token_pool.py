"""Stage 3 on a token pool: the cached hidden states are the LLM's, the pooled loss is the per-step
loss on the same tokens, the pool is reused only when nothing it depends on changed."""

import pytest
import torch
import torch.nn.functional as F

from simulator.training.stages import joint_channel_loss, joint_loss, pixel_values_of, target_hidden_states
from simulator.training.token_pool import TokenPool, build_token_pool
from simulator.training.token_pool import POOL_FILE
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config


def _trainer_and_batches(tiny_data, tmp_path, count=3, **stages):
    trainer = Trainer(make_config(tiny_data, tmp_path, steps=2, **stages))
    trainer.prepare()
    codec = trainer.fresh_model()
    generator = torch.Generator().manual_seed(0)
    tasks = ("vqa", "caption", "classify")
    batches = [trainer.collator(codec)([trainer.train_data.sample(tasks[(i + j) % 3], generator) for j in range(4)])
               for i in range(count)]
    return trainer, codec, batches


def test_pool_holds_each_samples_hidden_states_targets_and_noise_free_ce(tiny_data, tmp_path):
    _, codec, batches = _trainer_and_batches(tiny_data, tmp_path)
    pool = build_token_pool(codec, batches, top_words=3)
    assert pool.num_samples == 12
    with torch.no_grad():
        for b, batch in enumerate(batches):
            hidden, targets = target_hidden_states(codec, batch, *pixel_values_of(batch, "cpu"))
            tokens = pool.tokens(torch.arange(4 * b, 4 * b + 4))
            torch.testing.assert_close(pool.hidden[tokens], hidden, rtol=1e-5, atol=1e-5)
            assert torch.equal(pool.targets[tokens], targets)
            logits = codec.logits(hidden).float()
            assert torch.equal(pool.bs_targets[tokens], logits.argmax(-1))
            torch.testing.assert_close(pool.clean_ce[tokens], F.cross_entropy(logits, targets, reduction="none"))
            top = logits.topk(3, dim=-1).indices
            assert torch.isin(top, pool.words).all() and torch.isin(targets, pool.words).all()
    # one sample's tokens, in any order of rows
    rows = torch.tensor([5, 0, 5])
    expected = torch.cat([torch.arange(int(pool.starts[r]), int(pool.starts[r + 1])) for r in rows.tolist()])
    assert torch.equal(pool.tokens(rows), expected)
    assert torch.equal(pool.words, pool.words.unique()) and pool.words.numel() < codec.lm_head.weight.shape[0]


def test_pool_file_round_trip_and_settings_mismatch(tiny_data, tmp_path):
    _, codec, batches = _trainer_and_batches(tiny_data, tmp_path, count=1)
    pool = build_token_pool(codec, batches, top_words=2)
    path = tmp_path / "pool.safetensors"
    pool.save(path, {"samples": 4, "seed": 0})
    loaded = TokenPool.load(path, {"seed": 0, "samples": 4})
    for name in ("hidden", "targets", "bs_targets", "clean_ce", "starts", "words"):
        assert torch.equal(getattr(loaded, name), getattr(pool, name)), name
    assert TokenPool.load(path, {"seed": 1, "samples": 4}) is None
    assert torch.equal(TokenPool.load(path, None).hidden, pool.hidden)  # None: whatever it was built with
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(path))  # a safetensors file, not a pool
    assert TokenPool.load(path, None) is None
    path.write_bytes(b"not a safetensors file")
    assert TokenPool.load(path, {"seed": 0, "samples": 4}) is None


def test_restricted_logits_are_the_full_heads_columns(tiny_data, tmp_path):
    _, codec, _ = _trainer_and_batches(tiny_data, tmp_path, count=0)
    hidden = torch.randn(5, codec.config.hidden_size)
    words = torch.tensor([2, 7, 30, codec.lm_head.weight.shape[0] - 1])
    with torch.no_grad():
        torch.testing.assert_close(codec.logits(hidden, words), codec.logits(hidden)[:, words])


@pytest.mark.parametrize("target", ["labels", "bs"])
def test_pooled_loss_equals_the_per_step_loss_on_the_same_tokens(tiny_data, tmp_path, target):
    """Same tokens, same channel draws: the loss without the pool equals the pool's channel CE plus the
    stored noise-free CE; over every word the restricted softmax changes nothing, over fewer it is lower."""
    _, codec, batches = _trainer_and_batches(tiny_data, tmp_path, count=1)
    batch, rates = batches[0], codec.config.channel_rates or [codec.config.channel_symbols_per_token]
    pool = build_token_pool(codec, [batch], top_words=2)
    with torch.no_grad():
        direct = joint_loss(codec, batch, "rayleigh", 5.0, torch.Generator().manual_seed(7), 0.5, rates, target)
        targets = pool.bs_targets if target == "bs" else pool.targets

        def pooled(words):
            channel = joint_channel_loss(codec, pool.hidden, targets, "rayleigh", 5.0, torch.Generator().manual_seed(7),
                                         rates, words)
            return channel + 0.5 * pool.clean_ce.mean()

        every_word = torch.arange(codec.lm_head.weight.shape[0])
        torch.testing.assert_close(pooled(None), direct, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pooled(every_word), direct, rtol=1e-5, atol=1e-5)
        assert float(pooled(pool.words)) < float(direct)


def test_joint_stage_on_a_pool_trains_the_channel_codec_and_reuses_the_pool(tiny_data, tmp_path):
    joint = {"trainable": ["channel_codec"], "pool_samples": 10, "pool_top_words": 4}
    trainer = Trainer(make_config(tiny_data, tmp_path, steps=3, checkpoint_every=100, joint=joint))
    trainer.prepare()
    model = trainer.fresh_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model, _ = trainer.run_stage("joint", model, resume=False)
    changed = {name.split(".")[0] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"channel_encoder", "channel_decoder"}
    path = trainer.config.stage_dir("joint") / POOL_FILE
    assert trainer._pool.num_samples == 10 and path.is_file()
    stamp = path.stat().st_mtime_ns

    # the same frozen weights and settings: the file is read, not rebuilt
    again = Trainer(make_config(tiny_data, tmp_path, steps=3, checkpoint_every=100, joint=joint))
    again.prepare()
    (trainer.config.stage_dir("joint") / "final" / "config.json").unlink()
    again.run_stage("joint", again.fresh_model(), resume=False)
    assert path.stat().st_mtime_ns == stamp
    # another frozen weight: rebuilt
    other = again.fresh_model()
    with torch.no_grad():
        other.projector.parameters().__next__().add_(1.0)
    (trainer.config.stage_dir("joint") / "final" / "config.json").unlink()
    again.run_stage("joint", other, resume=False)
    assert path.stat().st_mtime_ns != stamp


@pytest.mark.parametrize("stages, message", [
    ({"instruct": {"pool_samples": 8}}, "joint- and rates-stage settings"),
    ({"joint": {"pool_top_words": 8}}, "set pool_samples"),
    # the stage's default trainable groups include projector and LoRA
    ({"joint": {"pool_samples": 4}}, r"pool_samples needs the LLM, projector and vision encoder frozen"),
    ({"joint": {"pool_samples": 4, "trainable": ["channel_codec", "lora"]}}, r"but trainable is \['channel_codec', 'lora'\]"),
])
def test_pool_settings_are_checked_when_the_config_loads(tiny_data, tmp_path, stages, message):
    with pytest.raises(ValueError, match=message):
        make_config(tiny_data, tmp_path, **stages)


def test_the_pools_build_time_counts_in_the_stages_wall_time(tiny_data, tmp_path, monkeypatch):
    """The model card's stage time (``elapsed_s``) includes building the pool; throughput does not."""
    import csv
    import time

    import simulator.training.token_pool as token_pool

    original = token_pool.build_token_pool

    def slow_build(*args, **kwargs):
        time.sleep(1.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(token_pool, "build_token_pool", slow_build)
    joint = {"trainable": ["channel_codec"], "pool_samples": 4}
    trainer = Trainer(make_config(tiny_data, tmp_path, steps=2, checkpoint_every=100, joint=joint))
    trainer.prepare()
    trainer.run_stage("joint", trainer.fresh_model(), resume=False)
    rows = [row for row in csv.DictReader((tmp_path / "train_log.csv").open()) if row["stage"] == "joint"]
    assert float(rows[0]["elapsed_s"]) >= 1.0
    assert float(rows[0]["samples_per_s"]) > 4 / 1.0  # 4 samples in well under the second of the build


def test_word_coverage_script_sees_no_mass_outside_every_word_and_some_outside_fewer(tiny_data, tmp_path):
    """scripts/pool_word_coverage.py: what the restricted softmax leaves out under the full head."""
    from tests.conftest import load_script

    script = load_script("pool_word_coverage")
    _, codec, batches = _trainer_and_batches(tiny_data, tmp_path, count=2)
    pool = build_token_pool(codec.eval(), batches, top_words=1)

    pool.words = torch.arange(codec.lm_head.weight.shape[0])
    (every,) = script.coverage(codec, pool, 100, [-10.0])
    assert every["argmax_inside"] == 1.0 and every["mass_outside_mean"] == 0.0

    pool.words = pool.targets.unique()  # fewer words than the head: at -10 dB noise spreads mass onto the rest
    (fewer,) = script.coverage(codec, pool, 100, [-10.0])
    assert 0.0 < fewer["mass_outside_mean"] <= fewer["mass_outside_p99"] <= 1.0
    assert 0.0 <= fewer["argmax_inside"] <= 1.0


def test_word_coverage_script_rejects_bad_files_with_one_line_and_status_2(tiny_data, tmp_path, monkeypatch, capsys):
    from tests.conftest import load_script

    script = load_script("pool_word_coverage")
    _, codec, batches = _trainer_and_batches(tiny_data, tmp_path, count=1)
    full_head_pool, restricted_pool = tmp_path / "full.safetensors", tmp_path / "restricted.safetensors"
    build_token_pool(codec, batches).save(full_head_pool, {})
    build_token_pool(codec, batches, top_words=2).save(restricted_pool, {})
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    for checkpoint, pool, message in [
        (tmp_path, tmp_path / "missing.safetensors", "is not a readable token pool"),
        (tmp_path, tmp_path / "junk.safetensors", "is not a readable token pool"),
        (tmp_path, full_head_pool, "built without pool_top_words"),
        (tmp_path / "no_checkpoint", restricted_pool, "not found"),
    ]:
        monkeypatch.setattr("sys.argv", ["pool_word_coverage.py", str(checkpoint), str(pool)])
        with pytest.raises(SystemExit) as exit_info:
            script.main()
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
