"""CLEVR-like generator: determinism, CLEVR field names, program re-execution, splits, balance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from simulator.data.clevr_generator import GeneratorConfig, generate_clevr, split_sizes
from simulator.data.programs import execute_program, format_answer
from simulator.data.questions import FAMILIES

QUESTION_FIELDS = {"image_index", "image_filename", "question", "answer", "program", "question_family_index", "split", "question_index"}
SCENE_FIELDS = {"image_index", "image_filename", "split", "objects", "relationships", "directions"}
OBJECT_FIELDS = {"shape", "color", "size", "material", "3d_coords", "pixel_coords", "rotation"}
SPLITS = ("train", "val", "test")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(root: Path, kind: str, split: str) -> list[dict]:
    return json.loads((root / kind / f"CLEVR_{split}_{kind}.json").read_text())[kind]


def test_same_seed_gives_identical_files_for_any_worker_count(tmp_path, generated_clevr):
    config = GeneratorConfig(num_images=20, seed=3, workers=2)
    generate_clevr(tmp_path / "again", config)
    assert _files(tmp_path / "again") == _files(generated_clevr)


def test_other_seed_gives_other_images(tmp_path, generated_clevr):
    generate_clevr(tmp_path / "other", GeneratorConfig(num_images=6, seed=4))
    a = (generated_clevr / "images/train/CLEVR_train_000000.png").read_bytes()
    assert (tmp_path / "other/images/train/CLEVR_train_000000.png").read_bytes() != a


def test_image_depends_only_on_seed_split_and_index(tmp_path, generated_clevr):
    generate_clevr(tmp_path / "small", GeneratorConfig(num_images=5, seed=3, split_fractions=(0.6, 0.2, 0.2)))
    for name in ("train/CLEVR_train_000002.png", "val/CLEVR_val_000000.png", "test/CLEVR_test_000000.png"):
        assert (tmp_path / "small/images" / name).read_bytes() == (generated_clevr / "images" / name).read_bytes()


def test_layout_and_clevr_field_names(generated_clevr):
    sizes = split_sizes(20, (0.8, 0.1, 0.1))
    for split in SPLITS:
        images = sorted((generated_clevr / "images" / split).glob("*.png"))
        assert [p.name for p in images] == [f"CLEVR_{split}_{i:06d}.png" for i in range(sizes[split])]
        with Image.open(images[0]) as img:
            assert img.size == (64, 64) and img.mode == "RGB"
        scenes = _load(generated_clevr, "scenes", split)
        questions = _load(generated_clevr, "questions", split)
        assert len(scenes) == sizes[split] and questions
        for scene in scenes:
            assert set(scene) == SCENE_FIELDS and scene["split"] == split
            assert 3 <= len(scene["objects"]) <= 10
            assert all(set(obj) == OBJECT_FIELDS for obj in scene["objects"])
            assert set(scene["relationships"]) == {"left", "right", "front", "behind"}
        for k, q in enumerate(questions):
            assert set(q) == QUESTION_FIELDS and q["question_index"] == k and q["split"] == split
            assert all(set(node) == {"inputs", "function", "value_inputs"} for node in q["program"])
            assert len(q["answer"].split()) == 1
        captions = json.loads((generated_clevr / f"captions/CLEVR_{split}_captions.json").read_text())["captions"]
        assert len(captions) == sizes[split] and all(len(c["captions"]) >= 3 for c in captions)


def test_every_answer_reexecutes(generated_clevr):
    for split in SPLITS:
        scenes = {s["image_index"]: s for s in _load(generated_clevr, "scenes", split)}
        for q in _load(generated_clevr, "questions", split):
            assert format_answer(execute_program(q["program"], scenes[q["image_index"]])) == q["answer"], q["question"]


def test_splits_have_disjoint_images(generated_clevr):
    seen: dict[str, str] = {}
    for split in SPLITS:
        for scene in _load(generated_clevr, "scenes", split):
            key = json.dumps(scene["objects"], sort_keys=True)
            assert key not in seen, f"{split} repeats a {seen.get(key)} scene"
            seen[key] = split
    digests = [p.read_bytes() for p in (generated_clevr / "images").rglob("*.png")]
    assert len(set(digests)) == len(digests)


def test_relationships_are_consistent(generated_clevr):
    for scene in _load(generated_clevr, "scenes", "train"):
        rel, n = scene["relationships"], len(scene["objects"])
        for i in range(n):
            assert sorted(rel["left"][i] + rel["right"][i]) == [j for j in range(n) if j != i]
            assert sorted(rel["front"][i] + rel["behind"][i]) == [j for j in range(n) if j != i]
            for j in rel["left"][i]:
                assert i in rel["right"][j]


def test_answers_are_balanced(tmp_path_factory):
    root = tmp_path_factory.mktemp("balance")
    stats = generate_clevr(root, GeneratorConfig(num_images=60, seed=11, split_fractions=(0.0, 0.0, 1.0), workers=2))
    test = stats["splits"]["test"]
    assert test["num_questions"] >= 500
    assert test["majority_accuracy"] <= 0.35
    assert set(test["families"]) == {f.name for f in FAMILIES}
    for name, family in test["families"].items():
        chance = 1.0 / len(family["answers"])
        assert family["majority_accuracy"] <= chance + 0.2, name
    assert json.loads((root / "stats.json").read_text()) == json.loads(json.dumps(stats))


@pytest.mark.parametrize("bad", [dict(num_images=0), dict(num_images=5, image_size=50), dict(num_images=5, split_fractions=(0.5, 0.5, 0.5))])
def test_bad_settings_are_user_errors(tmp_path, bad):
    from simulator.errors import UserError

    with pytest.raises(UserError):
        generate_clevr(tmp_path, GeneratorConfig(**bad))


@pytest.mark.parametrize("preset", ["clevr", "clevr_small"])
def test_presets_give_their_documented_statistics(tmp_path, preset):
    from simulator.data.clevr_generator import PRESETS

    settings = PRESETS[preset]
    stats = generate_clevr(tmp_path, GeneratorConfig.from_preset(preset, 40, seed=5, split_fractions=(0.0, 0.0, 1.0)))
    assert stats["preset"] == preset and json.loads((tmp_path / "stats.json").read_text())["preset"] == preset
    scenes = _load(tmp_path, "scenes", "test")
    counts = [len(scene["objects"]) for scene in scenes]
    assert settings["min_objects"] <= min(counts) and max(counts) <= settings["max_objects"]
    assert len(set(counts)) > 1  # the range is drawn from, not pinned to one end
    with Image.open(tmp_path / "images" / "test" / scenes[0]["image_filename"]) as image:
        assert image.size == (settings["image_size"], settings["image_size"])
    assert set(stats["splits"]["test"]["families"]) == {f.name for f in FAMILIES}  # every question family


def test_small_preset_keeps_the_answers_balanced(tmp_path):
    stats = generate_clevr(tmp_path, GeneratorConfig.from_preset("clevr_small", 60, seed=11, split_fractions=(0.0, 0.0, 1.0)))
    test = stats["splits"]["test"]
    assert test["majority_accuracy"] <= 0.35
    for name, family in test["families"].items():
        assert family["majority_accuracy"] <= 1.0 / len(family["answers"]) + 0.2, name


def test_unknown_preset_is_a_user_error(tmp_path):
    from simulator.errors import UserError

    with pytest.raises(UserError, match="unknown data preset 'huge'; presets are clevr, clevr_small"):
        generate_clevr(tmp_path, GeneratorConfig(num_images=5, preset="huge"))
    with pytest.raises(UserError, match="unknown data preset"):
        GeneratorConfig.from_preset("huge", 5)
