"""DeepSC baseline: symbol accounting, power, noiseless determinism, gradients through the channel,
learning on a tiny batch, checkpoint round trip and clear errors, the YAML-driven training run."""

import json

import pytest
import torch

from channels.conventions import snr_db_to_no
from channels.flat import AWGNChannel, RayleighBlockFadingChannel
from simulator.baselines.blocks import pass_through_channel
from simulator.baselines.deepsc import DeepSC, DeepSCConfig, load_deepsc, save_deepsc
from simulator.baselines.folders import BaselineCheckpointError
from simulator.errors import UserError
from simulator.models.tokenizer import train_word_tokenizer

TEXTS = [
    "a wonderful and moving film .",
    "dull , slow and far too long .",
    "great acting",
    "the plot is a mess and the jokes fall flat .",
]
LABELS = ["positive", "negative", "positive", "negative"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_word_tokenizer(TEXTS, vocab_size=64)


def tiny_deepsc(tokenizer, symbols_per_word=3, seed=0, dropout=0.0) -> DeepSC:
    torch.manual_seed(seed)
    config = DeepSCConfig(vocab_size=len(tokenizer), d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                          ffn_dim=32, channel_hidden=16, symbols_per_word=symbols_per_word, max_words=12, dropout=dropout)
    return DeepSC(config, tokenizer)


def test_transmitter_emits_symbols_per_word_with_unit_power(tokenizer):
    model = tiny_deepsc(tokenizer, symbols_per_word=3).eval()
    words = [len(tokenizer.encode(t, add_special_tokens=False)) for t in TEXTS]
    with torch.no_grad():
        sent = model.transmit(TEXTS)
    assert sent.symbols.dtype == torch.complex64
    assert sent.symbols.shape == (len(TEXTS), max(words) * 3)
    assert sent.symbols_per_sample.tolist() == [w * 3 for w in words]
    assert model.symbols_per_text(TEXTS) == [w * 3 for w in words]
    for row, count in enumerate(sent.symbols_per_sample.tolist()):
        used = sent.symbols[row, :count]
        assert (used.abs() ** 2).mean().item() == pytest.approx(1.0, rel=0.01)
        assert torch.all(sent.symbols[row, count:] == 0)  # padding sends nothing


def test_noiseless_receiver_is_deterministic_and_awgn_at_zero_noise_is_identity(tokenizer):
    model = tiny_deepsc(tokenizer).eval()
    ids, mask = model.tokenize(TEXTS)
    with torch.no_grad():
        first = model(ids, mask)
        second = model(ids, mask)
        through_awgn = model(ids, mask, AWGNChannel(), 0.0)
    assert torch.equal(first.class_logits, second.class_logits)
    assert torch.equal(first.token_logits, second.token_logits)
    torch.testing.assert_close(through_awgn.class_logits, first.class_logits)
    assert model.classify(TEXTS) == model.classify(TEXTS)


def test_noise_reaches_the_receiver_at_finite_snr(tokenizer):
    model = tiny_deepsc(tokenizer).eval()
    with torch.no_grad():
        sent = model.transmit(TEXTS)
        received = pass_through_channel(sent, AWGNChannel(), snr_db_to_no(0.0), torch.Generator().manual_seed(1))
    error = (received - sent.symbols)[sent.symbol_mask]
    # SNR 0 dB: noise power N0 = 1 per complex symbol.
    assert (error.abs() ** 2).mean().item() == pytest.approx(1.0, rel=0.35)
    assert torch.all(received[~sent.symbol_mask] == 0)


@pytest.mark.parametrize("channel", [AWGNChannel(), RayleighBlockFadingChannel(equalizer="mmse")], ids=["awgn", "rayleigh"])
def test_gradients_flow_through_the_channel_to_the_transmitter(tokenizer, channel):
    model = tiny_deepsc(tokenizer).train()
    ids, mask = model.tokenize(TEXTS)
    labels = torch.tensor([1, 0, 1, 0])
    loss, parts = model.loss(ids, mask, labels, channel, snr_db_to_no(torch.full((4,), 5.0)), torch.Generator().manual_seed(0))
    loss.backward()
    assert set(parts) == {"reconstruction", "classification"}
    for name in ("embedding.weight", "channel_encoder.layers.0.weight", "channel_encoder.layers.2.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_loss_decreases_on_a_tiny_batch(tokenizer):
    model = tiny_deepsc(tokenizer).train()
    ids, mask = model.tokenize(TEXTS)
    labels = torch.tensor([1, 0, 1, 0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss, _ = model.loss(ids, mask, labels, AWGNChannel(), snr_db_to_no(15.0), generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
    model.eval()
    assert model.classify(TEXTS) == LABELS
    assert model.reconstruct(TEXTS[:1]) == [tokenizer.decode(tokenizer.encode(TEXTS[0], add_special_tokens=False))]


def test_save_load_round_trip_is_exact(tokenizer, tmp_path):
    model = tiny_deepsc(tokenizer, seed=3).eval()
    save_deepsc(model, tmp_path / "deepsc")
    loaded = load_deepsc(tmp_path / "deepsc")
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    ids, mask = model.tokenize(TEXTS)
    assert torch.equal(loaded(ids, mask).class_logits, model(ids, mask).class_logits)
    assert loaded.tokenize(TEXTS)[0].tolist() == ids.tolist()


def test_corrupt_or_mismatched_folders_raise_a_clear_error(tokenizer, tmp_path):
    model = tiny_deepsc(tokenizer).eval()
    folder = save_deepsc(model, tmp_path / "good")
    with pytest.raises(BaselineCheckpointError, match="not found"):
        load_deepsc(tmp_path / "missing")

    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BaselineCheckpointError, match="corrupt weights"):
        load_deepsc(folder)

    folder = save_deepsc(model, tmp_path / "mismatch")
    payload = json.loads((folder / "config.json").read_text())
    payload["config"]["d_model"] = 32
    (folder / "config.json").write_text(json.dumps(payload))
    with pytest.raises(BaselineCheckpointError, match="do not match config.json"):
        load_deepsc(folder)

    (folder / "config.json").write_text("{ truncated")
    with pytest.raises(BaselineCheckpointError, match="corrupt"):
        load_deepsc(folder)

    from simulator.baselines.deepsc_vqa import load_deepsc_vqa

    folder = save_deepsc(model, tmp_path / "kind")
    with pytest.raises(BaselineCheckpointError, match="expected 'deepsc_vqa'"):
        load_deepsc_vqa(folder)
    assert issubclass(BaselineCheckpointError, ValueError)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="symbols_per_word"):
        DeepSCConfig(vocab_size=10, symbols_per_word=0)
    with pytest.raises(ValueError, match="unknown deepsc config key"):
        DeepSCConfig.from_dict({"vocab_size": 10, "symbol_per_word": 4})


@pytest.fixture
def sentiment_corpus(tmp_path):
    root = tmp_path / "text"
    for split, count in (("train", 16), ("test", 6)):
        path = root / "sentences" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"text": TEXTS[i % 4], "label": LABELS[i % 4]} for i in range(count)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def write_yaml(path, out_dir, text_dir, extra=""):
    path.write_text(f"""model: deepsc
out_dir: {out_dir}
text_dir: {text_dir}
tokenizer_vocab_size: 64
checkpoint_every: 2
log_every: 1
architecture: {{d_model: 16, num_heads: 2, num_encoder_layers: 1, num_decoder_layers: 1, ffn_dim: 32,
                channel_hidden: 16, symbols_per_word: 2, max_words: 12}}
training: {{steps: 3, batch_size: 4, lr: 0.001, warmup_steps: 1}}
evaluation: {{split: test, snr_db: [0, 10], channels: [awgn, rayleigh]}}
{extra}""")
    return path


def test_yaml_training_run_writes_a_loadable_model_and_eval_rows(sentiment_corpus, tmp_path):
    from simulator.baselines.train import train_baseline
    from simulator.baselines.train_config import DeepSCTrainConfig, load_train_config

    config = load_train_config(write_yaml(tmp_path / "t.yaml", tmp_path / "run", sentiment_corpus))
    assert isinstance(config, DeepSCTrainConfig)
    final = train_baseline(config)
    model = load_deepsc(final)
    assert model.config.symbols_per_word == 2 and model.config.labels == ("negative", "positive")
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert len(log) == 1 + 3
    rows = (tmp_path / "run" / "eval.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["system", "task", "channel", "snr_db"]
    # noise-free + 2 channels x 2 SNRs, each for classify and reconstruct
    assert len(rows) == 1 + 2 * 5
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_yaml_errors_are_one_line_user_errors(sentiment_corpus, tmp_path):
    from simulator.baselines.train_config import load_train_config

    with pytest.raises(UserError, match="unknown key"):
        load_train_config(write_yaml(tmp_path / "a.yaml", tmp_path / "r", sentiment_corpus, "learning_rate: 1"))
    with pytest.raises(UserError, match="architecture.vocab_size is set from the data"):
        load_train_config(write_yaml(tmp_path / "b.yaml", tmp_path / "r", sentiment_corpus), ["architecture.vocab_size=9"])
    with pytest.raises(UserError, match="model: must be one of"):
        load_train_config(write_yaml(tmp_path / "c.yaml", tmp_path / "r", sentiment_corpus), ["model=deepsc2"])
    with pytest.raises(UserError, match="snr_db"):
        load_train_config(write_yaml(tmp_path / "d.yaml", tmp_path / "r", sentiment_corpus), ["training.snr_db=[10, 0]"])


def test_resume_continues_exactly(sentiment_corpus, tmp_path):
    """A run stopped after its step-2 checkpoint and resumed ends with the weights of a straight run."""
    from simulator.baselines import train as train_module
    from simulator.baselines.train import train_deepsc
    from simulator.baselines.train_config import load_train_config

    straight = load_train_config(write_yaml(tmp_path / "s.yaml", tmp_path / "straight", sentiment_corpus),
                                 ["evaluation=null"])
    reference = load_deepsc(train_deepsc(straight))

    interrupted = load_train_config(write_yaml(tmp_path / "i.yaml", tmp_path / "interrupted", sentiment_corpus),
                                    ["evaluation=null"])
    original = train_module.write_dir_atomically

    def stop_after_checkpoint(save, target):
        original(save, target)
        if target.name == "checkpoint":
            raise KeyboardInterrupt

    train_module.write_dir_atomically = stop_after_checkpoint
    try:
        with pytest.raises(KeyboardInterrupt):
            train_deepsc(interrupted)
    finally:
        train_module.write_dir_atomically = original
    with pytest.raises(UserError, match="--resume"):
        train_deepsc(interrupted)
    resumed = load_deepsc(train_deepsc(interrupted, resume=True))
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_training_again_in_the_same_folder_logs_its_steps_once(sentiment_corpus, tmp_path):
    """Training again after deleting a run's ``final`` (a finished run is otherwise skipped) replaces
    the log rows instead of appending to them."""
    import csv
    import shutil

    from simulator.baselines.train import train_deepsc
    from simulator.baselines.train_config import load_train_config

    config = load_train_config(write_yaml(tmp_path / "s.yaml", tmp_path / "run", sentiment_corpus), ["evaluation=null"])
    train_deepsc(config)
    shutil.rmtree(tmp_path / "run" / "final")
    train_deepsc(config)
    rows = list(csv.DictReader((tmp_path / "run" / "train_log.csv").open()))
    assert [int(row["step"]) for row in rows] == [1, 2, 3]


def test_a_foreign_file_in_place_of_the_log_is_refused_untouched(sentiment_corpus, tmp_path):
    from simulator.baselines.train import train_deepsc
    from simulator.baselines.train_config import load_train_config

    log = tmp_path / "run" / "train_log.csv"
    log.parent.mkdir()
    log.write_text("when,what\nmonday,notes\n")
    config = load_train_config(write_yaml(tmp_path / "s.yaml", tmp_path / "run", sentiment_corpus), ["evaluation=null"])
    with pytest.raises(UserError, match=r"train_log.csv is not a training log of this run \(KeyError: 'step'\)"):
        train_deepsc(config)
    assert log.read_text() == "when,what\nmonday,notes\n"
