"""DeepSC-VQA's image user started from an M4SC codec's vision encoder (``vision_encoder``) and the
text-only ablation (``text_only``): the codec's exact weights and object picks, freezing, masked
object slots that cost no symbols, a self-contained checkpoint, answers that ignore the image in the
ablation, one-line errors, a YAML run, and configs without the option loading as before."""

import json
from pathlib import Path

import pytest
import torch

from channels.flat import AWGNChannel
from simulator.baselines.deepsc_vqa import (
    DeepSCVQA,
    DeepSCVQAConfig,
    load_deepsc_vqa,
    save_deepsc_vqa,
)
from simulator.baselines.image_user import vision_encoder_from_codec
from simulator.errors import UserError
from simulator.models.checkpoint import load_codec, save_codec
from simulator.models.config import CodecConfig
from simulator.models.mllm import M4SCModel
from simulator.models.objects import OBJECT_CLASSES
from simulator.models.tokenizer import train_word_tokenizer
from tests.baselines.test_deepsc_vqa import ANSWERS, QUESTIONS
from tests.models.conftest import CORPUS, tiny_config

IMAGE_SIZE, PATCH_SIZE, MAX_OBJECTS = 64, 16, 3
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2


def _object_centre_head(codec: M4SCModel) -> None:
    """Make the codec's object head read vision feature 0: "an object centre here" where it is
    well above 0.5 (as a stage-0 head reads its features), "no object" elsewhere."""
    head = codec.object_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        start = 0
        for width in OBJECT_CLASSES:
            head.bias[start] = 4.0
            head.weight[start, 0] = -8.0
            start += width


@pytest.fixture(scope="module")
def codec_folder(tmp_path_factory):
    """A tiny stage-0-like codec folder: 64 px, 16 x 16 patches (4 x 4), object tokens, 3 slots."""
    base = tiny_config(visual_tokens="objects", max_objects=MAX_OBJECTS)
    config = CodecConfig.from_dict({**base.to_dict(),
                                    "vision": {**base.vision, "image_size": IMAGE_SIZE, "patch_size": PATCH_SIZE}})
    torch.manual_seed(0)
    codec = M4SCModel(config, train_word_tokenizer(CORPUS, vocab_size=64)).eval()
    _object_centre_head(codec)
    return save_codec(codec, tmp_path_factory.mktemp("codec") / "stage0_vision")


@pytest.fixture(scope="module")
def codec(codec_folder):
    return load_codec(codec_folder, "cpu")


@pytest.fixture(scope="module")
def tokenizer():
    return train_word_tokenizer(QUESTIONS, vocab_size=64)


@pytest.fixture(scope="module")
def images():
    return torch.rand(len(QUESTIONS), 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))


def _config(tokenizer, **fields) -> DeepSCVQAConfig:
    return DeepSCVQAConfig(vocab_size=len(tokenizer), answers=ANSWERS, image_size=IMAGE_SIZE, d_model=16, num_heads=2,
                           ffn_dim=32, dropout=0.0, num_image_layers=1, num_text_layers=1, num_reasoning_layers=1,
                           symbols_per_image_token=3, symbols_per_word=2, channel_hidden=16, max_words=16, **fields)


def vision_vqa(codec, tokenizer, tokens="objects", freeze=True, seed=0) -> DeepSCVQA:
    spec = vision_encoder_from_codec(codec, IMAGE_SIZE, tokens, freeze, source="runs/x/stage0_vision/final")
    torch.manual_seed(seed)
    model = DeepSCVQA(_config(tokenizer, vision_encoder=spec), tokenizer)
    model.copy_vision_from(codec)
    return model.eval()


def _features_with_centres(centres: dict[int, list[int]], batch: int, width: int) -> torch.Tensor:
    """``[batch, NUM_PATCHES, width]`` features whose feature 0 marks ``centres[row]`` for the head above."""
    features = torch.randn(batch, NUM_PATCHES, width, generator=torch.Generator().manual_seed(1))
    features[..., 0] = 0.0
    for row, patches in centres.items():
        features[row, patches, 0] = 1.0
    return features


