"""Object-level visual tokens (``codec.visual_tokens = "objects"``): the tokens are exactly the
patches the object-centre head marks, in patch order, with their positions; empty slots are masked."""

import pytest
import torch

from simulator.models.mllm import M4SCModel
from simulator.models.objects import OBJECT_CLASSES
from tests.models.conftest import tiny_config

PROMPTS = ["is there a red cube ?", "how many spheres are there ?", "describe the image .", "yes"]
NUM_PATCHES = 16  # 32 px / 8


@pytest.fixture
def object_model(tokenizer):
    torch.manual_seed(0)
    return M4SCModel(tiny_config(visual_tokens="objects", max_objects=3), tokenizer).eval()


def _mark_centres(model, features: torch.Tensor, centres: dict[int, list[int]], strengths=None) -> None:
    """Make the head read feature 0 as "object centre here" and put that feature on ``centres[row]``."""
    head = model.object_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        start = 0
        for width in OBJECT_CLASSES:  # "no object" of every attribute: +4 by default, -4 where feature 0 is 1
            head.bias[start] = 4.0
            head.weight[start, 0] = -8.0
            start += width
        features[..., 0] = 0.0
        for row, patches in centres.items():
            for k, patch in enumerate(patches):
                features[row, patch, 0] = 1.0 if strengths is None else strengths[k]


def test_detected_patches_are_exactly_the_marked_centres_in_patch_order(object_model):
    features = torch.randn(3, NUM_PATCHES, object_model.vision.config.hidden_size)
    _mark_centres(object_model, features, {0: [9, 2], 1: [], 2: [15, 0, 7]})
    patches, found = object_model.detect_objects(features)
    assert found.tolist() == [[True, True, False], [False, False, False], [True, True, True]]
    assert patches[0, :2].tolist() == [2, 9] and patches[2].tolist() == [0, 7, 15]


def test_more_centres_than_slots_keep_the_most_certain(object_model):
    features = torch.randn(1, NUM_PATCHES, object_model.vision.config.hidden_size)
    _mark_centres(object_model, features, {0: [1, 4, 8, 12]}, strengths=[0.7, 1.0, 0.8, 0.9])
    patches, found = object_model.detect_objects(features)
    assert found.all() and patches[0].tolist() == [4, 8, 12]  # patch 1 is the least certain


def test_object_tokens_are_projected_features_plus_positions_and_empty_slots_are_masked(object_model):
    model = object_model
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        features = model.vision(pixel_values=pixels).last_hidden_state
    _mark_centres(model, features, {0: [5], 1: [3, 10]})
    detected = model.detect_objects(features)
    model.vision.forward = lambda pixel_values: type("Out", (), {"last_hidden_state": features})()
    tokens, real = model.image_tokens(pixels)
    patches, found = detected
    assert torch.equal(real, found) and real.sum().item() == 3
    with torch.no_grad():
        expected = model.projector(features[1, [3, 10]]) + model.object_position(torch.tensor([3, 10]))
    assert torch.allclose(tokens[1, :2], expected, atol=1e-6)
    assert torch.all(tokens[~real] == 0)
    ids, mask = model.tokenize(PROMPTS[:2])
    _, full_mask, _ = model.build_inputs(ids, mask, pixels)
    assert full_mask[:, :3].tolist() == [[1, 0, 0], [1, 1, 0]]  # only found objects are attended to


def test_attribute_embedding_adds_the_heads_probabilities_of_each_found_object(tokenizer):
    torch.manual_seed(0)
    model = M4SCModel(tiny_config(visual_tokens="objects", max_objects=3, object_attributes=True), tokenizer).eval()
    assert torch.all(model.object_attributes.weight == 0)  # a codec gains it without changing its outputs
    pixels = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        features = model.vision(pixel_values=pixels).last_hidden_state
        model.object_attributes.weight.normal_()
    _mark_centres(model, features, {0: [6]})
    model.vision.forward = lambda pixel_values: type("Out", (), {"last_hidden_state": features})()
    tokens, real = model.image_tokens(pixels)
    assert real.tolist() == [[True, False, False]]
    with torch.no_grad():
        logits = model.object_head(features[0, 6]).split(OBJECT_CLASSES)
        probabilities = torch.cat([part.softmax(-1) for part in logits])
        expected = (model.projector(features[0, [6]]) + model.object_position(torch.tensor([6]))
                    + probabilities @ model.object_attributes.weight.T)
    assert torch.allclose(tokens[0, :1], expected, atol=1e-5)
    assert torch.all(tokens[~real] == 0)


