"""Reference captions from a scene graph (CLEVR has none; these are the project's own).

Every image gets ``num_references`` short captions in a small, regular vocabulary:
one counting caption ("there are two cubes, one sphere and three cylinders."), one listing the objects
nearest to the camera, and relation captions ("a large red metal cube is left of a small blue
rubber sphere."). Objects are always named with all four attributes.
"""

from __future__ import annotations

import numpy as np

from simulator.data.attributes import PLURAL_SHAPES, RELATION_PHRASES, RELATIONS, SHAPES

__all__ = ["full_name", "generate_captions"]

_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def full_name(obj: dict) -> str:
    """``size color material shape`` of one scene object."""
    return f"{obj['size']} {obj['color']} {obj['material']} {obj['shape']}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _counting_caption(objects: list[dict]) -> str:
    parts, counts = [], []
    for shape in SHAPES:
        k = sum(o["shape"] == shape for o in objects)
        if k:
            counts.append(k)
            parts.append(f"{_NUMBER_WORDS[k] if k < len(_NUMBER_WORDS) else k} {shape if k == 1 else PLURAL_SHAPES[shape]}")
    verb = "is" if counts[0] == 1 else "are"  # agrees with the first noun phrase
    return f"there {verb} {_join(parts)}."


def _nearest_caption(objects: list[dict], limit: int = 3) -> str:
    nearest = sorted(range(len(objects)), key=lambda i: objects[i]["pixel_coords"][2])[:limit]
    return f"the scene shows {_join(['a ' + full_name(objects[i]) for i in nearest])}."


def _relation_caption(rng: np.random.Generator, scene: dict) -> str | None:
    objects = scene["objects"]
    subject = int(rng.integers(len(objects)))
    relation = RELATIONS[rng.integers(len(RELATIONS))]
    others = scene["relationships"][relation][subject]
    if not others:
        return None
    anchor = others[rng.integers(len(others))]
    # "objects[anchor] is <relation> of objects[subject]" by the CLEVR convention rel[r][i].
    return f"a {full_name(objects[anchor])} is {RELATION_PHRASES[relation]} a {full_name(objects[subject])}."


def generate_captions(rng: np.random.Generator, scene: dict, num_references: int = 5) -> list[str]:
    """``num_references`` distinct captions (fewer only for scenes too small to vary)."""
    captions = [_counting_caption(scene["objects"]), _nearest_caption(scene["objects"])]
    for _ in range(20 * num_references):
        if len(captions) >= num_references:
            break
        caption = _relation_caption(rng, scene)
        if caption is not None and caption not in captions:
            captions.append(caption)
    return captions[:num_references]
