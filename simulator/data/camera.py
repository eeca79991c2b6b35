"""The fixed pinhole camera of the CLEVR-like generator: world ground plane -> image pixels.

World frame: x to the camera's right, y away from the camera (depth), z up; the ground plane is
z = 0 and objects stand in [-3, 3] x [-3, 3]. The camera looks along +y from above, so farther
objects appear higher in the image and smaller. All pixel quantities scale with ``image_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Camera", "ProjectedObject"]


@dataclass(frozen=True)
class ProjectedObject:
    """Image-plane geometry of one object, in output pixels (float).

    ``u``: column of the ground contact point; ``v_ground``: its row; ``radius``: projected world
    radius; ``depth``: distance along the viewing axis in scene units (larger = farther).
    """

    u: float
    v_ground: float
    radius: float
    depth: float


@dataclass(frozen=True)
class Camera:
    """Perspective projection ``u = S (1/2 + kx x / (y + d))``, ``v = S (c + kv / (y + d))``.

    The constants put the ground square [-3, 3]^2 inside the frame with a perspective ratio of
    about 1.35 between the nearest and farthest row.
    """

    distance: float = 20.0
    horizontal_gain: float = 2.38
    vertical_gain: float = 43.0
    vertical_offset: float = -1.65

    def project(self, x: float, y: float, radius: float, image_size: int) -> ProjectedObject:
        """Project an object standing at world ``(x, y)`` with world ``radius`` (scene units)."""
        depth = y + self.distance
        u = image_size * (0.5 + self.horizontal_gain * x / depth)
        v_ground = image_size * (self.vertical_offset + self.vertical_gain / depth)
        radius_px = image_size * self.horizontal_gain * radius / depth
        return ProjectedObject(u=u, v_ground=v_ground, radius=radius_px, depth=depth)
