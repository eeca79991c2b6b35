"""2.5D renderer of CLEVR-like scenes with PIL + numpy (no external renderer).

Objects are drawn back to front (painter's algorithm) on a supersampled canvas and box-filtered
down to the output size. Shapes: sphere = shaded disc, cylinder = shaded body + lit top ellipse,
cube = front/top/side faces. Metal objects get a dark rim and a sharp white highlight; rubber is
matte with a faint broad sheen. The renderer also reports how much of each object stays visible,
which the generator uses to reject scenes with heavy occlusion.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from simulator.data.attributes import COLOR_RGB
from simulator.data.camera import ProjectedObject

__all__ = ["RenderableObject", "render_scene", "encode_png"]

SUPERSAMPLE = 4
_LIGHT = np.array([-0.45, -0.6, 0.66]) / np.linalg.norm([-0.45, -0.6, 0.66])  # x right, y down, z to viewer


@dataclass(frozen=True)
class RenderableObject:
    """What the renderer needs to know about one object."""

    shape: str
    color: str
    material: str
    rotation: float  # degrees; picks which side face of a cube is visible
    geometry: ProjectedObject


def _background(size: int) -> np.ndarray:
    """Floor with a vertical brightness gradient. Returns ``[size, size, 3]`` float in [0, 1]."""
    rows = np.linspace(0.52, 0.72, size)[:, None, None]
    return np.broadcast_to(rows * np.array([1.0, 1.0, 0.98]), (size, size, 3)).copy()


def _bbox(cx: float, cy: float, half_w: float, half_h: float, size: int) -> tuple[int, int, int, int]:
    x0 = max(int(np.floor(cx - half_w)) - 1, 0)
    x1 = min(int(np.ceil(cx + half_w)) + 2, size)
    y0 = max(int(np.floor(cy - half_h)) - 1, 0)
    y1 = min(int(np.ceil(cy + half_h)) + 2, size)
    return x0, x1, y0, y1


def _gloss(xx, yy, cx, cy, sx, sy):
    return np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))


def _shade(base: np.ndarray, diffuse: np.ndarray, gloss: np.ndarray, rim: np.ndarray, metal: bool):
    """Per-pixel colour ``[..., 3]`` from base RGB, diffuse term, highlight term and rim term."""
    if metal:
        shade = (0.22 + 0.62 * diffuse) * (0.55 + 0.45 * rim)
        return base * shade[..., None] + 0.95 * gloss[..., None]
    shade = 0.42 + 0.58 * diffuse
    return base * shade[..., None] + 0.10 * gloss[..., None]


def _sphere(obj: RenderableObject, size: int):
    g, s = obj.geometry, SUPERSAMPLE
    r = g.radius * s
    cx, cy = g.u * s, g.v_ground * s - r
    x0, x1, y0, y1 = _bbox(cx, cy, r, r, size)
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    nx, ny = (xx - cx) / r, (yy - cy) / r
    inside = nx**2 + ny**2 <= 1.0
    nz = np.sqrt(np.clip(1.0 - nx**2 - ny**2, 0.0, 1.0))
    diffuse = np.clip(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0.0, 1.0)
    metal = obj.material == "metal"
    spot = 0.16 if metal else 0.5
    gloss = _gloss(xx, yy, cx - 0.38 * r, cy - 0.42 * r, spot * r, spot * r)
    base = np.array(COLOR_RGB[obj.color]) / 255.0
    return (y0, y1, x0, x1), inside, _shade(base, diffuse, gloss, nz, metal)


def _cylinder(obj: RenderableObject, size: int):
    g, s = obj.geometry, SUPERSAMPLE
    r = g.radius * s
    ellipse = 0.36 * r
    height = 1.7 * r
    bottom_cy = g.v_ground * s - ellipse
    top_cy = bottom_cy - height
    cx = g.u * s
    x0, x1, y0, y1 = _bbox(cx, (top_cy + bottom_cy) / 2, r, height / 2 + ellipse, size)
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    nx = np.clip((xx - cx) / r, -1.0, 1.0)
    in_bottom = nx**2 + ((yy - bottom_cy) / ellipse) ** 2 <= 1.0
    in_top = nx**2 + ((yy - top_cy) / ellipse) ** 2 <= 1.0
    in_body = (np.abs(xx - cx) <= r) & (yy >= top_cy) & (yy <= bottom_cy)
    inside = in_bottom | in_top | in_body
    nz = np.sqrt(np.clip(1.0 - nx**2, 0.0, 1.0))
    body_diffuse = np.clip(nx * _LIGHT[0] + nz * _LIGHT[2], 0.0, 1.0)
    diffuse = np.where(in_top, min(1.0, -_LIGHT[1] + 0.25), body_diffuse)
    rim = np.where(in_top, 1.0, nz)
    metal = obj.material == "metal"
    width = 0.14 if metal else 0.45
    gloss = _gloss(xx, yy, cx - 0.4 * r, (top_cy + bottom_cy) / 2, width * r, 2.0 * r)
    gloss = np.where(in_top, 0.5 * gloss, gloss)
    base = np.array(COLOR_RGB[obj.color]) / 255.0
    return (y0, y1, x0, x1), inside, _shade(base, diffuse, gloss, rim, metal)


def _cube(obj: RenderableObject, size: int):
    g, s = obj.geometry, SUPERSAMPLE
    a = 0.86 * g.radius * s  # half side of the front face
    side_sign = 1.0 if (obj.rotation % 90.0) < 45.0 else -1.0
    off_x, off_y = side_sign * 0.5 * a, -0.62 * a
    cx, bottom = g.u * s - off_x / 2, g.v_ground * s
    left, right, top = cx - a, cx + a, bottom - 2 * a
    front = [(left, top), (right, top), (right, bottom), (left, bottom)]
    lid = [(left, top), (right, top), (right + off_x, top + off_y), (left + off_x, top + off_y)]
    edge = right if side_sign > 0 else left
    side = [(edge, top), (edge + off_x, top + off_y), (edge + off_x, bottom + off_y), (edge, bottom)]
    x0, x1, y0, y1 = _bbox(cx + off_x / 2, bottom - a + off_y / 2, a + abs(off_x) / 2, a - off_y / 2, size)
    faces = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(faces)
    for face_id, polygon in ((1, front), (2, lid), (3, side)):
        draw.polygon([(px - x0, py - y0) for px, py in polygon], fill=face_id)
    face = np.asarray(faces)
    inside = face > 0
    side_diffuse = max(0.0, side_sign * _LIGHT[0]) + 0.15
    diffuse = np.select([face == 1, face == 2, face == 3], [_LIGHT[2], -_LIGHT[1] + 0.3, side_diffuse], 0.0)
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    metal = obj.material == "metal"
    spot = 0.3 if metal else 0.9
    gloss = _gloss(xx, yy, left + 0.55 * a, top + 0.3 * off_y, spot * a, 0.6 * spot * a)
    rim = np.where(face == 3, 0.4, 1.0)
    base = np.array(COLOR_RGB[obj.color]) / 255.0
    return (y0, y1, x0, x1), inside, _shade(base, diffuse, gloss, rim, metal)


_SHAPE_PAINTERS = {"sphere": _sphere, "cylinder": _cylinder, "cube": _cube}


def _paint_shadow(canvas: np.ndarray, obj: RenderableObject, size: int) -> None:
    g, s = obj.geometry, SUPERSAMPLE
    r = g.radius * s
    cx, cy = g.u * s + 0.35 * r, g.v_ground * s - 0.15 * r
    x0, x1, y0, y1 = _bbox(cx, cy, 1.3 * r, 0.5 * r, size)
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    d2 = ((xx - cx) / (1.3 * r)) ** 2 + ((yy - cy) / (0.5 * r)) ** 2
    canvas[y0:y1, x0:x1] *= (1.0 - 0.35 * np.exp(-2.0 * d2))[..., None]


def render_scene(objects: list[RenderableObject], image_size: int) -> tuple[Image.Image, list[float]]:
    """Render objects; returns the RGB image ``[image_size, image_size]`` and, per object (input
    order), the fraction of its silhouette left visible after occlusion (1.0 = fully visible;
    0.0 also for an object that falls outside the frame)."""
    size = image_size * SUPERSAMPLE
    canvas = _background(size)
    owner = np.full((size, size), -1, dtype=np.int32)
    areas = np.zeros(len(objects))
    order = sorted(range(len(objects)), key=lambda i: -objects[i].geometry.depth)  # far first
    for i in order:
        _paint_shadow(canvas, objects[i], size)
    for i in order:
        (y0, y1, x0, x1), inside, rgb = _SHAPE_PAINTERS[objects[i].shape](objects[i], size)
        if inside.size == 0:
            continue
        region = canvas[y0:y1, x0:x1]
        region[inside] = np.clip(rgb[inside] if rgb.shape[:2] == inside.shape else rgb, 0.0, 1.0)
        owner[y0:y1, x0:x1][inside] = i
        areas[i] = inside.sum()
    visible = np.bincount(owner[owner >= 0].ravel(), minlength=len(objects))[: len(objects)]
    fractions = [float(visible[i] / areas[i]) if areas[i] > 0 else 0.0 for i in range(len(objects))]
    hi_res = Image.fromarray(np.round(canvas * 255.0).astype(np.uint8), mode="RGB")
    return hi_res.resize((image_size, image_size), Image.BOX), fractions


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with fixed settings and no metadata chunks (byte-identical for equal pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()
