"""Training and evaluation on a user's CLEVR-layout folder that has only images and questions: no
captions, no scene files, no question programs (as a folder a user assembles, or real CLEVR without
its scenes). Each stage falls back once, the model card says so, malformed files still stop the run."""

import json
import logging
import shutil

import pytest
import yaml

from simulator.cli import main as cli
from simulator.errors import UserError
from simulator.training.config import DataConfig
from simulator.training.data import load_task_data
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config

EXPECTED_FALLBACKS = [
    "stage vision: no captions",
    "stage vision: no scene files",
    "stage lm: no captions",
    "stage align: no captions",
    "stage instruct: no caption data",
    "stage joint: no caption data",
]


@pytest.fixture(scope="module")
def bare_clevr(tmp_path_factory):
    """Generated images and questions; captions, scenes, programs and the generator's stats.json removed."""
    from simulator.data.clevr_generator import GeneratorConfig, generate_clevr

    root = tmp_path_factory.mktemp("user-data") / "clevr"
    generate_clevr(root, GeneratorConfig(num_images=12, seed=5, image_size=64, questions_per_image=4))
    shutil.rmtree(root / "captions")
    shutil.rmtree(root / "scenes")
    (root / "stats.json").unlink()
    for path in (root / "questions").glob("*.json"):
        payload = json.loads(path.read_text())
        for question in payload["questions"]:
            del question["program"]
        path.write_text(json.dumps(payload))
    return root


def _config(tiny_data, bare_clevr, out_dir, **stage_overrides):
    config = make_config(tiny_data, out_dir, steps=2, checkpoint_every=100, **stage_overrides)
    return config.model_copy(update={"data": config.data.model_copy(update={"clevr_dir": str(bare_clevr)})})


def test_folder_without_captions_scenes_or_programs_loads(bare_clevr):
    data = load_task_data(DataConfig(clevr_dir=str(bare_clevr), text_dir=None), "train")
    assert data.captions == [] and data.objects is None and data.vqa_referred is None
    assert data.missing == ("captions", "scenes", "programs")
    assert len(data.vqa) > 0 and len(data.images) > 0
    row, question, answer, _ = data.vqa[0]
    assert f"{question} {answer}" in dict(data.image_texts())[row]


