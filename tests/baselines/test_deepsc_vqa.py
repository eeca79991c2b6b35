"""DeepSC-VQA baseline: per-user symbol accounting and power, noiseless determinism, gradients from
the answer loss through each user's channel to both transmitters, learning on a tiny batch,
checkpoint round trip and clear errors, a YAML-driven training run on a generated CLEVR set."""

import json

import pytest
import torch

from channels.conventions import snr_db_to_no
from channels.flat import AWGNChannel, RayleighBlockFadingChannel
from simulator.baselines.folders import BaselineCheckpointError
from simulator.baselines.deepsc_vqa import DeepSCVQA, DeepSCVQAConfig, load_deepsc_vqa, save_deepsc_vqa
from simulator.models.tokenizer import train_word_tokenizer

QUESTIONS = [
    "what color is the large cube ?",
    "how many spheres are there ?",
    "is there a red thing ?",
    "what shape is the small metal object left of the cylinder ?",
]
ANSWERS = ("blue", "2", "yes", "sphere")


@pytest.fixture(scope="module")
def tokenizer():
    return train_word_tokenizer(QUESTIONS, vocab_size=64)


@pytest.fixture(scope="module")
def images():
    return torch.rand(len(QUESTIONS), 3, 16, 16, generator=torch.Generator().manual_seed(0))


def tiny_vqa(tokenizer, per_token=3, per_word=2, seed=0) -> DeepSCVQA:
    torch.manual_seed(seed)
    config = DeepSCVQAConfig(vocab_size=len(tokenizer), answers=ANSWERS, image_size=16, d_model=16, num_heads=2,
                             ffn_dim=32, dropout=0.0, num_image_layers=1, num_text_layers=1, num_reasoning_layers=1,
                             symbols_per_image_token=per_token, symbols_per_word=per_word, channel_hidden=16,
                             max_words=16)
    return DeepSCVQA(config, tokenizer)


def test_each_user_emits_the_configured_symbols_with_unit_power(tokenizer, images):
    model = tiny_vqa(tokenizer, per_token=3, per_word=2).eval()
    ids, mask = model.tokenize(QUESTIONS)
    words = [len(tokenizer.encode(q, add_special_tokens=False)) for q in QUESTIONS]
    with torch.no_grad():
        sent = model.transmit(images, ids, mask)
    assert model.config.image_tokens == 4  # 16 px / 8 = 2 x 2
    assert sent.image.symbols.shape == (4, 4 * 3) and sent.image.symbols.dtype == torch.complex64
    assert sent.image.symbols_per_sample.tolist() == [12] * 4 == [model.symbols_per_image] * 4
    assert sent.text.symbols_per_sample.tolist() == [2 * w for w in words] == model.symbols_per_question(QUESTIONS)
    assert sent.symbols_per_sample.tolist() == [12 + 2 * w for w in words]
    for part in (sent.image, sent.text):
        for row, count in enumerate(part.symbols_per_sample.tolist()):
            assert (part.symbols[row, :count].abs() ** 2).mean().item() == pytest.approx(1.0, rel=0.01)
            assert torch.all(part.symbols[row, count:] == 0)


def test_noiseless_answers_are_deterministic(tokenizer, images):
    model = tiny_vqa(tokenizer).eval()
    ids, mask = model.tokenize(QUESTIONS)
    with torch.no_grad():
        first = model(images, ids, mask).logits
        second = model(images, ids, mask).logits
        awgn_zero_noise = model(images, ids, mask, AWGNChannel(), 0.0).logits
    assert torch.equal(first, second)
    torch.testing.assert_close(awgn_zero_noise, first)
    assert model.answer(images, QUESTIONS) == model.answer(images, QUESTIONS)


def test_users_get_independent_draws(tokenizer, images):
    """Same seed for both users' streams would be a bug the engine could make; distinct streams differ."""
    model = tiny_vqa(tokenizer).eval()
    ids, mask = model.tokenize(QUESTIONS)
    with torch.no_grad():
        a = model(images, ids, mask, AWGNChannel(), 0.5, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)).logits
        b = model(images, ids, mask, AWGNChannel(), 0.5, torch.Generator().manual_seed(1), torch.Generator().manual_seed(3)).logits
    assert not torch.equal(a, b)