def test_the_image_user_runs_exactly_the_codecs_encoder_and_object_picks(codec, tokenizer, images):
    model = vision_vqa(codec, tokenizer)
    encoder = model.image_encoder
    assert model.config.vision_encoder.siglip["image_size"] == IMAGE_SIZE and model.config.image_tokens == MAX_OBJECTS
    for key, value in codec.vision.state_dict().items():
        assert torch.equal(encoder.vision.state_dict()[key], value), key
    with torch.no_grad():
        expected = codec.vision(pixel_values=images * 2 - 1).last_hidden_state
        assert torch.equal(encoder.features(images), expected)
        for features in (expected, _features_with_centres({0: [1], 2: [4, 7, 11, 13], 5: [2, 3]}, 8, expected.shape[-1])):
            mine, theirs = encoder.detect_objects(features), codec.detect_objects(features)
            assert torch.equal(mine[1], theirs[1]) and torch.equal(mine[0][mine[1]], theirs[0][theirs[1]])
    assert mine[1].sum(1).tolist() == [1, 0, 3, 0, 0, 2, 0, 0]


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "fine-tuned"])
def test_freeze_keeps_the_encoder_and_fine_tuning_changes_it(codec, tokenizer, images, freeze):
    model = vision_vqa(codec, tokenizer, freeze=freeze).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]  # what the training loop optimises
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    ids, mask = model.tokenize(QUESTIONS)
    assert model.transmit_image(images).unit_mask.any()  # gradients reach the encoder through found objects
    model.loss(images, ids, mask, torch.arange(4), AWGNChannel(), 0.1, torch.Generator().manual_seed(0),
               torch.Generator().manual_seed(1)).backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    vision_layers = {k for k in before if k.startswith("image_encoder.vision.encoder.")}
    assert "image_encoder.input.weight" in changed and "answer_head.2.weight" in changed
    assert not any(k.startswith("image_encoder.object_head.") for k in changed)
    if freeze:
        assert not any(k.startswith("image_encoder.vision.") for k in changed)
    else:
        assert vision_layers & changed


