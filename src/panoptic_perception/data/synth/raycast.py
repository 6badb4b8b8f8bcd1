"""Vectorised ray intersections with the analytic primitives of the street world.

Rays are `origin + t * dirs` with one origin and (N, 3) directions; every function returns the
nearest positive t per ray (inf where missed) plus what the shader needs at that point.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from panoptic_perception.geometry.slab import EPS_T


def yaw_matrix(yaw_rad: float) -> np.ndarray:
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def vertical_cylinder(
    origin: np.ndarray, dirs: np.ndarray, cx: float, cy: float, radius: float, z0: float, z1: float
) -> Tuple[np.ndarray, np.ndarray]:
    """Rays against the side of a vertical cylinder; returns t (N,) and outward normals (N, 3)."""
    ox, oy = origin[0] - cx, origin[1] - cy
    dx, dy = dirs[:, 0], dirs[:, 1]
    a = dx * dx + dy * dy
    b = 2.0 * (ox * dx + oy * dy)
    c = ox * ox + oy * oy - radius * radius
    disc = b * b - 4.0 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
    z = origin[2] + t * dirs[:, 2]
    ok = (disc >= 0) & (a > 0) & (t > EPS_T) & (z >= z0) & (z <= z1)
    t = np.where(ok, t, np.inf)
    normal = np.zeros_like(dirs)
    with np.errstate(invalid="ignore"):
        normal[:, 0] = (ox + t * dx) / radius
        normal[:, 1] = (oy + t * dy) / radius
    return t, normal
