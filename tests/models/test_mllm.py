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


@pytest.fixture(params=["before_prompt", "after_prompt"])
def layout_model(request, tokenizer):
    from simulator.models.mllm import M4SCModel
    from tests.models.conftest import tiny_config

    torch.manual_seed(0)
    return M4SCModel(tiny_config(image_position=request.param), tokenizer).eval()


def test_training_layout_matches_generation(layout_model):
    """Teacher forcing on right-padded ``prompt + answer`` rows (the training collator's layout)
    predicts the answer from the same hidden states that left-padded generation produced, for
    image and text-only rows alike."""
    model = layout_model
    ids, mask = model.tokenize(PROMPTS)
    has_image = torch.tensor([True, True, False, True])
    steps = 4
    generated = model.generate(ids, mask, _images(), has_image, max_new_tokens=steps, stop_at_eos=False)
    prompts = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    width = max(len(p) for p in prompts) + steps
    train_ids = torch.zeros(len(prompts), width, dtype=torch.long)
    train_mask = torch.zeros_like(train_ids)
    labels = torch.full_like(train_ids, -100)
    for row, prompt in enumerate(prompts):
        answer = generated.tokens[row].tolist()
        train_ids[row, : len(prompt) + steps] = torch.tensor(prompt + answer)
        train_mask[row, : len(prompt) + steps] = 1
        labels[row, len(prompt): len(prompt) + steps] = torch.tensor(answer)
    lengths = torch.tensor([len(p) for p in prompts])
    with torch.no_grad():
        embeds, full_mask, positions = model.build_inputs(train_ids, train_mask, _images(), has_image, lengths)
        hidden = model.decoder(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions).last_hidden_state
    full_labels = model.expand_labels(labels, hidden.shape[1], train_ids, has_image, lengths)
    predicting = full_labels[:, 1:] != -100  # the hidden state at t predicts the label at t + 1
    assert torch.equal(full_labels[:, 1:][predicting].view(-1, steps), generated.tokens)
    assert torch.allclose(hidden[:, :-1][predicting].view(-1, steps, hidden.shape[-1]), generated.hidden, atol=1e-4)


def test_visual_tokens_read_the_question_only_after_the_prompt(layout_model):
    """With ``after_prompt`` the visual tokens' hidden states depend on the question (they come
    after it in a causal LLM); with ``before_prompt`` they cannot."""
    model = layout_model
    first, second = model.tokenize(PROMPTS[:1]), model.tokenize(PROMPTS[1:2])
    visual = []
    for ids, mask in (first, second):
        with torch.no_grad():
            embeds, full_mask, positions = model.build_inputs(ids, mask, _images(batch=1))
            hidden = model.decoder(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions).last_hidden_state
        slots = model.config.num_image_tokens
        visual.append(hidden[:, -slots:] if model.config.image_position == "after_prompt" else hidden[:, :slots])
    depends = not torch.allclose(visual[0], visual[1], atol=1e-5)
    assert depends == (model.config.image_position == "after_prompt")


def test_layouts_generate_consistently(layout_model):
    """Cached equals uncached decoding, and a batch equals each user alone, in both layouts."""
    model = layout_model
    ids, mask = model.tokenize(PROMPTS)
    has_image = torch.tensor([True, False, True, True])
    cached = model.generate(ids, mask, _images(), has_image, max_new_tokens=5, stop_at_eos=False)
    full = model.generate(ids, mask, _images(), has_image, max_new_tokens=5, use_cache=False, stop_at_eos=False)
    assert torch.equal(cached.tokens, full.tokens)
    assert torch.allclose(cached.hidden, full.hidden, atol=1e-4)
    for user, prompt in enumerate(PROMPTS):
        alone_ids, alone_mask = model.tokenize([prompt])
        alone = model.generate(alone_ids, alone_mask, _images()[user:user + 1], has_image[user:user + 1],
                               max_new_tokens=5, stop_at_eos=False)
        assert torch.equal(cached.tokens[user], alone.tokens[0])
        assert torch.allclose(cached.hidden[user], alone.hidden[0], atol=1e-4)
        if not has_image[user]:  # a text-only row's masked visual slots change nothing
            no_slots = model.generate(alone_ids, alone_mask, None, max_new_tokens=5, stop_at_eos=False)
            assert torch.equal(cached.tokens[user], no_slots.tokens[0])
            assert torch.allclose(cached.hidden[user], no_slots.hidden[0], atol=1e-4)


def test_unknown_image_position_is_refused():
    from tests.models.conftest import tiny_config

    with pytest.raises(ValueError, match="image_position must be one of before_prompt, after_prompt"):
        tiny_config(image_position="middle")


def test_send_renders_prompts_and_images_as_the_explicit_call(tiny_model):
    """Transmitter.send (tasks as kind, text, image in [0, 1]) equals the forward call on prompts rendered
    with the codec's instructions and images in [-1, 1], zeros where a task has no image."""
    from simulator.data.templates import render_prompt

    images = (_images() + 1) / 2
    tasks = [("vqa", "is there a red cube ?", images[0]), ("caption", None, images[1]),
             ("classify", "a dull film .", None)]
    sent = Transmitter(tiny_model).send(tasks, max_new_tokens=5)
    prompts = [render_prompt(kind, text, "", tiny_model.config.instructions.get(kind)) for kind, text, _ in tasks]
    pixels = torch.stack([images[0], images[1], torch.zeros_like(images[0])]) * 2 - 1
    expected = Transmitter(tiny_model)(prompts, pixels, torch.tensor([True, True, False]), max_new_tokens=5)
    assert torch.equal(sent.tokens, expected.tokens) and torch.equal(sent.symbols, expected.symbols)
    resized = Transmitter(tiny_model).send([("vqa", "is there a red cube ?", torch.rand(3, 20, 20))], max_new_tokens=2)
    assert resized.tokens.shape[0] == 1
