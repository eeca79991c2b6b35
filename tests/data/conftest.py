"""Shared fixtures: a small generated CLEVR-like set, and builders of fixture directories in the
real CLEVR v1.0 and aclImdb layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simulator.data.clevr_generator import GeneratorConfig, generate_clevr


@pytest.fixture(scope="session")
def generated_clevr(tmp_path_factory) -> Path:
    """20 generated images (16/2/2) at 64 px."""
    root = tmp_path_factory.mktemp("clevr_generated")
    generate_clevr(root, GeneratorConfig(num_images=20, seed=3, workers=1))
    return root


def write_real_clevr_fixture(root: Path, split: str = "val", with_answers: bool = True) -> Path:
    """Two 480x320 images with questions and scenes shaped like real CLEVR v1.0 files."""
    (root / "images" / split).mkdir(parents=True)
    (root / "questions").mkdir()
    (root / "scenes").mkdir()
    rng = np.random.default_rng(0)
    scenes, questions = [], []
    for index in range(2):
        filename = f"CLEVR_{split}_{index:06d}.png"
        Image.fromarray(rng.integers(0, 255, (320, 480, 3), dtype=np.uint8)).save(root / "images" / split / filename)
        objects = [
            {"color": "red", "size": "large", "rotation": 10.0, "shape": "cube", "3d_coords": [0.1, 0.2, 0.7],
             "material": "metal", "pixel_coords": [200, 150, 11.1]},
            {"color": "blue", "size": "small", "rotation": 30.0, "shape": "sphere", "3d_coords": [1.1, -1.2, 0.35],
             "material": "rubber", "pixel_coords": [300, 200, 9.4]},
        ]
        scenes.append({"image_index": index, "objects": objects, "relationships": {"right": [[1], []], "behind": [[], [0]],
                       "front": [[1], []], "left": [[], [0]]}, "image_filename": filename, "split": split,
                       "directions": {"right": [0.65, 0.75, 0.0]}})
        question = {"image_index": index, "question": "How many spheres are there?", "image_filename": filename,
                    "split": split, "question_index": index}
        if with_answers:
            question |= {"answer": "1", "question_family_index": 40, "program": [
                {"inputs": [], "function": "scene", "value_inputs": []},
                {"inputs": [0], "function": "filter_shape", "value_inputs": ["sphere"]},
                {"inputs": [1], "function": "count", "value_inputs": []}]}
        questions.append(question)
    info = {"split": split, "license": "Creative Commons Attribution (CC BY 4.0)", "version": "1.0", "date": "2/14/2017"}
    (root / "questions" / f"CLEVR_{split}_questions.json").write_text(json.dumps({"info": info, "questions": questions}))
    (root / "scenes" / f"CLEVR_{split}_scenes.json").write_text(json.dumps({"info": info, "scenes": scenes}))
    return root


def write_aclimdb_fixture(root: Path) -> Path:
    """``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`` with two reviews per folder."""
    base = root / "aclImdb"
    for split in ("train", "test"):
        for folder, ratings in (("pos", (8, 10)), ("neg", (1, 3))):
            directory = base / split / folder
            directory.mkdir(parents=True)
            for k, rating in enumerate(ratings):
                (directory / f"{k}_{rating}.txt").write_text(f"{split} {folder} review {k}.<br /><br />Second line.")
    (base / "imdb.vocab").write_text("the\n")
    return base