def test_every_stage_trains_falls_back_once_and_the_card_says_so(tiny_data, bare_clevr, tmp_path, caplog, capsys):
    config = _config(tiny_data, bare_clevr, tmp_path / "run", vision={"object_weight": 1.0})
    recipe = tmp_path / "train.yaml"
    recipe.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    with caplog.at_level(logging.INFO):
        assert cli(["train", str(recipe)]) == 0
    final = tmp_path / "run" / "final"
    assert (final / "config.json").is_file() and (final / "model.safetensors").is_file()
    for fallback in EXPECTED_FALLBACKS:  # logged at the stage's start, not per step
        assert sum(r.getMessage().startswith(fallback) for r in caplog.records) == 1, fallback

    card = (final / "MODEL_CARD.md").read_text()
    assert f"Own CLEVR-layout folder `{bare_clevr}`" in card
    assert "Missing from the training data: captions, scenes, programs." in card
    assert "- stage vision: no scene files, so the scene-graph loss (object_weight 1) is left out" in card
    report = json.loads((final / "model_card.json").read_text())["data_report"]
    assert report["missing"] == ["captions", "scenes", "programs"] and not report["generated"]
    assert [any(note.startswith(f) for note in report["fallbacks"]) for f in EXPECTED_FALLBACKS] == [True] * 6

    capsys.readouterr()
    assert cli(["eval", "--checkpoint", str(final), "--task", "vqa", "--data", str(bare_clevr), "--split", "val",
                "--num-samples", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["num_samples"] == 4
    assert cli(["eval", "--checkpoint", str(final), "--task", "caption", "--data", str(bare_clevr),
                "--split", "val"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "CLEVR_val_captions.json" in error


def test_grounding_without_programs_is_one_line(tiny_data, bare_clevr, tmp_path):
    trainer = Trainer(_config(tiny_data, bare_clevr, tmp_path, instruct={"grounding_weight": 1.0}))
    trainer.prepare()
    with pytest.raises(UserError, match="needs question programs and scene files") as caught:
        trainer.run_stage("instruct", trainer.fresh_model(), resume=False)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "not valid JSON"),
    ('{"captions": [{"image_index": 0, "image_filename": "CLEVR_train_000000.png"}]}', "lacks field 'captions'"),
    ('{"captions": [{"image_index": 0, "image_filename": "CLEVR_train_000000.png", "captions": []}]}',
     "must be a non-empty list of strings"),
])
def test_malformed_captions_are_still_one_line(bare_clevr, tmp_path, content, fragment):
    folder = tmp_path / "clevr"
    shutil.copytree(bare_clevr, folder)
    (folder / "captions").mkdir()
    (folder / "captions" / "CLEVR_train_captions.json").write_text(content)
    with pytest.raises(UserError, match=fragment) as caught:
        load_task_data(DataConfig(clevr_dir=str(folder), text_dir=None), "train")
    assert "\n" not in str(caught.value)


def test_real_clevr_frame_scales_scene_coordinates_per_axis(tmp_path):
    """Real CLEVR: 480 x 320 images, scene files, no captions; the images are squashed to 64 x 64,
    so x scales by 64/480 and y by 64/320."""
    from PIL import Image

    root = tmp_path / "CLEVR_v1.0"
    (root / "images" / "train").mkdir(parents=True)
    Image.new("RGB", (480, 320), "gray").save(root / "images" / "train" / "CLEVR_train_000000.png")
    (root / "questions").mkdir()
    (root / "questions" / "CLEVR_train_questions.json").write_text(json.dumps({"questions": [
        {"image_index": 0, "image_filename": "CLEVR_train_000000.png", "question": "Is there a cube?",
         "answer": "yes", "question_family_index": 3}]}))
    (root / "scenes").mkdir()
    (root / "scenes" / "CLEVR_train_scenes.json").write_text(json.dumps({"scenes": [
        {"image_index": 0, "image_filename": "CLEVR_train_000000.png", "objects": [
            {"pixel_coords": [240, 160, 11.5], "color": "red", "shape": "cube", "size": "large", "material": "metal"}]}]}))
    data = load_task_data(DataConfig(clevr_dir=str(root), text_dir=None), "train", referred=False)
    assert data.missing == ("captions", "programs") and data.captions == []
    x, y, depth, *_ = data.objects[0][0]
    assert (x, y, depth) == pytest.approx((32.0, 32.0, 11.5))


def test_eval_on_a_split_without_answers_is_one_line(bare_clevr, tmp_path):
    """Real CLEVR's test questions have no answers: nothing to score against."""
    from simulator.evaluation import load_eval_samples

    folder = tmp_path / "clevr"
    shutil.copytree(bare_clevr, folder)
    path = folder / "questions" / "CLEVR_test_questions.json"
    payload = json.loads(path.read_text())
    for question in payload["questions"]:
        del question["answer"]
    path.write_text(json.dumps(payload))
    with pytest.raises(UserError, match="no answers") as caught:
        load_eval_samples("vqa", 4, folder, "test")
    assert "\n" not in str(caught.value)


def test_own_folder_without_questions_is_one_line_not_overwritten(bare_clevr, tmp_path):
    from simulator.training.data import ensure_data

    folder = tmp_path / "clevr"
    shutil.copytree(bare_clevr, folder)
    (folder / "questions" / "CLEVR_train_questions.json").unlink()
    with pytest.raises(UserError, match="CLEVR_train_questions.json") as caught:
        ensure_data(DataConfig(clevr_dir=str(folder), text_dir=None))
    assert "\n" not in str(caught.value) and not (folder / "stats.json").exists()
