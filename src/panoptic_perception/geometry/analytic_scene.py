"""Exact ray-cast scenes of a flat street with boxes, as fusion outputs: geometry's own ground truth.

Every pixel centre's ray is intersected with the ground plane and with each box; the nearest hit
gives the pixel's segment. No rendering approximations, so the projection can be checked against
the boxes' true footprints. Used by the geometry tests and the projection benchmark; the full
street world with textures lives in `panoptic_perception.data.synth`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from panoptic_perception.geometry.camera import Camera
from panoptic_perception.geometry.slab import ray_boxes


@dataclass(frozen=True)
class Box:
    """An upright box standing on the ground (vehicle frame, metres, yaw in radians)."""

    x_m: float
    y_m: float
    length_m: float
    width_m: float
    height_m: float
    yaw_rad: float
    category: int
    is_thing: bool = True
    score: float = 1.0


@dataclass(frozen=True)
class Street:
    """Ground layout: a road centred on y = 0, sidewalks, then terrain."""

    road_half_width_m: float = 5.0
    sidewalk_width_m: float = 2.5
    road_id: int = 0
    sidewalk_id: int = 1
    terrain_id: int = 9
    sky_id: int = 10
    boxes: Tuple[Box, ...] = field(default_factory=tuple)


def _ray_box_entry(origin: np.ndarray, rays: np.ndarray, box: Box) -> np.ndarray:
    """Distance along each ray where it enters the box (inf where it misses)."""
    c, s = math.cos(box.yaw_rad), math.sin(box.yaw_rad)
    rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # vehicle -> box axes
    o = rot @ (origin - np.array([box.x_m, box.y_m, box.height_m / 2]))
    half = np.array([[box.length_m, box.width_m, box.height_m]]) / 2
    t, _, _ = ray_boxes(o, rays @ rot.T, -half, half)
    return t


def render(camera: Camera, street: Street, num_slots: int = 0) -> Dict[str, np.ndarray]:
    """Fusion-output-shaped numpy arrays for the scene seen by `camera`.

    Segments: one per box (ids 1..K, in box order), then one per ground/sky class present.
    `num_slots` pads the segment table to a static size (>= the number of segments).
    """
    w, h = camera.width, camera.height
    u = np.tile(np.arange(w, dtype=np.float64), h)
    v = np.repeat(np.arange(h, dtype=np.float64), w)
    rays = camera.intrinsics.pixel_rays(u, v) @ camera.extrinsics.rotation().T
    origin = camera.extrinsics.translation()
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(rays[:, 2] < 0, -origin[2] / rays[:, 2], np.inf)
    gy = origin[1] + rays[:, 1] * np.where(np.isfinite(t_ground), t_ground, 0.0)
    ground_class = np.where(np.abs(gy) <= street.road_half_width_m, street.road_id,
                            np.where(np.abs(gy) <= street.road_half_width_m + street.sidewalk_width_m,
                                     street.sidewalk_id, street.terrain_id))
    pixel_class = np.where(np.isfinite(t_ground), ground_class, street.sky_id)

    nearest = t_ground.copy()
    which = np.full(len(u), -1, dtype=np.int64)
    for k, box in enumerate(street.boxes):
        t = _ray_box_entry(origin, rays, box)
        closer = t < nearest
        nearest = np.where(closer, t, nearest)
        which = np.where(closer, k, which)

    categories: List[int] = [b.category for b in street.boxes]
    things: List[bool] = [b.is_thing for b in street.boxes]
    scores: List[float] = [b.score for b in street.boxes]
    segment_map = np.where(which >= 0, which + 1, 0)
    for cls in (street.road_id, street.sidewalk_id, street.terrain_id, street.sky_id):
        mask = (which < 0) & (pixel_class == cls)
        if mask.any():
            categories.append(cls)
            things.append(False)
            scores.append(1.0)
            segment_map[mask] = len(categories)
    n = len(categories)
    slots = max(num_slots, n)
    pad = slots - n
    return {
        "segment_map": segment_map.reshape(h, w).astype(np.int32),
        "segment_category": np.array(categories + [0] * pad, dtype=np.int64),
        "segment_is_thing": np.array(things + [False] * pad, dtype=bool),
        "segment_score": np.array(scores + [0.0] * pad, dtype=np.float32),
        "segment_valid": np.array([True] * n + [False] * pad, dtype=bool),
    }


def to_torch(arrays: Dict[str, np.ndarray], device: str = "cpu") -> Dict[str, Any]:
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}


def footprint_mask(geometry, boxes: Sequence[Box]) -> np.ndarray:
    """(height, width) bool: grid cells whose centres lie inside any box's footprint."""
    x, y = geometry.cell_centers()
    inside = np.zeros(x.shape, dtype=bool)
    for b in boxes:
        c, s = math.cos(b.yaw_rad), math.sin(b.yaw_rad)
        dx, dy = x - b.x_m, y - b.y_m
        inside |= (np.abs(c * dx + s * dy) <= b.length_m / 2) & (np.abs(-s * dx + c * dy) <= b.width_m / 2)
    return inside