@pytest.mark.parametrize("channel", [AWGNChannel(), RayleighBlockFadingChannel(equalizer="mmse")], ids=["awgn", "rayleigh"])
def test_gradients_reach_both_transmitters_through_the_channel(tokenizer, images, channel):
    model = tiny_vqa(tokenizer).train()
    ids, mask = model.tokenize(QUESTIONS)
    generator = torch.Generator().manual_seed(0)
    loss = model.loss(images, ids, mask, torch.arange(4), channel, snr_db_to_no(torch.full((4,), 5.0)), generator, generator)
    loss.backward()
    params = dict(model.named_parameters())
    for name in ("image_encoder.convolutions.0.weight", "image_channel_encoder.layers.2.weight",
                 "word_embedding.weight", "text_channel_encoder.layers.2.weight"):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name


def test_loss_decreases_on_a_tiny_batch(tokenizer, images):
    model = tiny_vqa(tokenizer).train()
    ids, mask = model.tokenize(QUESTIONS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss = model.loss(images, ids, mask, torch.arange(4), AWGNChannel(), snr_db_to_no(15.0), generator, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0]
    assert model.eval().answer(images, QUESTIONS) == list(ANSWERS)


def test_save_load_round_trip_is_exact(tokenizer, images, tmp_path):
    model = tiny_vqa(tokenizer, seed=5).eval()
    save_deepsc_vqa(model, tmp_path / "vqa")
    loaded = load_deepsc_vqa(tmp_path / "vqa")
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    ids, mask = model.tokenize(QUESTIONS)
    with torch.no_grad():
        assert torch.equal(loaded(images, ids, mask).logits, model(images, ids, mask).logits)


def test_corrupt_or_mismatched_folders_raise_a_clear_error(tokenizer, tmp_path):
    model = tiny_vqa(tokenizer).eval()
    folder = save_deepsc_vqa(model, tmp_path / "a")
    (folder / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(BaselineCheckpointError, match="corrupt weights"):
        load_deepsc_vqa(folder)

    folder = save_deepsc_vqa(model, tmp_path / "b")
    payload = json.loads((folder / "config.json").read_text())
    payload["config"]["symbols_per_image_token"] = 5
    (folder / "config.json").write_text(json.dumps(payload))
    with pytest.raises(BaselineCheckpointError, match="wrong shape"):
        load_deepsc_vqa(folder)

    payload["config"]["unknown_field"] = 1
    (folder / "config.json").write_text(json.dumps(payload))
    with pytest.raises(BaselineCheckpointError, match="unknown deepsc_vqa config key"):
        load_deepsc_vqa(folder)

    (folder / "config.json").unlink()
    with pytest.raises(BaselineCheckpointError, match="no config.json"):
        load_deepsc_vqa(folder)


def test_wrong_image_size_is_rejected(tokenizer):
    model = tiny_vqa(tokenizer)
    with pytest.raises(ValueError, match="16x16"):
        model.transmit_image(torch.rand(1, 3, 32, 32))


@pytest.fixture(scope="module")
def tiny_clevr(tmp_path_factory):
    from simulator.data.clevr_generator import GeneratorConfig, generate_clevr

    root = tmp_path_factory.mktemp("baseline-clevr") / "clevr"
    generate_clevr(root, GeneratorConfig(num_images=10, seed=7, questions_per_image=4, captions_per_image=1))
    return root


def test_yaml_training_run_on_generated_clevr(tiny_clevr, tmp_path):
    from simulator.baselines.train import train_baseline
    from simulator.baselines.train_config import DeepSCVQATrainConfig, load_train_config

    path = tmp_path / "t.yaml"
    path.write_text(f"""model: deepsc_vqa
out_dir: {tmp_path / 'run'}
clevr_dir: {tiny_clevr}
log_every: 1
architecture: {{d_model: 16, num_heads: 2, ffn_dim: 32, num_image_layers: 0, num_text_layers: 1,
                num_reasoning_layers: 1, symbols_per_image_token: 2, symbols_per_word: 2, channel_hidden: 16}}
training: {{steps: 2, batch_size: 4, lr: 0.001}}
evaluation: {{split: train, snr_db: [5], channels: [rayleigh], max_samples: 8}}
""")
    config = load_train_config(path)
    assert isinstance(config, DeepSCVQATrainConfig)
    model = load_deepsc_vqa(train_baseline(config))
    assert model.config.image_tokens == 64 and model.symbols_per_image == 128
    rows = (tmp_path / "run" / "eval.csv").read_text().splitlines()
    assert len(rows) == 1 + 2
    assert rows[1].startswith("deepsc_vqa,vqa,none,inf,")
    assert rows[2].startswith("deepsc_vqa,vqa,rayleigh,5.0,")
