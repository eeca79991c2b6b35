"""The MLLM codec on tiny random models: generation, the link split, isolation, LoRA, sizes."""

import pytest
import torch

from channels.conventions import average_power, snr_db_to_no
from channels.flat import AWGNChannel
from simulator.models.transceiver import Receiver, Transmitter

PROMPTS = ["is there a red cube ?", "how many spheres are there ?", "describe the image .",
           "classify the sentiment of the review : positive"]


def _images(seed=0, batch=4):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 32, 32, generator=generator) * 2 - 1


def test_cached_generation_equals_uncached(tiny_model):
    ids, mask = tiny_model.tokenize(PROMPTS)
    has_image = torch.tensor([True, True, True, False])
    cached = tiny_model.generate(ids, mask, _images(), has_image, max_new_tokens=6)
    full = tiny_model.generate(ids, mask, _images(), has_image, max_new_tokens=6, use_cache=False)
    assert torch.equal(cached.tokens, full.tokens)
    assert torch.equal(cached.token_mask, full.token_mask)
    assert torch.allclose(cached.hidden, full.hidden, atol=1e-4)


def test_hidden_states_predict_their_tokens(tiny_model):
    ids, mask = tiny_model.tokenize(PROMPTS)
    out = tiny_model.generate(ids, mask, _images(), max_new_tokens=5)
    predicted = tiny_model.logits(out.hidden).argmax(-1)
    assert torch.equal(predicted[out.token_mask], out.tokens[out.token_mask])


def test_identity_codec_through_noiseless_channel_reproduces_tokens(tiny_model):
    tiny_model.channel_encoder.init_identity()
    tiny_model.channel_decoder.init_identity()
    sent = Transmitter(tiny_model)(PROMPTS, _images(), max_new_tokens=6)
    batch, tokens, c = sent.symbols.shape
    received = AWGNChannel()(sent.symbols.reshape(batch, 1, tokens * c), 0.0).x_hat.reshape(batch, tokens, c)
    got, texts = Receiver.from_model(tiny_model)(received, sent.token_mask)
    assert torch.equal(got, sent.tokens)
    assert len(texts) == batch


def test_noisy_channel_at_low_snr_corrupts_tokens(tiny_model):
    sent = Transmitter(tiny_model)(PROMPTS, _images(), max_new_tokens=6)
    batch, tokens, c = sent.symbols.shape
    noisy = AWGNChannel()(sent.symbols.reshape(batch, 1, tokens * c), snr_db_to_no(-20.0),
                          torch.Generator().manual_seed(1)).x_hat.reshape(batch, tokens, c)
    got, _ = Receiver.from_model(tiny_model)(noisy, sent.token_mask)
    assert not torch.equal(got[sent.token_mask], sent.tokens[sent.token_mask])


def test_transmitter_power_is_one_per_symbol(tiny_model):
    sent = Transmitter(tiny_model)(PROMPTS, _images(), max_new_tokens=6)
    per_token = average_power(sent.symbols)[sent.token_mask]
    assert torch.allclose(per_token, torch.ones_like(per_token), rtol=0.01)
    assert int(sent.symbols_per_user.sum()) == int(sent.token_mask.sum()) * sent.symbols.shape[-1]


def test_users_in_one_batch_do_not_leak(tiny_model):
    transmitter = Transmitter(tiny_model)
    images = _images()
    first = transmitter(PROMPTS, images, max_new_tokens=5)
    changed = images.clone()
    changed[1] = _images(seed=9, batch=1)[0]
    second = transmitter(PROMPTS, changed, max_new_tokens=5)
    steps = min(first.symbols.shape[1], second.symbols.shape[1])
    for user in (0, 2, 3):
        assert torch.allclose(first.symbols[user, :steps], second.symbols[user, :steps], atol=1e-5)
    assert not torch.allclose(first.hidden[1, :steps], second.hidden[1, :steps], atol=1e-5)


