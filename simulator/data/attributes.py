"""The CLEVR attribute vocabulary: shapes, colours (with their RGB values), sizes, materials.

Names and RGB values are those of CLEVR v1.0, so generated scenes and real CLEVR scenes share one
vocabulary. Sizes are world radii in scene units (the ground plane spans [-3, 3] x [-3, 3]).
"""

from __future__ import annotations

__all__ = [
    "SHAPES",
    "COLORS",
    "COLOR_RGB",
    "SIZES",
    "SIZE_RADIUS",
    "MATERIALS",
    "ATTRIBUTES",
    "ATTRIBUTE_VALUES",
    "PLURAL_SHAPES",
    "RELATIONS",
    "RELATION_PHRASES",
]

SHAPES: tuple[str, ...] = ("cube", "sphere", "cylinder")
PLURAL_SHAPES: dict[str, str] = {"cube": "cubes", "sphere": "spheres", "cylinder": "cylinders"}
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
COLORS: tuple[str, ...] = tuple(COLOR_RGB)
# World radius in scene units. Large/small ratio 1.8 keeps sizes apart at 64 px.
SIZE_RADIUS: dict[str, float] = {"small": 0.42, "large": 0.76}
SIZES: tuple[str, ...] = tuple(SIZE_RADIUS)
MATERIALS: tuple[str, ...] = ("rubber", "metal")

# Order used whenever attributes are spoken: "large red metal cube".
ATTRIBUTES: tuple[str, ...] = ("size", "color", "material", "shape")
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "size": SIZES,
    "color": COLORS,
    "material": MATERIALS,
    "shape": SHAPES,
}

# CLEVR relationship keys and how they are spoken in questions and captions.
RELATIONS: tuple[str, ...] = ("left", "right", "front", "behind")
RELATION_PHRASES: dict[str, str] = {
    "left": "left of",
    "right": "right of",
    "front": "in front of",
    "behind": "behind",
}
