"""Sets of rays from the camera: a full pixel grid, or arbitrary targets (e.g. BEV cell centres).

Directions are in the vehicle frame (= world orientation: the ego drives straight along +x), scaled
so that t = 1 lands on the target (for pixels: unit optical depth, so t is the depth in metres).
`uv` are the image coordinates used to cull objects by their projected bounding rectangle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from panoptic_perception.geometry.camera import Camera


@dataclass(eq=False)
class RaySet:
    dirs: np.ndarray  # (N, 3) float64
    u: np.ndarray  # (N,) image column of each ray
    v: np.ndarray  # (N,) image row
    grid: Optional[Tuple[int, int]] = None  # (H, W) when the rays are the pixel grid, row-major
    cache: dict = field(default_factory=dict)  # per-ray-set static geometry, filled by the renderer

    @property
    def size(self) -> int:
        return self.dirs.shape[0]

    @classmethod
    def pixel_grid(cls, camera: Camera) -> RaySet:
        h, w = camera.height, camera.width
        vv, uu = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
        optical = camera.intrinsics.pixel_rays(uu.ravel(), vv.ravel())
        optical = optical / optical[:, 2:3]  # unit optical depth, also for distorted cameras
        dirs = optical @ camera.extrinsics.rotation().T
        return cls(np.ascontiguousarray(dirs), uu.ravel(), vv.ravel(), (h, w))

    @classmethod
    def towards(cls, camera: Camera, points_vehicle: np.ndarray) -> RaySet:
        """Rays from the camera centre to vehicle-frame points (t = 1 at each point)."""
        pts = np.asarray(points_vehicle, dtype=np.float64).reshape(-1, 3)
        dirs = pts - camera.extrinsics.translation()
        uv, _ = camera.project_vehicle_points(pts)
        return cls(dirs, uv[:, 0], uv[:, 1], None)

    def select(self, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
        """Indices of rays whose (u, v) lies in the closed rectangle."""
        if self.grid is not None:
            h, w = self.grid
            c0, c1 = max(0, int(np.ceil(u0))), min(w - 1, int(np.floor(u1)))
            r0, r1 = max(0, int(np.ceil(v0))), min(h - 1, int(np.floor(v1)))
            if c1 < c0 or r1 < r0:
                return np.empty(0, dtype=np.intp)
            return (np.arange(r0, r1 + 1)[:, None] * w + np.arange(c0, c1 + 1)[None, :]).ravel()
        return np.nonzero((self.u >= u0) & (self.u <= u1) & (self.v >= v0) & (self.v <= v1))[0]
