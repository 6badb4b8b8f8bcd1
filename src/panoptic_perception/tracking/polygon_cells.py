"""Cells of a grid window under convex polygons (the fused grid's moving footprints), all at once.

A cell is under a polygon when its centre is on the inner side of every edge: the signed distance
(e_x (y - a_y) - e_y (x - a_x)) / |e| from the edge's line, in float64, is >= 0 (>= -margin for the
polygon grown by the margin, whose corners are mitred and cut by its bounding box). Testing every
cell of every polygon's box against every edge costs polygons x edges x cells passes of float
arithmetic. Along one row of cells, one edge accepts a run of columns (a prefix or a suffix) that
ends where the distance crosses the threshold. That crossing is predicted from the line's equation
and then confirmed by the per-cell float64 expression on the four columns around it: rounding is
monotone (a larger operand never gives a smaller rounded result), so along a row the computed
distance is monotone in the column, and a change seen among the four fixes the run exactly as the
per-cell test draws it. Where the prediction misses (a nearly horizontal edge, far off its line) the
row is tested cell by cell. A row's run under a polygon is the intersection of its edges' runs; the
union over polygons is painted by +1 / -1 at the runs' ends and a running sum along each row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

Box = Tuple[int, int, int, int]  # window rows [r0, r1) and columns [c0, c1)


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

    row: np.ndarray  # (n, rows) window rows of n polygons' boxes
    lo: np.ndarray  # (2, n, rows) window columns
    hi: np.ndarray  # (2, n, rows)


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
    if len(runs) == 1:
        return _paint(runs[0].row.ravel(), runs[0].lo.reshape(2, -1), runs[0].hi.reshape(2, -1))
    row = np.concatenate([r.row.ravel() for r in runs])
    lo = np.concatenate([r.lo.reshape(2, -1) for r in runs], 1)
    hi = np.concatenate([r.hi.reshape(2, -1) for r in runs], 1)
    return _paint(row, lo, hi)


def _runs_of(polygons: np.ndarray, yaw: float, tx: float, ty: float, lattice: Lattice,
             margin: float) -> Optional[_Runs]:
    """Runs of (n, k, 2) polygons with k corners each."""
    res = lattice.resolution_m
    c, s = math.cos(yaw), math.sin(yaw)
    x = tx + c * polygons[:, :, 0] - s * polygons[:, :, 1]  # corners in the lattice's plane (n, k)
    y = ty + s * polygons[:, :, 0] + c * polygons[:, :, 1]
    # each polygon's bounding box grown by the margin, in cells, cut by the window: (columns, rows)
    origin = np.array([[lattice.origin_col], [lattice.origin_row]])
    start = np.floor((np.stack([x.min(1), y.min(1)]) - margin) / res).astype(np.int64) - origin
    stop = np.ceil((np.stack([x.max(1), y.max(1)]) + margin) / res).astype(np.int64) - origin
    (c0, r0), (c1, r1) = np.maximum(start, 0), np.minimum(stop, [[lattice.width], [lattice.height]])
    keep = (c0 < c1) & (r0 < r1)
    if not keep.all():
        if not keep.any():
            return None
        x, y, r0, r1, c0, c1 = x[keep], y[keep], r0[keep], r1[keep], c0[keep], c1[keep]
    n, k = x.shape
    following = (np.arange(k) + 1) % k  # each corner's next
    # counter-clockwise (positive twice-area): the inside is to the left of each edge
    clockwise = np.sum(x * y[:, following] - x[:, following] * y, axis=1) < 0
    if clockwise.any():
        x[clockwise], y[clockwise] = x[clockwise, ::-1], y[clockwise, ::-1]
    edge_x, edge_y = x[:, following] - x, y[:, following] - y
    length = np.hypot(edge_x, edge_y)
    length[length == 0.0] = 1.0  # a repeated corner: no edge (0 distance passes both tests)
    rows = int((r1 - r0).max())
    centre_y = (lattice.origin_row + r0[:, None] + np.arange(rows) + 0.5) * res  # (n, rows)
    # one entry per (threshold, polygon, edge, row), flat: numpy's loops are fast on long contiguous rows
    shape = (2, n, k, rows)
    row_term = np.tile((edge_x[:, :, None] * (centre_y[:, None, :] - y[:, :, None])).ravel(), 2)
    per_edge = np.stack([edge_y, x, length, np.broadcast_to((lattice.origin_col + c0)[:, None], (n, k)),
                         np.broadcast_to((c1 - c0)[:, None], (n, k))]).reshape(5, -1)
    ey, ax, ln, base, width = np.tile(np.repeat(per_edge, rows, axis=1), 2)  # base: lattice column of col 0
    threshold = np.repeat([0.0, -margin], n * k * rows)
    terms = (row_term, ey, ax, ln, threshold, base)
    crossing = _predicted_crossing(row_term, threshold, ey, ax, ln, base, width, res)
    before, at = _accepted(terms, crossing - np.arange(1, -1, -1)[:, None], res)
    # ey > 0: accepted left of a column t (a prefix); ey < 0: from t on (a suffix); ey == 0: all or none.
    # The two checked columns pin t when one is accepted and the other is not: t is the crossing.
    end = crossing.astype(np.float64)
    rising, level = ey > 0, ey == 0
    missed = (before == at) > level
    if missed.any():
        # t lies beyond both: enough to know when that side is outside the box, else the row decides
        right = before == rising
        outside = missed & np.where(right, crossing + 1 >= width, crossing - 1 <= 0)
        end[outside] = np.where(right, width, 0.0)[outside]
        missed &= ~outside
    if missed.any():
        entry = np.flatnonzero(missed)
        row_width = width[entry]
        every = np.arange(int(row_width.max()))
        accepted = _accepted(tuple(v[entry, None] for v in terms), every, res) & (every < row_width[:, None])
        counted = accepted.sum(1)
        end[entry] = np.where(rising[entry], counted, row_width - counted)
    # each entry's run [lo, hi): a prefix [0, end), a suffix [end, width), all or none; then every edge's at once
    lo = np.where(rising | level, 0.0, end).reshape(shape).max(2)
    hi = np.where(rising, end, width)
    hi[level > before] = 0.0
    hi = hi.reshape(shape).min(2)
    # (2, n, rows): cut by the box, in window columns; rows past a box's end are empty
    row_of = r0[:, None] + np.arange(rows)
    lo = np.maximum(lo, 0.0).astype(np.int64) + c0[:, None]
    hi = np.where(row_of < r1[:, None], np.minimum(hi, (c1 - c0)[:, None]), 0).astype(np.int64) + c0[:, None]
    return _Runs(row_of, lo, hi)


def _accepted(terms: Tuple[np.ndarray, ...], col: np.ndarray, res: float) -> np.ndarray:
    """The per-cell test at columns col (relative to the boxes) of entries with terms (row_term, ey, ax,
    ln, threshold, base) that broadcast with col: the float64 expression, as written."""
    row_term, ey, ax, ln, threshold, base = terms
    centre_x = (base + col + 0.5) * res
    return (row_term - ey * (centre_x - ax)) / ln >= threshold


def _predicted_crossing(row_term: np.ndarray, threshold: np.ndarray, ey: np.ndarray, ax: np.ndarray,
                        ln: np.ndarray, base: np.ndarray, width: np.ndarray, res: float) -> np.ndarray:
    """Per entry, the first column (relative to its box) past the centre where the edge's line, moved by
    the threshold, crosses the row: ey (x - ax) = row_term - threshold |e|. Kept within a few columns of
    the box; anything for a horizontal edge (ey = 0)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        column = (ax + (row_term - threshold * ln) / ey) / res - base - 0.5
    # fmax and fmin take the number where the other is NaN (0 / 0 of a horizontal edge)
    return np.floor(np.fmin(np.fmax(column, -3.0), width + 2.0)).astype(np.int64) + 1


def _paint(row: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Optional[PolygonCells]:
    """Both layers from their runs: row (m,), lo and hi (2, m), one run of columns [lo, hi) each."""
    nonempty = lo < hi
    if not nonempty.any():
        return None
    rows = np.broadcast_to(row, lo.shape)[nonempty]
    lo, hi = lo[nonempty], hi[nonempty]
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(lo.min()), int(hi.max())
    h, w = r1 - r0, c1 - c0
    layer = np.broadcast_to(np.arange(2)[:, None], nonempty.shape)[nonempty]
    start = (layer * h + rows - r0) * w + lo - c0  # flat index of each run's first cell
    length = hi - lo
    # every cell of every run: each run's start, plus 0 ... length - 1
    cells = np.repeat(start - (np.cumsum(length) - length), length) + np.arange(int(length.sum()))
    covered = np.zeros(2 * h * w, dtype=bool)
    covered[cells] = True
    covered = covered.reshape(2, h, w)
    return PolygonCells((r0, r1, c0, c1), covered[0], covered[1])
