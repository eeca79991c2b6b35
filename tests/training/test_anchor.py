"""Stage anchor: object tokens pulled towards the LLM's embeddings of the object's words."""

import pytest
import torch

from simulator.data.attributes import ATTRIBUTE_VALUES
from simulator.training.anchor import anchor_loss, anchor_targets, attribute_word_embeddings
from simulator.training.config import TrainConfig
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config


def _anchor_config(tiny_data, out_dir, tokens_per_object=4, steps=2, **anchor):
    data = make_config(tiny_data, out_dir).model_dump()
    data["codec"].update(visual_tokens="objects", max_objects=3, tokens_per_object=tokens_per_object)
    data["stages"] = {"anchor": {"steps": steps, "batch_size": 8, "lr": 1e-2, **anchor}}
    return TrainConfig.model_validate(data)


def _tables(d=5):
    """Attribute tables whose rows say which (attribute, value) they are: row v of attribute a is a*10 + v."""
    return [torch.full((len(ATTRIBUTE_VALUES[name]), d), 0.0) + 10.0 * a + torch.arange(len(ATTRIBUTE_VALUES[name]))[:, None]
            for a, name in enumerate(("color", "shape", "size", "material"))]


def test_targets_are_the_objects_words_in_spoken_order_or_their_mean():
    tables = _tables()
    # one labelled object: colour 3 (purple), shape 2 (cylinder), size 1 (large), material 0 (rubber); +1 each
    labels = torch.tensor([[[4, 3, 2, 1], [0, 0, 0, 0]]])
    four, valid = anchor_targets(labels, tables, 4)
    assert valid.tolist() == [[True, False]]
    # spoken order size, colour, material, shape: rows (size 1), (colour 3), (material 0), (shape 2)
    assert four[0, 0, :, 0].tolist() == [21.0, 3.0, 30.0, 12.0]
    one, _ = anchor_targets(labels, tables, 1)
    assert one.shape == (1, 2, 1, 5) and one[0, 0, 0, 0].item() == pytest.approx((21 + 3 + 30 + 12) / 4)
    with pytest.raises(ValueError, match="1 or 4 tokens per object"):
        anchor_targets(labels, tables, 2)


def test_word_embeddings_are_the_llms_own_rows_for_each_value(tiny_data, tmp_path):
    trainer = Trainer(_anchor_config(tiny_data, tmp_path))
    trainer.prepare()
    model = trainer.fresh_model()
    tables = attribute_word_embeddings(model)
    embed = model.base_llm.get_input_embeddings()
    ids = model.tokenizer.encode(" red", add_special_tokens=False)
    assert torch.allclose(tables[0][ATTRIBUTE_VALUES["color"].index("red")], embed(torch.tensor(ids)).mean(0))
    assert [t.shape[0] for t in tables] == [8, 3, 2, 2]


def test_anchor_stage_trains_only_the_projector_and_brings_tokens_to_their_words(tiny_data, tmp_path):
    from simulator.models.objects import OBJECT_CLASSES

    probe = _anchor_config(tiny_data, tmp_path).codec_config()
    # An object head that finds objects is stage 0's work; here every patch is a slot and the head
    # calls each one an object, so every labelled centre is among the found slots.
    data = _anchor_config(tiny_data, tmp_path, steps=30).model_dump()
    data["codec"]["max_objects"] = probe.num_patches
    trainer = Trainer(TrainConfig.model_validate(data))
    trainer.prepare()
    model = trainer.fresh_model()
    with torch.no_grad():
        model.object_head.weight.zero_()
        model.object_head.bias.zero_()
        for start in torch.tensor((0,) + OBJECT_CLASSES[:-1]).cumsum(0).tolist():
            model.object_head.bias[start] = -10.0
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    labels = trainer.train_data.patch_targets(int(model.vision.config.patch_size))
    pixels = trainer.train_data.images.float() / 127.5 - 1.0
    tables = attribute_word_embeddings(model)
    with torch.no_grad():
        start_loss = float(anchor_loss(model, pixels, labels, tables))
    assert start_loss > 0.5  # random tokens are far from their words
    trained, _ = trainer.run_stage("anchor", model, resume=False)
    changed = {name for name, p in trained.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith("projector.") for name in changed)
    with torch.no_grad():
        end_loss = float(anchor_loss(trained, pixels, labels, tables))
    assert end_loss < 0.8 * start_loss


def test_a_batch_without_a_labelled_object_gives_a_zero_loss_that_still_backpropagates(tiny_data, tmp_path):
    trainer = Trainer(_anchor_config(tiny_data, tmp_path))
    trainer.prepare()
    model = trainer.fresh_model()
    pixels = trainer.train_data.images[:2].float() / 127.5 - 1.0
    labels = torch.zeros(2, model.config.num_patches, 4, dtype=torch.long)  # no object centre anywhere
    loss = anchor_loss(model, pixels, labels, attribute_word_embeddings(model))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()  # a training step on such a batch must not fail


@pytest.mark.parametrize("codec, fragment", [
    ({"visual_tokens": "patches", "tokens_per_object": 1}, "needs codec.visual_tokens 'objects'"),
    ({"visual_tokens": "objects", "tokens_per_object": 2}, "codec.tokens_per_object 1 or 4, not 2"),
])
def test_anchor_stage_refuses_codecs_it_has_no_targets_for(tiny_data, tmp_path, codec, fragment):
    data = _anchor_config(tiny_data, tmp_path).model_dump()
    data["codec"].update(codec)
    with pytest.raises(ValueError, match=fragment):
        TrainConfig.model_validate(data)


def test_training_on_the_validation_seed_is_refused_too(tiny_data, tmp_path):
    data = make_config(tiny_data, tmp_path / "run").model_dump()
    data["data"]["generator_seed"] = 24680
    with pytest.raises(ValueError, match="generator_seed 24680 makes the validation set"):
        TrainConfig.model_validate(data)


def test_training_on_the_test_sets_seed_is_refused_in_one_line(tiny_data, tmp_path, run_cli):
    import yaml

    data = make_config(tiny_data, tmp_path / "run").model_dump()
    data["data"]["generator_seed"] = 12345
    with pytest.raises(ValueError, match="generator_seed 12345 makes the test set"):
        TrainConfig.model_validate(data)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run_cli("train", str(path))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "12345" in result.stderr
    assert not (tmp_path / "run").exists()
