"""Rays against axis-aligned boxes by the slab method: the one intersector of the analytic scenes
(geometry's exact test scenes) and of the synthetic street world's renderer."""
from __future__ import annotations

from typing import Tuple

import numpy as np

EPS_T = 1e-9  # hits closer than this are the ray leaving its own surface


def ray_boxes(origin: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays `origin + t * dirs` ((3,), (N, 3)) against K axis-aligned boxes (lo, hi: (K, 3), in the
    rays' frame), keeping the nearest hit per ray.

    Returns t (N,) (inf where every box is missed), the winning box index (N,) and the hit face's
    outward normal (N, 3). A ray is inside a box between its latest slab entry and earliest exit;
    a ray starting inside a box does not hit it.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs  # (N, 3); zero components give +-inf, which the slab test handles
        t_lo = (lo[:, None, :] - origin) * inv  # (K, N, 3)
        t_hi = (hi[:, None, :] - origin) * inv
    t_near = np.minimum(t_lo, t_hi)
    t_enter = t_near.max(axis=2)
    t_exit = np.maximum(t_lo, t_hi).min(axis=2)
    hit = (t_exit >= t_enter) & (t_enter > EPS_T)
    t_all = np.where(hit, t_enter, np.inf)
    best = np.argmin(t_all, axis=0) if len(lo) > 1 else np.zeros(dirs.shape[0], dtype=np.intp)
    rows = np.arange(dirs.shape[0])
    t = t_all[best, rows]
    axis = np.argmax(t_near[best, rows], axis=1)
    normal = np.zeros_like(dirs)
    normal[rows, axis] = -np.sign(dirs[rows, axis])
    return t, best, normal