def test_several_tokens_per_object_split_the_projection_and_share_the_position(tokenizer):
    """``tokens_per_object = 4``: object ``i``'s tokens ``4i..4i+3`` are the four ``d``-wide parts of its
    projection, each plus the object's position embedding; an empty slot's four tokens are masked."""
    torch.manual_seed(0)
    model = M4SCModel(tiny_config(visual_tokens="objects", max_objects=3, tokens_per_object=4), tokenizer).eval()
    d = model.config.hidden_size
    assert model.config.num_image_tokens == 12 and model.object_words(
        torch.zeros(1, 1, model.vision.config.hidden_size)).shape[-1] == 4 * d
    pixels = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        features = model.vision(pixel_values=pixels).last_hidden_state
    _mark_centres(model, features, {0: [2, 9]})
    model.vision.forward = lambda pixel_values: type("Out", (), {"last_hidden_state": features})()
    tokens, real = model.image_tokens(pixels)
    assert tokens.shape == (1, 12, d)
    assert real.tolist() == [[True] * 8 + [False] * 4]
    with torch.no_grad():
        words = model.projector(features[0, [2, 9]]).view(2, 4, d)
        expected = words + model.object_position(torch.tensor([2, 9])).unsqueeze(1)
    assert torch.allclose(tokens[0, :8], expected.reshape(8, d), atol=1e-6)
    assert torch.all(tokens[0, 8:] == 0)
    ids, mask = model.tokenize(PROMPTS[:1])
    embeds, full_mask, _ = model.build_inputs(ids, mask, pixels)
    assert embeds.shape[1] == 12 + ids.shape[1] and full_mask[0, :12].tolist() == [1] * 8 + [0] * 4


def test_one_token_per_object_is_the_codec_it_was_before(object_model):
    """The default ``tokens_per_object = 1`` computes exactly the tokens of a codec saved before it existed."""
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        features = object_model.vision(pixel_values=pixels).last_hidden_state
    _mark_centres(object_model, features, {0: [5], 1: [3, 10]})
    with torch.no_grad():
        tokens, real = object_model.image_tokens(pixels, features)
        picked, patches, found = object_model.object_features(features)
        before = (object_model.projector(picked) + object_model.object_position(patches)) * found.unsqueeze(-1)
    assert torch.equal(real, found)
    assert torch.equal(tokens, before), (tokens - before).abs().max()


def test_object_codec_generates_and_round_trips_through_a_checkpoint(object_model, tmp_path):
    from simulator.models.checkpoint import load_codec, save_codec

    ids, mask = object_model.tokenize(PROMPTS)
    pixels = torch.rand(4, 3, 32, 32) * 2 - 1
    has_image = torch.tensor([True, True, True, False])
    cached = object_model.generate(ids, mask, pixels, has_image, max_new_tokens=4, stop_at_eos=False)
    full = object_model.generate(ids, mask, pixels, has_image, max_new_tokens=4, use_cache=False, stop_at_eos=False)
    assert torch.equal(cached.tokens, full.tokens)
    save_codec(object_model, tmp_path / "codec")
    loaded = load_codec(tmp_path / "codec", "cpu")
    assert loaded.config.visual_tokens == "objects" and loaded.config.num_image_tokens == 3
    again = loaded.generate(ids, mask, pixels, has_image, max_new_tokens=4, stop_at_eos=False)
    assert torch.equal(again.tokens, cached.tokens)


def test_object_parts_train_with_the_vision_encoder_and_the_projector(object_model):
    from simulator.training.stages import set_trainable

    set_trainable(object_model, ["vision"])
    assert object_model.object_head.weight.requires_grad and not object_model.object_position.weight.requires_grad
    set_trainable(object_model, ["projector"])
    assert object_model.object_position.weight.requires_grad and not object_model.object_head.weight.requires_grad


def test_attribute_embedding_trains_with_the_projector_and_round_trips(tokenizer, tmp_path):
    from simulator.models.checkpoint import load_codec, save_codec
    from simulator.training.stages import set_trainable

    model = M4SCModel(tiny_config(visual_tokens="objects", max_objects=3, object_attributes=True), tokenizer)
    set_trainable(model, ["projector"])
    assert model.object_attributes.weight.requires_grad
    with torch.no_grad():
        model.object_attributes.weight.normal_()
    save_codec(model, tmp_path / "codec")
    loaded = load_codec(tmp_path / "codec", "cpu")
    assert loaded.config.object_attributes and torch.equal(loaded.object_attributes.weight, model.object_attributes.weight)


@pytest.mark.parametrize("bad, message", [({"visual_tokens": "regions"}, "visual_tokens must be one of patches, objects"),
                                          ({"max_objects": 0}, "max_objects must be an integer >= 1"),
                                          ({"max_objects": True}, "max_objects must be an integer >= 1"),
                                          ({"object_attributes": "yes", "visual_tokens": "objects"},
                                           "object_attributes must be true or false"),
                                          ({"object_attributes": True}, "object_attributes needs visual_tokens: objects"),
                                          ({"tokens_per_object": 0, "visual_tokens": "objects"},
                                           "tokens_per_object must be an integer >= 1"),
                                          ({"tokens_per_object": 4}, "tokens_per_object > 1 needs visual_tokens: objects")])
def test_bad_object_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**bad)