def test_object_slots_that_found_nothing_are_not_sent_and_not_read(codec, tokenizer):
    model = vision_vqa(codec, tokenizer)
    width = codec.vision.config.hidden_size
    features = _features_with_centres({0: [5], 1: [3, 10], 3: [0, 6, 9, 15]}, 4, width)
    model.image_encoder.features = lambda images: features
    images = torch.zeros(4, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        sent = model.transmit_image(images)
    assert sent.unit_mask.tolist() == [[True, False, False], [True, True, False], [False] * 3, [True] * 3]
    assert sent.symbols_per_sample.tolist() == [3, 6, 0, 9] == model.image_symbols(images).tolist()
    assert model.symbols_per_image == 9
    for row, count in enumerate(sent.symbols_per_sample.tolist()):
        assert torch.all(sent.symbols[row][~sent.symbol_mask[row]] == 0)
        if count:
            assert (sent.symbols[row][sent.symbol_mask[row]].abs() ** 2).mean().item() == pytest.approx(1.0, rel=0.01)
    ids, mask = model.tokenize(QUESTIONS)
    with torch.no_grad():
        logits = model.receive(sent.symbols, model.transmit_question_ids(ids, mask).symbols, mask, sent.unit_mask)
        garbage = torch.where(sent.symbol_mask, sent.symbols, torch.full_like(sent.symbols, 3 - 2j))
        text = model.transmit_question_ids(ids, mask).symbols
        assert torch.equal(model.receive(garbage, text, mask, sent.unit_mask), logits)
        assert torch.isfinite(logits).all() and torch.isfinite(model(images, ids, mask).logits).all()


@pytest.mark.parametrize("tokens", ["objects", "patches"])
def test_checkpoint_round_trip_is_self_contained_and_gives_identical_answers(codec, tokenizer, images, tokens,
                                                                             tmp_path, monkeypatch):
    model = vision_vqa(codec, tokenizer, tokens=tokens, seed=3)
    folder = save_deepsc_vqa(model, tmp_path / "vqa")
    stored = json.loads((folder / "config.json").read_text())["config"]["vision_encoder"]
    assert stored["tokens"] == tokens and stored["source"] == "runs/x/stage0_vision/final"
    monkeypatch.setattr("simulator.models.checkpoint.load_codec", lambda *a, **k: pytest.fail("reads the codec"))
    loaded = load_deepsc_vqa(folder)
    assert loaded.config == model.config
    assert model.config.image_tokens == (MAX_OBJECTS if tokens == "objects" else NUM_PATCHES)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    ids, mask = model.tokenize(QUESTIONS)
    with torch.no_grad():
        assert torch.equal(loaded(images, ids, mask).logits, model(images, ids, mask).logits)
    assert loaded.answer(images, QUESTIONS, AWGNChannel(), 0.3, torch.Generator().manual_seed(0),
                         torch.Generator().manual_seed(1)) == \
        model.answer(images, QUESTIONS, AWGNChannel(), 0.3, torch.Generator().manual_seed(0),
                     torch.Generator().manual_seed(1))


def test_text_only_ablation_answers_the_same_whatever_the_image(tokenizer, images, tmp_path):
    torch.manual_seed(0)
    model = DeepSCVQA(_config(tokenizer, text_only=True), tokenizer).eval()
    assert not [name for name, _ in model.named_parameters() if "image" in name]
    other = torch.rand(images.shape, generator=torch.Generator().manual_seed(9))
    ids, mask = model.tokenize(QUESTIONS)
    with torch.no_grad():
        out = model(images, ids, mask, AWGNChannel(), 0.2, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
        again = model(other, ids, mask, AWGNChannel(), 0.2, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    assert torch.equal(out.logits, again.logits)
    assert out.transmission.image.symbols_per_sample.tolist() == [0] * 4 and model.symbols_per_image == 0
    assert model.answer(images, QUESTIONS) == model.answer(other, QUESTIONS) == model.answer(torch.zeros_like(images), QUESTIONS)
    loaded = load_deepsc_vqa(save_deepsc_vqa(model, tmp_path / "text_only"))
    assert loaded.config.text_only and loaded.answer(other, QUESTIONS) == model.answer(other, QUESTIONS)


def test_attribute_embedding_adds_the_heads_probabilities_to_each_object_token(codec, tokenizer, tmp_path):
    spec = vision_encoder_from_codec(codec, IMAGE_SIZE, "objects", True, attributes=True)
    torch.manual_seed(0)
    model = DeepSCVQA(_config(tokenizer, vision_encoder=spec), tokenizer)
    model.copy_vision_from(codec)
    loaded = load_deepsc_vqa(save_deepsc_vqa(model, tmp_path / "vqa"))
    assert loaded.config.vision_encoder.attributes
    assert torch.equal(loaded.image_encoder.attributes.weight, model.image_encoder.attributes.weight)
    encoder = model.image_encoder.eval()
    features = _features_with_centres({0: [5], 1: [2, 9]}, 2, codec.vision.config.hidden_size)
    encoder.features = lambda images: features
    encoder.encoder = torch.nn.Identity()  # the token sum itself, before the image transformer
    encoder.encoder.forward = lambda tokens, src_key_padding_mask=None: tokens
    with torch.no_grad():
        tokens, real = encoder(torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE))
        probabilities = torch.cat([part.softmax(-1) for part in codec.object_head(features[1, [2, 9]]).split(OBJECT_CLASSES, -1)], -1)
        expected = (encoder.input(features[1, [2, 9]]) + encoder.positions(torch.tensor([2, 9]))
                    + encoder.attributes(probabilities))
    assert real.tolist() == [[True, False, False], [True, True, False]]
    assert torch.allclose(tokens[1, :2], expected, atol=1e-6) and torch.all(tokens[~real] == 0)
    assert encoder.attributes.weight.requires_grad
    with pytest.raises(UserError, match="attributes needs vision_encoder.tokens: objects"):
        vision_encoder_from_codec(codec, IMAGE_SIZE, "patches", attributes=True)


def test_bad_combinations_and_sizes_are_one_line_errors(codec, tokenizer):
    with pytest.raises(UserError) as err:
        vision_encoder_from_codec(codec, 96, "objects", True, "runs/x")
    assert "takes 64 px images" in str(err.value) and "\n" not in str(err.value)
    torch.manual_seed(0)
    patch_codec = M4SCModel(tiny_config(), train_word_tokenizer(CORPUS, vocab_size=64))
    with pytest.raises(UserError, match="has no object head .* use vision_encoder.tokens: patches"):
        vision_encoder_from_codec(patch_codec, 32, "objects")
    spec = vision_encoder_from_codec(codec, IMAGE_SIZE, "objects")
    with pytest.raises(ValueError, match="text_only has no image user"):
        _config(tokenizer, vision_encoder=spec, text_only=True)
    with pytest.raises(ValueError, match="must equal the vision encoder's image_size"):
        DeepSCVQAConfig(vocab_size=16, answers=ANSWERS, image_size=96, vision_encoder=spec)
    with pytest.raises(ValueError, match="vision_encoder.tokens must be one of"):
        DeepSCVQAConfig.from_dict({"vocab_size": 16, "answers": ANSWERS, "image_size": IMAGE_SIZE,
                                   "vision_encoder": {**spec.__dict__, "tokens": "regions"}})


def test_configs_without_the_options_are_the_cnn_model_as_before(tokenizer):
    config = DeepSCVQAConfig.from_dict({"vocab_size": 16, "answers": ANSWERS})
    assert config.vision_encoder is None and not config.text_only and config.image_tokens == 64
    assert type(DeepSCVQA(config, tokenizer).image_encoder).__name__ == "ImageSemanticEncoder"


def test_the_shipped_baseline_carries_its_own_pretrained_encoder():
    from simulator.assets import SHIPPED_BASELINES

    shipped = load_deepsc_vqa(SHIPPED_BASELINES["deepsc_vqa"])  # loads from its own folder alone
    assert shipped.config.vision_encoder.tokens == "objects" and not shipped.config.text_only
    assert shipped.config.grounding and shipped.config.vision_encoder.attributes  # the recipe's
    assert type(shipped.image_encoder).__name__ == "PretrainedImageEncoder"


@pytest.mark.parametrize("variant", ["objects", "text_only"])
def test_as_a_simulator_system_only_sent_tokens_are_counted(codec, tokenizer, variant):
    from channels.conventions import snr_db_to_no
    from channels.randomness import user_generators
    from simulator.systems import DeepSCVQASystem
    from simulator.workload import Task
    from simulator.interface import Link

    if variant == "objects":
        model = vision_vqa(codec, tokenizer)
    else:
        torch.manual_seed(0)
        model = DeepSCVQA(_config(tokenizer, text_only=True), tokenizer).eval()
    pictures = torch.rand(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(4))
    system = DeepSCVQASystem(model, lambda name: pictures[int(name[3])])
    tasks = [Task(f"vqa/{i}", "vqa", QUESTIONS[i], f"img{i}.png", ("yes",), f"img{i}.png") for i in range(3)]
    encoded = system.encode(tasks)
    plan = system.plan(encoded, None)
    words = [len(tokenizer.encode(q, add_special_tokens=False)) for q in QUESTIONS[:3]]
    image_symbols = model.image_symbols(pictures).tolist()
    assert image_symbols == ([0, 0, 0] if variant == "text_only" else [3 * k for k in encoded.extra[1].sum(1).tolist()])
    assert plan.unicast_symbols == [i + 2 * w for i, w in zip(image_symbols, words)]
    assert system.describe()["image_user"] == ("none (text-only)" if variant == "text_only" else "siglip objects")
    snr = torch.full((3,), 120.0)
    link = Link(AWGNChannel(), snr_db_to_no(snr), snr, user_generators(0, 3, 102), user_generators(0, 3, 101))
    deliveries = system.deliver(encoded, plan, [2, 0, 1], link)
    assert [d.prediction for d in deliveries] == encoded.reference_texts


# ---- training recipe ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clevr(tmp_path_factory):
    from simulator.data.clevr_generator import GeneratorConfig, generate_clevr

    root = tmp_path_factory.mktemp("vision-clevr") / "clevr"
    generate_clevr(root, GeneratorConfig(num_images=8, seed=3, questions_per_image=4, captions_per_image=1))
    return root


def _recipe(tmp_path, clevr, codec_folder, extra: str = "") -> str:
    path = tmp_path / "t.yaml"
    path.write_text(f"""model: deepsc_vqa
out_dir: {tmp_path / 'run'}
clevr_dir: {clevr}
image_size: 64
log_every: 1
vision_encoder: {{checkpoint: {codec_folder}, freeze: true, tokens: objects}}
architecture: {{d_model: 16, num_heads: 2, ffn_dim: 32, num_image_layers: 1, num_text_layers: 1,
                num_reasoning_layers: 1, symbols_per_image_token: 2, symbols_per_word: 2, channel_hidden: 16}}
training: {{steps: 2, batch_size: 4, lr: 0.001}}
evaluation: {{split: train, snr_db: [5], channels: [awgn], max_samples: 8}}
{extra}""")
    return str(path)


def test_yaml_run_starts_from_the_codec_encoder_and_keeps_it_frozen(tiny_clevr, codec_folder, codec, tmp_path):
    from simulator.baselines.model_card import write_baseline_card
    from simulator.baselines.train import train_baseline
    from simulator.baselines.train_config import load_train_config

    config = load_train_config(_recipe(tmp_path, tiny_clevr, codec_folder))
    model = load_deepsc_vqa(train_baseline(config))
    spec = model.config.vision_encoder
    assert spec.tokens == "objects" and spec.freeze and spec.source == str(codec_folder)
    for key, value in codec.vision.state_dict().items():
        assert torch.equal(model.image_encoder.vision.state_dict()[key], value), key
    rows = (tmp_path / "run" / "eval.csv").read_text().splitlines()
    assert len(rows) == 3 and 0 < float(rows[1].split(",")[-1])
    card = write_baseline_card(config, "python -m simulator train t.yaml").read_text()
    assert "SigLIP vision encoder of the M4SC codec" in card and "text-only ablation" in card


def test_yaml_text_only_run_needs_no_codec(tiny_clevr, tmp_path):
    from simulator.baselines.model_card import write_baseline_card
    from simulator.baselines.train import train_baseline
    from simulator.baselines.train_config import load_train_config

    config = load_train_config(_recipe(tmp_path, tiny_clevr, tmp_path / "missing"), ["architecture.text_only=true"])
    model = load_deepsc_vqa(train_baseline(config))
    assert model.config.text_only and model.config.vision_encoder is None
    assert (tmp_path / "run" / "eval.csv").read_text().splitlines()[1].startswith("deepsc_vqa,vqa,none,inf,")
    assert "# DeepSC-VQA (Xie et al., IEEE JSAC 2022), text-only ablation" in \
        write_baseline_card(config, "python -m simulator train t.yaml").read_text()


@pytest.mark.parametrize("override, message", [
    (["vision_encoder.checkpoint=/nowhere/stage0_vision/final"],
     "run `python -m simulator train scenarios/train_tiny.yaml --stage vision` first"),
    (["image_size=96"], "takes 64 px images, but image_size is 96: set image_size: 64"),
])
def test_a_missing_or_mismatched_encoder_is_a_one_line_error(codec_folder, tmp_path, override, message):
    from simulator.baselines.train import train_baseline
    from simulator.baselines.train_config import load_train_config

    config = load_train_config(_recipe(tmp_path, tmp_path / "no-data", codec_folder), override)
    with pytest.raises(UserError) as err:
        train_baseline(config)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_shipped_recipe_starts_from_the_m4sc_stage0_encoder():
    from simulator.baselines.train_config import load_train_config

    config = load_train_config(Path(__file__).resolve().parents[2] / "scenarios" / "train_deepsc_vqa.yaml")
    assert config.clevr_dir == "data/clevr_small" and config.image_size == 96
    assert config.vision_encoder.model_dump() == {"checkpoint": "runs/train_tiny/stage0_vision/final",
                                                  "freeze": True, "tokens": "objects", "attributes": True}
    assert config.architecture["grounding_weight"] > 0


def test_grounding_loss_asks_whether_each_attribute_word_names_each_sent_objects_value(codec, tokenizer):
    from simulator.data.attributes import COLORS, MATERIALS, SHAPES, SIZES

    spec = vision_encoder_from_codec(codec, IMAGE_SIZE, "objects", True)
    torch.manual_seed(0)
    model = DeepSCVQA(_config(tokenizer, vision_encoder=spec, grounding_weight=0.5), tokenizer)
    table = model.word_attributes
    expected_words = {"color": (-1, -1), "red": (0, COLORS.index("red")), "cube": (1, SHAPES.index("cube")),
                      "spheres": (1, SHAPES.index("sphere")), "large": (2, SIZES.index("large")),
                      "metal": (3, MATERIALS.index("metal"))}
    for word, pair in expected_words.items():
        assert table[tokenizer.convert_tokens_to_ids(word)].tolist() == list(pair), word

    ids, unit_mask = model.tokenize(QUESTIONS)
    batch, words, d = ids.shape[0], ids.shape[1], model.config.d_model
    generator = torch.Generator().manual_seed(3)
    word_features = torch.randn(batch, words, d, generator=generator)
    object_features = torch.randn(batch, MAX_OBJECTS, d, generator=generator)
    values = torch.stack([torch.randint(0, n - 1, (batch, MAX_OBJECTS), generator=generator) for n in OBJECT_CLASSES], -1)
    object_mask = torch.tensor([[True, True, False], [False, False, False], [True, False, False], [True, True, True]])
    scores, targets = [], []
    for b in range(batch):
        for k in range(MAX_OBJECTS):
            for w in range(words):
                attribute, value = table[ids[b, w]].tolist()
                if object_mask[b, k] and unit_mask[b, w] and attribute >= 0:
                    scores.append(model.grounding_head(object_features[b, k]) @ word_features[b, w] / d ** 0.5)
                    targets.append(float(values[b, k, attribute] == value))
    assert 0 < sum(targets) < len(targets)  # both kinds of pair occur
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.stack(scores), torch.tensor(targets))
    loss = model.grounding_loss(word_features, object_features, ids, unit_mask, values, object_mask)
    assert torch.allclose(loss, expected, atol=1e-6)
    nothing_sent = model.grounding_loss(word_features, object_features, ids, unit_mask, values, object_mask & False)
    assert nothing_sent.item() == 0.0


def test_encode_gives_the_object_heads_values_of_the_sent_objects(codec, tokenizer):
    model = vision_vqa(codec, tokenizer)
    encoder = model.image_encoder.eval()
    features = _features_with_centres({0: [5], 1: [2, 9]}, 2, codec.vision.config.hidden_size)
    encoder.features = lambda images: features
    with torch.no_grad():
        _, real, values = encoder.encode(torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE))
        heads = codec.object_head(features[1, [2, 9]]).split(OBJECT_CLASSES, -1)
    assert real.tolist() == [[True, False, False], [True, True, False]]
    assert values[1, :2].tolist() == torch.stack([part[:, 1:].argmax(-1) for part in heads], -1).tolist()


