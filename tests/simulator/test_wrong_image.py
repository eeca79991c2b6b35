"""evaluation.with_other_images: the image-swap check gives every question another scene's image."""

import pytest
import torch

from simulator.errors import UserError
from simulator.evaluation import EvalSample, with_other_images


def _samples(image_ids, text_only=0):
    images = {k: torch.full((3, 4, 4), float(k)) for k in set(image_ids)}
    samples = [EvalSample("vqa", f"q{i}", ["yes"], images[k].clone()) for i, k in enumerate(image_ids)]
    return samples + [EvalSample("classify", "t", ["positive"]) for _ in range(text_only)]


def test_no_question_keeps_its_image_and_each_scene_passes_to_the_next():
    ids = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    swapped = with_other_images(_samples(ids, text_only=2))
    got = [None if s.image is None else int(s.image[0, 0, 0]) for s in swapped]
    assert got == [1, 1, 1, 2, 2, 0, 0, 0, 0, None, None]
    assert [s.input_text for s in swapped[:9]] == [f"q{i}" for i in range(9)]  # the questions stay


def test_one_image_cannot_be_swapped():
    with pytest.raises(UserError, match="at least two different images"):
        with_other_images(_samples([5, 5, 5]))
