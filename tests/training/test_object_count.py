"""Stage 2's object-count grounding for object tokens: its labels, the columns it reads, that
training with it teaches the count, and its one-line errors."""

import pytest
import torch
from pydantic import ValidationError

from simulator.models.objects import object_values, word_attribute_table
from simulator.training.config import TrainConfig
from simulator.training.stages import (instruction_loss, object_count_head, object_count_loss, object_count_targets,
                                      pixel_values_of)
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config


def _objects_config(tiny_data, out_dir, steps=2, checkpoint_every=1, **stages) -> TrainConfig:
    payload = make_config(tiny_data, out_dir, steps, checkpoint_every).model_dump()
    payload["codec"] = {**payload["codec"], "visual_tokens": "objects", "max_objects": 4}
    for name, overrides in stages.items():
        payload["stages"][name].update(overrides)
    return TrainConfig.model_validate(payload)


def _batch(trainer, model, tasks):
    generator = torch.Generator().manual_seed(2)
    return trainer.collator(model)([trainer.train_data.sample(task, generator) for task in tasks])


def test_targets_count_the_detected_objects_with_each_prompt_words_value(tiny_data, tmp_path):
    trainer = Trainer(_objects_config(tiny_data, tmp_path))
    trainer.prepare()
    model = trainer.fresh_model().eval()
    table = word_attribute_table(model.tokenizer, len(model.tokenizer))
    batch = _batch(trainer, model, ["vqa"] * 8 + ["caption", "classify"])
    pixel_values, has_image = pixel_values_of(batch, "cpu")
    with torch.no_grad():
        features = model.vision(pixel_values=pixel_values).last_hidden_state
        rows, columns, counts = object_count_targets(model, table, batch, features, has_image)
        embeds, _, _ = model.build_inputs(batch["input_ids"], batch["attention_mask"], pixel_values, has_image,
                                          batch["prompt_lengths"])
        patches, found = model.detect_objects(features)
    slots = found.shape[1]
    expected = {}
    for b in range(len(has_image)):
        if not has_image[b]:
            continue
        objects = [object_values(model.object_head, features[b, int(p)]).tolist()
                   for p, real in zip(patches[b], found[b]) if real]
        for t in range(int(batch["prompt_lengths"][b])):
            attribute, value = table[batch["input_ids"][b, t]].tolist()
            if attribute >= 0:
                expected[(b, t + slots)] = sum(obj[attribute] == value for obj in objects)
    got = {(int(r), int(c)): int(n) for r, c, n in zip(rows, columns, counts)}
    assert got == expected
    assert len(expected) >= 4 and set(rows.tolist()) <= set(range(8))  # the caption and the text name nothing
    text_embeddings = model.base_llm.get_input_embeddings()(batch["input_ids"])
    for (b, column) in got:  # each column holds its word in the spliced sequence
        assert torch.equal(embeds[b, column], text_embeddings[b, column - slots])


def test_loss_is_the_count_heads_cross_entropy_and_zero_without_words():
    hidden = torch.randn(2, 5, 3, requires_grad=True)
    head = torch.nn.Linear(3, 4)
    rows, columns, counts = torch.tensor([0, 1]), torch.tensor([4, 2]), torch.tensor([3, 0])
    logits = head(torch.stack([hidden[0, 4], hidden[1, 2]]))
    expected = -(logits.log_softmax(-1)[0, 3] + logits.log_softmax(-1)[1, 0]) / 2
    assert object_count_loss(hidden, head, rows, columns, counts).item() == pytest.approx(expected.item(), rel=1e-6)
    none = object_count_loss(hidden, head, rows[:0], columns[:0], counts[:0])
    assert none.item() == 0.0 and none.requires_grad


def test_the_count_loss_runs_the_vision_encoder_once_and_matches_two_passes(tiny_data, tmp_path):
    trainer = Trainer(_objects_config(tiny_data, tmp_path))
    trainer.prepare()
    model = trainer.fresh_model().eval()
    head, words = object_count_head(model, trainer.config.seed)
    batch = _batch(trainer, model, ["vqa"] * 6 + ["classify"])
    passes = []
    hook = model.vision.register_forward_hook(lambda *_: passes.append(1))
    with torch.no_grad():
        loss = instruction_loss(model, batch, count_head=head, count_weight=1.0, count_layer=1, word_attributes=words)
    hook.remove()
    assert len(passes) == 1
    pixel_values, has_image = pixel_values_of(batch, "cpu")
    with torch.no_grad():  # the same loss from separate passes: the answers' and the labels' own
        output = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"], pixel_values=pixel_values,
                       has_image=has_image, prompt_lengths=batch["prompt_lengths"], output_hidden_states=True)
        targets = object_count_targets(model, words, batch,
                                       model.vision(pixel_values=pixel_values).last_hidden_state, has_image)
        expected = output.loss + object_count_loss(output.hidden_states[1], head, *targets)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_training_with_the_count_loss_teaches_the_count(tiny_data, tmp_path):
    config = _objects_config(tiny_data, tmp_path, steps=60, checkpoint_every=100,
                             instruct={"lr": 3e-3, "count_weight": 5.0, "count_layer": 1, "tasks": {"vqa": 1.0},
                                       "batch_size": 16, "trainable": ["projector", "lora", "llm_base"]})
    trainer = Trainer(config)
    trainer.prepare()
    model = trainer.fresh_model()
    batch = _batch(trainer, model, ["vqa"] * 32)

    head, words = object_count_head(model, config.seed)

    def count_loss(model, head) -> float:
        model.eval()
        with torch.no_grad():
            return (instruction_loss(model, batch, count_head=head, count_weight=1.0, count_layer=1,
                                     word_attributes=words) - instruction_loss(model, batch)).item()

    before = count_loss(model, head)
    trained, _ = trainer.run_stage("instruct", model, resume=False)
    after = count_loss(trained, trainer._count_head)
    assert after < 0.6 * before, (before, after)


def test_a_count_layer_beyond_the_llm_is_refused_in_one_line(tiny_data, tmp_path):
    with pytest.raises(ValidationError, match=r"count_layer 2 must lie in 1\.\.1"):
        _objects_config(tiny_data, tmp_path, instruct={"count_weight": 1.0, "count_layer": 2})


@pytest.mark.parametrize("setting", [{"count_weight": 1.0}, {"count_layer": 1}])
def test_count_settings_outside_stage_2_are_refused(tiny_data, tmp_path, setting):
    with pytest.raises(ValidationError, match="instruct-stage settings"):
        _objects_config(tiny_data, tmp_path, joint=setting)


def test_the_count_loss_needs_object_tokens(tiny_data, tmp_path):
    with pytest.raises(ValidationError, match="stage 'instruct': count_weight > 0 .*visual_tokens 'objects'"):
        make_config(tiny_data, tmp_path, instruct={"count_weight": 1.0, "count_layer": 1})