def test_batched_generation_equals_one_user_at_a_time(tiny_model):
    """Pins the batching optimisation (all users' prompts left-padded into one forward): every
    user's tokens, mask and semantic vectors are what a batch of one gives."""
    transmitter = Transmitter(tiny_model)
    images = _images()
    has_image = torch.tensor([True, True, True, False])
    batched = transmitter(PROMPTS, images, has_image, max_new_tokens=6)
    for user, prompt in enumerate(PROMPTS):
        alone = transmitter([prompt], images[user:user + 1], has_image[user:user + 1], max_new_tokens=6)
        steps = int(alone.token_mask[0].sum())
        assert int(batched.token_mask[user].sum()) == steps
        assert torch.equal(batched.tokens[user, :steps], alone.tokens[0, :steps])
        assert torch.allclose(batched.hidden[user, :steps], alone.hidden[0, :steps], atol=1e-4)
        assert torch.allclose(batched.symbols[user, :steps], alone.symbols[0, :steps], atol=1e-4)


def test_lora_training_leaves_base_weights_untouched(tiny_model):
    tiny_model.train()
    base_before = {n: p.detach().clone() for n, p in tiny_model.llm.named_parameters() if "lora_" not in n}
    lora_before = {n: p.detach().clone() for n, p in tiny_model.llm.named_parameters() if "lora_" in n}
    assert lora_before and all(not p.requires_grad for n, p in tiny_model.llm.named_parameters() if "lora_" not in n)
    ids, mask = tiny_model.tokenize(PROMPTS)
    optimizer = torch.optim.AdamW([p for p in tiny_model.llm.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = tiny_model(ids, mask, labels=ids.masked_fill(mask == 0, -100), pixel_values=_images()).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, param in tiny_model.llm.named_parameters():
        if "lora_" in name:
            continue
        assert torch.equal(param, base_before[name]), name
    assert any(not torch.equal(p, lora_before[n]) for n, p in tiny_model.llm.named_parameters() if "lora_" in n)


def test_receiver_holds_only_channel_decoder_and_lm_head(tiny_model):
    receiver = Receiver.from_model(tiny_model)
    d, c = tiny_model.config.hidden_size, tiny_model.config.channel_symbols_per_token
    vocab = tiny_model.lm_head.weight.shape[0]
    assert receiver.parameter_count() == (2 * c * d + d) + vocab * d


def test_paper_profile_sizes_on_meta_device():
    from simulator.commands.info import model_summary

    summary = model_summary("paper")
    counts = summary["parameters"]
    assert 0.38e9 < counts["vision"] < 0.45e9
    assert 70e6 <= counts["projector"] <= 80e6
    assert 2.5e9 < counts["llm"] < 2.7e9
    assert summary["channel_encoder_shape"] == [2304, 512]


@pytest.mark.parametrize("kind", ["kan", "mlp"])
def test_projector_switch(tokenizer, kind):
    from simulator.models.mllm import M4SCModel
    from tests.models.conftest import tiny_config

    config = tiny_config(projector={"kind": kind, "hidden_dim": 64})
    model = M4SCModel(config, tokenizer)
    assert type(model.projector).__name__ == ("KANProjector" if kind == "kan" else "MLPProjector")
    out = model.encode_images(_images(batch=2))
    assert out.shape == (2, config.num_image_tokens, config.hidden_size)


def test_question_only_codec_answers_the_same_whatever_the_image(tokenizer):
    from simulator.models.mllm import M4SCModel
    from tests.models.conftest import tiny_config

    torch.manual_seed(0)
    model = M4SCModel(tiny_config(ignore_images=True), tokenizer).eval()
    ids, mask = model.tokenize(PROMPTS)
    embeds, full_mask, _ = model.build_inputs(ids, mask, _images(seed=1))
    assert embeds.shape[1] == ids.shape[1]  # no visual slots at all
    first = model.generate(ids, mask, _images(seed=1), max_new_tokens=5)
    second = model.generate(ids, mask, _images(seed=2), max_new_tokens=5)
    blank = model.generate(ids, mask, None, max_new_tokens=5)
    assert torch.equal(first.tokens, second.tokens) and torch.equal(first.tokens, blank.tokens)
    assert torch.allclose(first.hidden, blank.hidden, atol=1e-6)
    model.config.ignore_images = False  # the same weights with images: the visual tokens matter
    seeing = model.generate(ids, mask, _images(seed=1), max_new_tokens=5)
    assert not torch.allclose(seeing.hidden, first.hidden, atol=1e-3)