def test_training_loss_adds_the_weighted_grounding_term(codec, tokenizer, images):
    spec = vision_encoder_from_codec(codec, IMAGE_SIZE, "objects", True)
    ids_mask = None
    losses = {}
    for weight in (0.0, 2.0):
        torch.manual_seed(0)
        model = DeepSCVQA(_config(tokenizer, vision_encoder=spec, grounding_weight=weight), tokenizer)
        model.copy_vision_from(codec)
        ids_mask = model.tokenize(QUESTIONS)
        answer_ids = torch.arange(len(QUESTIONS))
        losses[weight] = model.loss(images, *ids_mask, answer_ids)
        if weight:
            logits = model(images, *ids_mask).logits
            answer_loss = torch.nn.functional.cross_entropy(logits, answer_ids)
            assert torch.allclose(losses[0.0], answer_loss, atol=1e-6)  # the same weights without the head
            assert losses[weight] > answer_loss
            losses[weight].backward()
            assert model.grounding_head.weight.grad.abs().sum() > 0
        else:
            assert not hasattr(model, "grounding_head")
    with pytest.raises(ValueError, match="grounding_weight needs object tokens"):
        _config(tokenizer, vision_encoder=vision_encoder_from_codec(codec, IMAGE_SIZE, "patches"), grounding_weight=1.0)
    text_only = DeepSCVQA(_config(tokenizer, text_only=True, grounding_weight=1.0), tokenizer)  # its ablation
    assert not text_only.config.grounding and not hasattr(text_only, "grounding_head")
    with pytest.raises(ValueError, match="grounding_weight must be a number >= 0"):
        _config(tokenizer, vision_encoder=spec, grounding_weight=-1.0)


@pytest.mark.parametrize("overrides, message", [
    (["architecture.grounding_weight=-0.5"], "grounding_weight must be a number >= 0, got -0.5"),
    (["architecture.grounding_weight=true"], "grounding_weight must be a number >= 0, got True"),
    (["vision_encoder.tokens=patches"], "grounding_weight needs object tokens"),
    (["vision_encoder=null"], "grounding_weight needs object tokens"),
])
def test_the_recipes_grounding_setting_is_checked_in_one_line(overrides, message):
    from simulator.baselines.train_config import load_train_config

    recipe = Path(__file__).resolve().parents[2] / "scenarios" / "train_deepsc_vqa.yaml"
    with pytest.raises(UserError) as err:
        load_train_config(recipe, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)
    # the text-only ablation of the grounded recipe needs neither the encoder nor object tokens
    assert load_train_config(recipe, ["architecture.text_only=true", "vision_encoder.tokens=patches"])
