"""Stage 2's attention grounding: the patches a question looks at, the columns the loss reads, the
loss itself, and that training with it moves attention onto those patches."""

import json
import math

import pytest
import torch
from pydantic import ValidationError

from simulator.data.programs import referred_objects
from simulator.errors import UserError
from simulator.training.config import DataConfig, TrainConfig
from simulator.training.data import load_task_data
from simulator.training.stages import grounding_columns, grounding_loss
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config


def _with_codec(config: TrainConfig, **codec) -> TrainConfig:
    payload = config.model_dump()
    payload["codec"] = {**payload["codec"], **codec}
    return TrainConfig.model_validate(payload)


def test_targets_are_the_centre_patches_of_the_objects_the_program_looks_at(tiny_data):
    data = load_task_data(DataConfig(clevr_dir=str(tiny_data / "clevr"), text_dir=str(tiny_data / "text")), "train")
    scenes = {s["image_filename"]: s for s in
              json.loads((tiny_data / "clevr" / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"]}
    questions = json.loads((tiny_data / "clevr" / "questions" / "CLEVR_train_questions.json").read_text())["questions"]
    filenames = sorted(scenes)
    grid = data.images.shape[-1] // 8
    generator = torch.Generator().manual_seed(0)
    examples = [data.sample(task, generator) for task in ("vqa",) * 30 + ("caption", "classify")]
    targets = data.grounding_targets(examples, patch_size=8)
    assert targets.shape == (32, grid * grid)
    assert targets[30:].sum() == 0  # captions and texts look at nothing in particular
    for row, example in zip(targets[:30], examples[:30]):
        question = next(q for q in questions if q["question"] == example["input_text"]
                        and q["image_filename"] == filenames[example["image_row"]])
        scene = scenes[question["image_filename"]]
        expected = {min(int(o["pixel_coords"][1]) // 8, grid - 1) * grid + min(int(o["pixel_coords"][0]) // 8, grid - 1)
                    for o in (scene["objects"][k] for k in referred_objects(question["program"], scene))}
        assert set(row.nonzero().flatten().tolist()) == expected, example["input_text"]
    assert (targets[:30].sum(-1) > 0).sum() >= 20


@pytest.mark.parametrize("image_position", ["before_prompt", "after_prompt"])
def test_columns_point_at_the_visual_tokens_and_the_first_answer_prediction(tiny_data, tmp_path, image_position):
    trainer = Trainer(_with_codec(make_config(tiny_data, tmp_path), image_position=image_position))
    trainer.prepare()
    model = trainer.fresh_model().eval()
    generator = torch.Generator().manual_seed(1)
    examples = [trainer.train_data.sample("vqa", generator) for _ in range(6)]
    batch = trainer.collator(model)(examples)
    pixels = batch["images"].float() / 127.5 - 1.0
    ids, mask, lengths = batch["input_ids"], batch["attention_mask"], batch["prompt_lengths"]
    with torch.no_grad():
        embeds, _, _ = model.build_inputs(ids, mask, pixels, batch["has_image"], lengths)
        visual = model.encode_images(pixels)
    labels = model.expand_labels(batch["labels"], embeds.shape[1], ids, batch["has_image"], lengths)
    image_start, answer_from = grounding_columns(model, batch, visual.shape[1])
    for b, example in enumerate(examples):
        start = int(image_start[b])
        assert torch.equal(embeds[b, start:start + visual.shape[1]], visual[b])
        first_answer = trainer.collator(model).encode_example(example)[1][0]
        assert labels[b, answer_from[b] + 1] == first_answer       # what the column's output must predict
        assert (labels[b, : answer_from[b] + 1] == -100).all()     # nothing before it is a target


def test_loss_is_minus_log_attention_mass_on_the_targets():
    attention = torch.full((3, 9, 9), 1.0 / 9)
    attention[1, 8] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.6, 0.2, 0.1, 0.1])
    targets = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])  # row 2 looks at nothing: left out
    image_start, answer_from = torch.tensor([0, 5, 0]), torch.tensor([8, 8, 8])
    loss = grounding_loss([attention], targets, image_start, answer_from)
    expected = (-math.log(1 / 9 + 1e-6) - math.log(0.8 + 1e-6)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    other_head = attention.clone()
    other_head[1, 8] = torch.tensor([0.4, 0.4, 0.0, 0.0, 0.0, 0.1, 0.1, 0.0, 0.0])
    two_heads = grounding_loss([attention, other_head], targets, image_start, answer_from)
    other = (-math.log(1 / 9 + 1e-6) - math.log(0.2 + 1e-6)) / 2
    assert two_heads.item() == pytest.approx((expected + other) / 2, rel=1e-6)
    nothing = grounding_loss([attention.requires_grad_()], torch.zeros(3, 4), image_start, answer_from)
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_training_with_grounding_moves_attention_onto_the_referred_objects(tiny_data, tmp_path):
    llm = {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
           "num_key_value_heads": 1, "head_dim": 16, "query_pre_attn_scalar": 16}
    config = make_config(tiny_data, tmp_path, steps=40, checkpoint_every=100,
                         instruct={"lr": 1e-2, "grounding_weight": 5.0, "tasks": {"vqa": 1.0}})
    trainer = Trainer(_with_codec(config, llm=llm, vision={"num_hidden_layers": 1, "hidden_size": 32,
                                                           "intermediate_size": 64, "num_attention_heads": 2,
                                                           "patch_size": 8}))
    trainer.prepare()
    model = trainer.fresh_model()
    generator = torch.Generator().manual_seed(5)
    examples = [trainer.train_data.sample("vqa", generator) for _ in range(32)]
    batch = trainer.collator(model)(examples)
    batch["grounding"] = trainer.train_data.grounding_targets(examples, patch_size=8)

    def mass_on_targets(model) -> float:
        from simulator.training.stages import instruction_loss

        model.eval()
        with torch.no_grad():
            total = instruction_loss(model, batch, grounding_weight=1.0)
            plain = instruction_loss(model, batch)
        return math.exp(-(total - plain).item())  # geometric mean of the mass over rows

    before = mass_on_targets(model)
    trained, _ = trainer.run_stage("instruct", model, resume=False)
    after = mass_on_targets(trained)
    assert after > 3 * before, (before, after)


@pytest.mark.parametrize("stages, fragment", [
    ({"joint": {"grounding_weight": 1.0}}, "instruct-stage settings"),
    ({"instruct": {"grounding_weight": 1.0, "grounding_layers": [7]}}, "must lie in 0..0"),
    ({"instruct": {"grounding_weight": 1.0, "grounding_layers": []}}, "at least 1"),
])
def test_bad_grounding_settings_are_refused(tiny_data, tmp_path, stages, fragment):
    with pytest.raises(ValidationError, match=fragment):
        make_config(tiny_data, tmp_path, **stages)


@pytest.mark.parametrize("codec, fragment", [({"ignore_images": True}, "codec.ignore_images is set"),
                                              ({"visual_tokens": "objects"}, "attention on patches")])
def test_grounding_without_patch_tokens_is_refused_when_the_config_loads(tiny_data, tmp_path, codec, fragment):
    config = make_config(tiny_data, tmp_path, instruct={"grounding_weight": 1.0})
    with pytest.raises(ValidationError, match=f"stage 'instruct': grounding_weight > 0 .*{fragment}"):
        _with_codec(config, **codec)


def test_grounding_a_model_without_visual_tokens_is_refused_when_stage_2_starts(tiny_data, tmp_path):
    trainer = Trainer(make_config(tiny_data, tmp_path, instruct={"grounding_weight": 1.0}))
    trainer.prepare()
    model = trainer.fresh_model()
    model.config.ignore_images = True  # as a stage-1 checkpoint made with another codec setting would be
    with pytest.raises(UserError, match="^stage instruct: grounding_weight > 0 needs the visual tokens"):
        trainer.run_stage("instruct", model, resume=False)


def test_programs_run_only_for_a_grounded_recipe(tiny_data, tmp_path):
    config = DataConfig(clevr_dir=str(tiny_data / "clevr"), text_dir=str(tiny_data / "text"))
    assert len(load_task_data(config, "train").vqa_referred) == len(load_task_data(config, "train").vqa)
    assert load_task_data(config, "train", referred=False).vqa_referred is None
    plain = Trainer(make_config(tiny_data, tmp_path / "plain"))
    plain.prepare()
    grounded = Trainer(make_config(tiny_data, tmp_path / "grounded", instruct={"grounding_weight": 0.5}))
    grounded.prepare()
    assert plain.train_data.vqa_referred is None and grounded.train_data.vqa_referred is not None
