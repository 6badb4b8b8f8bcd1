"""Flat-ground inverse perspective mapping, precomputed as pixel <-> grid cell lookup tables.

Built once per (camera, image size, grid); a frame's projection is then a handful of gathers and
scatter-adds over these tables. Pixel coordinates follow ROS / OpenCV: the centre of pixel
(u, v) is at (u, v), so its bottom edge is the line v + 0.5.

Two kinds of sample feed a cell's ground evidence:
- forward: every pixel centre whose ray meets the ground inside the grid (many per cell near the
  camera, capped at `max_pixels_per_cell`, spread evenly over the cell's pixels);
- inverse: for a cell that no pixel centre lands in (far away, where one pixel row spans several
  cells), the pixel its own centre projects to, so that distant visible ground is not left unknown.

Far away a cell thus has one or two samples, and their summed evidence stays short of the free
threshold whenever the network is less than certain: rows of unknown between rows of free. So a
cell seen through fewer samples than `min_pixels_per_cell` has its per-pixel evidence (ground
votes and obstacle contacts together) multiplied by min_pixels_per_cell / its samples: it counts as
seen by that many pixels of its samples' mean weight, never more. The gain belongs to the cell
(all its samples, whatever they show in a frame), so a cell half hidden behind an object does not
borrow evidence from its visible half, and a hidden cell (no ground evidence) stays unknown.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Tuple

import numpy as np

from panoptic_perception.errors import InputError
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.geometry.grid import GridGeometry

if TYPE_CHECKING:  # torch is imported lazily: building the tables is numpy
    import torch


@dataclass(frozen=True)
class GroundLookup:
    """Tables for one camera at one image size and one grid (torch tensors on one device)."""

    width_px: int
    height_px: int
    geometry: GridGeometry
    camera: Camera  # the camera at this image size (intrinsics scaled if needed)
    sample_pixel: torch.Tensor  # int32 [N], flat pixel index v * width + u, ascending (cache-friendly)
    sample_cell: torch.Tensor  # int32 [N], flat cell index row * grid width + col
    cell_gain: torch.Tensor  # float32 [num_cells], multiplier of a cell's per-pixel evidence (>= 1)
    edge_x_m: torch.Tensor  # float32 [H, W], ground x of each pixel's bottom edge centre (NaN: sky)
    edge_y_m: torch.Tensor  # float32 [H, W]
    edge_cell: torch.Tensor  # int64 [H, W], cell of that edge point; num_cells where outside the grid
    first_row: int  # rows above this never see the ground inside the grid
    num_forward: int  # how many of the samples are forward (the rest are inverse)

    @property
    def camera_xy_m(self) -> Tuple[float, float]:
        t = self.camera.extrinsics.translation()
        return float(t[0]), float(t[1])

    def to(self, device) -> GroundLookup:
        return replace(self, sample_pixel=self.sample_pixel.to(device),
                       sample_cell=self.sample_cell.to(device), cell_gain=self.cell_gain.to(device),
                       edge_x_m=self.edge_x_m.to(device),
                       edge_y_m=self.edge_y_m.to(device),
                       edge_cell=self.edge_cell.to(device))


def camera_at_size(camera: Camera, width_px: int, height_px: int) -> Camera:
    """The camera as seen by an image of another size (e.g. the network's input)."""
    if (camera.width, camera.height) == (width_px, height_px):
        return camera
    return Camera(camera.intrinsics.scaled(width_px, height_px), camera.extrinsics)


def _cap_per_cell(pixel: np.ndarray, cell: np.ndarray, max_per_cell: int) -> Tuple[np.ndarray, np.ndarray]:
    """Keep at most ~max_per_cell samples of each cell, spread evenly over its pixels."""
    order = np.argsort(cell, kind="stable")
    pixel, cell = pixel[order], cell[order]
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    counts = np.diff(np.r_[starts, len(cell)])
    rank = np.arange(len(cell)) - np.repeat(starts, counts)
    stride = np.repeat(np.maximum(1, -(-counts // max_per_cell)), counts)
    keep = rank % stride == 0
    return pixel[keep], cell[keep]


def sparse_cell_gain(sample_cell: np.ndarray, num_cells: int, min_pixels_per_cell: int) -> np.ndarray:
    """float32 [num_cells]: min_pixels_per_cell / samples for a cell with fewer samples, else 1."""
    count = np.bincount(sample_cell, minlength=num_cells)
    gain = min_pixels_per_cell / np.maximum(count, 1)
    return np.where((count > 0) & (gain > 1.0), gain, 1.0).astype(np.float32)


def build_ground_lookup(camera: Camera, width_px: int, height_px: int, geometry: GridGeometry,
                        max_pixels_per_cell: int = 16, min_pixels_per_cell: int = 1) -> GroundLookup:
    """Precompute the pixel <-> cell tables (numpy, once), returned as CPU torch tensors."""
    import torch

    if width_px <= 0 or height_px <= 0:
        raise InputError(f"image size must be positive, got {width_px}x{height_px}")
    cam = camera_at_size(camera, width_px, height_px)
    u = np.tile(np.arange(width_px, dtype=np.float64), height_px)
    v = np.repeat(np.arange(height_px, dtype=np.float64), width_px)
    n_cells = geometry.num_cells

    # forward samples: pixel centres
    xy, hit = cam.ground_points(u, v)
    row, col, inside = geometry.cell_of(xy[:, 0], xy[:, 1])
    inside &= hit
    fwd_pixel = np.flatnonzero(inside)
    fwd_cell = row[inside] * geometry.width + col[inside]
    fwd_pixel, fwd_cell = _cap_per_cell(fwd_pixel, fwd_cell, max_pixels_per_cell)

    # inverse samples: centres of cells no pixel centre landed in
    seen = np.zeros(n_cells, dtype=bool)
    seen[fwd_cell] = True
    cx, cy = geometry.cell_centers()
    centres = np.stack([cx.ravel(), cy.ravel(), np.zeros(n_cells)], axis=1)
    uv, depth = cam.project_vehicle_points(centres)
    with np.errstate(invalid="ignore"):
        pu, pv = np.rint(uv[:, 0]), np.rint(uv[:, 1])
        ok = (~seen) & (depth > 0) & (pu >= 0) & (pu < width_px) & (pv >= 0) & (pv < height_px)
    inv_cell = np.flatnonzero(ok)
    inv_pixel = (pv[ok] * width_px + pu[ok]).astype(np.int64)

    # bottom edges of pixels: where a mask's lowest pixel touches the ground
    exy, ehit = cam.ground_points(u, v + 0.5)
    erow, ecol, einside = geometry.cell_of(exy[:, 0], exy[:, 1])
    einside &= ehit
    edge_cell = np.where(einside, erow * geometry.width + ecol, n_cells)
    edge_x = np.where(ehit, exy[:, 0], np.nan).astype(np.float32).reshape(height_px, width_px)
    edge_y = np.where(ehit, exy[:, 1], np.nan).astype(np.float32).reshape(height_px, width_px)
    rows_in_grid = np.flatnonzero(einside.reshape(height_px, width_px).any(axis=1))
    first_row = int(rows_in_grid[0]) if rows_in_grid.size else height_px
    if inv_pixel.size:
        first_row = min(first_row, int(inv_pixel.min() // width_px))
    if fwd_pixel.size:
        first_row = min(first_row, int(fwd_pixel.min() // width_px))

    sample_pixel = np.concatenate([fwd_pixel, inv_pixel])
    sample_cell = np.concatenate([fwd_cell, inv_cell])
    order = np.argsort(sample_pixel, kind="stable")
    # int32 indices: half the memory traffic of int64 in the per-frame gathers
    return GroundLookup(
        width_px=width_px, height_px=height_px, geometry=geometry, camera=cam,
        sample_pixel=torch.from_numpy(sample_pixel[order].astype(np.int32)),
        sample_cell=torch.from_numpy(sample_cell[order].astype(np.int32)),
        cell_gain=torch.from_numpy(sparse_cell_gain(sample_cell, n_cells, min_pixels_per_cell)),
        edge_x_m=torch.from_numpy(edge_x), edge_y_m=torch.from_numpy(edge_y),
        edge_cell=torch.from_numpy(edge_cell.reshape(height_px, width_px).astype(np.int64)),
        first_row=first_row, num_forward=int(fwd_pixel.size),
    )
