"""Cells of a grid window under convex polygons (the fused grid's moving footprints), all at once.

Geometry is exact integer arithmetic on a fixed-point lattice. Each polygon's box is its bounding
box grown by the margin, in whole cells, cut by the window; its corners are placed in the box's
cell coordinates and rounded to 1 / 2**q of a cell (q = 16, fewer for a polygon so large that
int64 products would overflow: _fraction_bits). A cell of the box is under the polygon when its
centre is on the inner side of every edge: E = e_x (y - a_y) - e_y (x - a_x) >= 0 for each edge
a -> a + e of the counter-clockwise polygon, all in those integers; it is under the polygon grown
by the margin when E >= -round(margin |e|), every edge moved out by the margin (corners mitred,
cut by the box). E is linear in the column, so along one row of cells an edge accepts a run of
columns (a prefix or a suffix) that one floor division finds exactly; a row's run is the
intersection of its edges' runs, and the union over polygons is painted from the runs. Testing
every cell against every edge instead costs polygons x edges x cells.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from panoptic_perception.errors import InputError

Box = Tuple[int, int, int, int]  # window rows [r0, r1) and columns [c0, c1)
_FRACTION_BITS = 16  # corners are rounded to 1 / 2**16 of a cell
_COORDINATE_BITS = 29  # fixed-point coordinates stay below 2**29: E's products below 2**60, within int64


@dataclass(frozen=True)
class Lattice:
    """A window of whole cells of a plane: cell (row, col) has its centre at
    ((origin_col + col + 0.5) * resolution_m, (origin_row + row + 0.5) * resolution_m)."""

    origin_col: int
    origin_row: int
    width: int
    height: int
    resolution_m: float


@dataclass(frozen=True)
class PolygonCells:
    """Cells under any of the polygons, on the window box that holds all of them."""

    box: Box
    inside: np.ndarray  # bool (r1 - r0, c1 - c0): under a polygon
    grown: np.ndarray  # bool: under a polygon grown by the margin, cut by its bounding box grown by the margin


@dataclass
class _Runs:
    """Column runs [lo, hi) of window row `row`, per threshold (0: the polygon; 1: grown)."""

    row: np.ndarray  # (m,) window rows
    lo: np.ndarray  # (2, m) window columns
    hi: np.ndarray  # (2, m)
    box: Box  # the union of the polygons' boxes


def polygon_cells(polygons: Sequence[np.ndarray], yaw_rad: float, tx_m: float, ty_m: float, lattice: Lattice,
                  margin_m: float) -> Optional[PolygonCells]:
    """Cells of the lattice under the polygons placed by the planar pose (yaw, tx, ty); None if none reach it.

    polygons: (n, k, 2) arrays of convex polygons with k corners (either winding; repeated corners
    allowed), one array per corner count.
    """
    runs = [r for group in polygons if len(group) for r in [_runs_of(group, yaw_rad, tx_m, ty_m, lattice, margin_m)]
            if r is not None]
    if not runs:
        return None
    if len(runs) > 1:  # polygons of several corner counts
        runs = [_Runs(np.concatenate([r.row for r in runs]), np.concatenate([r.lo for r in runs], 1),
                      np.concatenate([r.hi for r in runs], 1), functools.reduce(union_box, [r.box for r in runs]))]
    return _paint(runs[0])


def union_box(a: Optional[Box], b: Box) -> Box:
    """The smallest box holding a (None: nothing) and b."""
    if a is None:
        return b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _fraction_bits(extent_cells: np.ndarray) -> np.ndarray:
    """q per polygon: 16, or fewer so that coordinates up to extent_cells stay below 2**29 in units of
    2**-q cells (then every product of E is below 2**60)."""
    return np.minimum(_FRACTION_BITS, _COORDINATE_BITS - np.frexp(extent_cells)[1])


def _runs_of(polygons: np.ndarray, yaw: float, tx: float, ty: float, lattice: Lattice,
             margin: float) -> Optional[_Runs]:
    """Runs of (n, k, 2) polygons with k corners each."""
    res = lattice.resolution_m
    c, s = math.cos(yaw), math.sin(yaw)
    corners = np.empty((2,) + polygons.shape[:2])  # x and y (n, k) in the lattice's plane
    corners[0] = tx + c * polygons[:, :, 0] - s * polygons[:, :, 1]
    corners[1] = ty + s * polygons[:, :, 0] + c * polygons[:, :, 1]
    # each polygon's bounding box grown by the margin, in cells, cut by the window: (columns, rows) x (n,)
    low, high = corners.min(2), corners.max(2)
    origin = np.array([[lattice.origin_col], [lattice.origin_row]])
    start = np.maximum(np.floor((low - margin) / res).astype(np.int64) - origin, 0)
    stop = np.minimum(np.ceil((high + margin) / res).astype(np.int64) - origin, [[lattice.width], [lattice.height]])
    keep = (start < stop).all(0)
    if not keep.all():
        if not keep.any():
            return None
        corners, low, high, start, stop = corners[:, keep], low[:, keep], high[:, keep], start[:, keep], stop[:, keep]
    n, k = corners.shape[1:]
    # corners in cells from each box's first cell's corner, then in fixed point; x / res - first is
    # monotone in x, so the corners farthest from the box are among those at the bounding box
    first = (start + origin)[:, :, None]
    margin_cells = margin / res
    extent = np.abs(np.stack([low, high], 2) / res - first).max((0, 2)) + margin_cells + 2.0
    bits = _fraction_bits(extent)
    if bits.min() < 2:
        raise InputError(f"a moving footprint reaches {extent.max():.3g} cells from its box: far too large to "
                         "rasterise (a footprint in metres given as something else?)")
    scale = np.left_shift(1, bits)[:, None]  # (n, 1) int64
    fixed = np.rint((corners / res - first) * scale).astype(np.int64)  # (2, n, k)
    following = (np.arange(k) + 1) % k  # each corner's next
    # counter-clockwise (positive twice-area): the inside is to the left of each edge
    after = fixed[:, :, following]
    clockwise = np.sum(fixed[0] * after[1] - after[0] * fixed[1], axis=1) < 0
    if clockwise.any():
        fixed[:, clockwise] = fixed[:, clockwise, ::-1]
        after = fixed[:, :, following]
    (corner_x, corner_y), (edge_x, edge_y) = fixed, after - fixed
    grown = -np.rint(margin_cells * scale * np.hypot(edge_x, edge_y)).astype(np.int64)  # E's floor when grown
    (c0, r0), (c1, r1) = start, stop
    half = scale // 2
    rows = int((r1 - r0).max())
    centre_y = (2 * np.arange(rows) + 1) * half  # (n, rows)
    # E at column j: row_term - e_y * centre_x(j), centre_x(j) = j * scale + half, so E >= floor is
    # e_y * scale * j <= row_term - e_y * half - floor: a bound on j, one per (floor, polygon, edge, row)
    row_term = edge_x[:, :, None] * (centre_y[:, None, :] - corner_y[:, :, None]) + (edge_y * corner_x)[:, :, None]
    floors = np.stack([np.zeros_like(grown), grown])  # (2, n, k): the polygon, and the polygon grown
    bound = row_term[None] - (edge_y * half + floors)[..., None]  # (2, n, k, rows)
    step = edge_y * scale  # (n, k)
    quotient = bound // np.where(step == 0, 1, np.abs(step))[None, :, :, None]  # floor division
    width = (c1 - c0)[:, None]
    # step > 0: j <= bound / step, a prefix [0, quotient + 1); step < 0: j >= ceil(bound / step) =
    # -floor(bound / |step|), a suffix; step == 0: every column or none, as bound >= 0 or not
    rising, falling = (step > 0)[None, :, :, None], (step < 0)[None, :, :, None]
    lo = np.where(falling, -quotient, 0).max(2)  # (2, n, rows): every edge's run at once
    hi = np.where(rising, quotient + 1, np.where(~falling & (bound < 0), 0, width[:, :, None])).min(2)
    # cut by the box, in window columns; rows past a box's end are empty
    row_of = r0[:, None] + np.arange(rows)
    lo = np.maximum(lo, 0) + c0[:, None]
    hi = np.where(row_of < r1[:, None], np.minimum(hi, width), 0) + c0[:, None]
    box = (min(r0.tolist()), max(r1.tolist()), min(c0.tolist()), max(c1.tolist()))  # lists: n is small
    return _Runs(row_of.ravel(), lo.reshape(2, -1), hi.reshape(2, -1), box)


def _paint(runs: _Runs) -> Optional[PolygonCells]:
    """Both layers on the runs' box, from the runs (an empty run has hi <= lo)."""
    r0, r1, c0, c1 = runs.box
    h, w = r1 - r0, c1 - c0
    # flat index of each run's first cell, layer by layer, and its length
    start = ((runs.row - r0) * w - c0 + np.array([[0], [h * w]]) + runs.lo).ravel()
    length = np.maximum(runs.hi - runs.lo, 0).ravel()
    total = int(length.sum())
    if total == 0:
        return None
    # every cell of every run: each run's start, plus 0 ... length - 1
    cells = np.repeat(start - (np.cumsum(length) - length), length) + np.arange(total)
    covered = np.zeros(2 * h * w, dtype=bool)
    covered[cells] = True
    covered = covered.reshape(2, h, w)
    return PolygonCells((r0, r1, c0, c1), covered[0], covered[1])
