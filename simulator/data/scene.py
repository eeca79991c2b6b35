"""Random CLEVR-like scenes: object attributes, placement rules, and the CLEVR scene-graph record.

A scene is 3-10 objects with uniform random shape, colour, size and material on the ground square
[-3, 3]^2. Placement rules (so that every relation is visible in the image): no two objects
intersect, any two objects differ by a margin both in image column (left/right) and in depth
(front/behind), every object lies fully inside the frame, and after rendering every object keeps
at least ``min_visible`` of its silhouette. Relations follow the image: ``left``/``right`` compare
the image column of the ground contact point, ``front``/``behind`` the depth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from simulator.data.attributes import COLORS, MATERIALS, RELATIONS, SHAPES, SIZE_RADIUS, SIZES
from simulator.data.camera import Camera, ProjectedObject
from simulator.data.render import RenderableObject, render_scene

__all__ = ["SceneConfig", "SceneGenerationError", "sample_scene", "relationships"]

logger = logging.getLogger(__name__)

# CLEVR's unit vectors for each relation, in our world frame (documented convention).
DIRECTIONS = {
    "left": [-1.0, 0.0, 0.0],
    "right": [1.0, 0.0, 0.0],
    "front": [0.0, -1.0, 0.0],
    "behind": [0.0, 1.0, 0.0],
    "above": [0.0, 0.0, 1.0],
    "below": [0.0, 0.0, -1.0],
}


class SceneGenerationError(RuntimeError):
    """No valid scene was found within the attempt budget (placement rules too strict)."""


@dataclass(frozen=True)
class SceneConfig:
    """Placement rules. Margins: ``column_margin`` in fractions of the image width,
    ``depth_margin`` and ``clearance`` in scene units."""

    image_size: int = 64
    min_objects: int = 3
    max_objects: int = 10
    min_visible: float = 0.5
    column_margin: float = 0.03
    depth_margin: float = 0.25
    clearance: float = 0.12
    frame_margin: float = 0.01
    placement_tries: int = 60
    scene_tries: int = 200


def _inside_frame(g: ProjectedObject, config: SceneConfig) -> bool:
    lo, hi = config.frame_margin * config.image_size, (1.0 - config.frame_margin) * config.image_size
    return g.u - 1.35 * g.radius >= lo and g.u + 1.35 * g.radius <= hi and g.v_ground - 2.4 * g.radius >= lo and g.v_ground <= hi


def _compatible(candidate: dict, placed: list[dict], config: SceneConfig) -> bool:
    width = config.image_size
    for other in placed:
        dx, dy = candidate["x"] - other["x"], candidate["y"] - other["y"]
        if np.hypot(dx, dy) < candidate["r"] + other["r"] + config.clearance:
            return False
        if abs(candidate["geo"].u - other["geo"].u) < config.column_margin * width:
            return False
        if abs(dy) < config.depth_margin:
            return False
    return True


def _sample_layout(rng: np.random.Generator, config: SceneConfig, camera: Camera) -> list[dict] | None:
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    placed: list[dict] = []
    for _ in range(count):
        attrs = {
            "shape": SHAPES[rng.integers(len(SHAPES))],
            "color": COLORS[rng.integers(len(COLORS))],
            "size": SIZES[rng.integers(len(SIZES))],
            "material": MATERIALS[rng.integers(len(MATERIALS))],
            "rotation": float(rng.uniform(0.0, 360.0)),
        }
        radius = SIZE_RADIUS[attrs["size"]]
        for _ in range(config.placement_tries):
            x, y = rng.uniform(-3.0, 3.0, size=2)
            geo = camera.project(float(x), float(y), radius, config.image_size)
            candidate = {**attrs, "x": float(x), "y": float(y), "r": radius, "geo": geo}
            if _inside_frame(geo, config) and _compatible(candidate, placed, config):
                placed.append(candidate)
                break
        else:
            return None
    return placed


def relationships(columns: list[float], depths: list[float]) -> dict[str, list[list[int]]]:
    """CLEVR relationships: ``rel[name][i]`` lists the objects that are ``name`` of object ``i``."""
    n = len(columns)
    return {
        "left": [[j for j in range(n) if j != i and columns[j] < columns[i]] for i in range(n)],
        "right": [[j for j in range(n) if j != i and columns[j] > columns[i]] for i in range(n)],
        "front": [[j for j in range(n) if j != i and depths[j] < depths[i]] for i in range(n)],
        "behind": [[j for j in range(n) if j != i and depths[j] > depths[i]] for i in range(n)],
    }


def sample_scene(rng: np.random.Generator, config: SceneConfig, camera: Camera | None = None) -> tuple[dict, Image.Image]:
    """Sample and render one valid scene.

    Returns the CLEVR scene record without the image fields (``objects``, ``relationships``,
    ``directions``) and the rendered RGB image of ``config.image_size`` pixels.
    Raises :class:`SceneGenerationError` after ``config.scene_tries`` rejected layouts.
    """
    camera = camera or Camera()
    for attempt in range(config.scene_tries):
        layout = _sample_layout(rng, config, camera)
        if layout is None:
            continue
        renderables = [RenderableObject(o["shape"], o["color"], o["material"], o["rotation"], o["geo"]) for o in layout]
        image, visible = render_scene(renderables, config.image_size)
        if min(visible) < config.min_visible:
            continue
        logger.debug("scene accepted after %d attempts", attempt + 1)
        objects = [
            {
                "shape": o["shape"],
                "color": o["color"],
                "size": o["size"],
                "material": o["material"],
                "3d_coords": [round(o["x"], 4), round(o["y"], 4), round(o["r"], 4)],
                "pixel_coords": [int(round(o["geo"].u)), int(round(o["geo"].v_ground - o["geo"].radius)), round(o["geo"].depth, 4)],
                "rotation": round(o["rotation"], 4),
            }
            for o in layout
        ]
        rels = relationships([o["geo"].u for o in layout], [o["geo"].depth for o in layout])
        assert set(rels) == set(RELATIONS)
        return {"objects": objects, "relationships": rels, "directions": DIRECTIONS}, image
    raise SceneGenerationError(f"no valid scene in {config.scene_tries} attempts; relax the placement rules")
