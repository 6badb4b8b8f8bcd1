"""Vectorised ray intersections with the analytic primitives of the street world.

Rays are `origin + t * dirs` with one origin and (N, 3) directions; every function returns the
nearest positive t per ray (inf where missed) plus what the shader needs at that point.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

_EPS_T = 1e-9


def yaw_matrix(yaw_rad: float) -> np.ndarray:
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def boxes(
    origin: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays against K axis-aligned boxes (in the rays' frame), keeping the nearest per ray.

    Returns t (N,), the winning box index (N,) and the hit face's outward normal (N, 3).
    The slab method: a ray is inside a box between its latest entry and earliest exit.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs  # (N, 3); zero components give +-inf, which the slab test handles
        t_lo = (lo[:, None, :] - origin) * inv  # (K, N, 3)
        t_hi = (hi[:, None, :] - origin) * inv
    t_near = np.minimum(t_lo, t_hi)
    t_enter = t_near.max(axis=2)
    t_exit = np.maximum(t_lo, t_hi).min(axis=2)
    hit = (t_exit >= t_enter) & (t_enter > _EPS_T)
    t_all = np.where(hit, t_enter, np.inf)
    best = np.argmin(t_all, axis=0) if len(lo) > 1 else np.zeros(dirs.shape[0], dtype=np.intp)
    rows = np.arange(dirs.shape[0])
    t = t_all[best, rows]
    axis = np.argmax(t_near[best, rows], axis=1)
    normal = np.zeros_like(dirs)
    normal[rows, axis] = -np.sign(dirs[rows, axis])
    return t, best, normal


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
    ok = (disc >= 0) & (a > 0) & (t > _EPS_T) & (z >= z0) & (z <= z1)
    t = np.where(ok, t, np.inf)
    normal = np.zeros_like(dirs)
    with np.errstate(invalid="ignore"):
        normal[:, 0] = (ox + t * dx) / radius
        normal[:, 1] = (oy + t * dy) / radius
    return t, normal
