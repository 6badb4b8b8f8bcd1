"""Occupancy fused over time in the odom frame: a window that follows the vehicle.

Each frame's grid (geometry.projection GridResult, vehicle frame) adds its log-odds evidence,
times `evidence_weight`, to a static layer in the odom frame; the layer is clamped, and every cell
moves towards 0 (unknown) by `decay_per_s`, so what is no longer seen fades. The window is a
fixed-size grid on a lattice of whole cells of the odom frame; when the vehicle strays too far
from its centre it moves by whole cells, so the evidence is copied, never resampled.

Things that move (footprints the caller names: a tracker's moving objects) give no evidence to
the static layer - a passing car would leave a trail of occupied cells; the output shows the
current frame's grid under them, and their footprints as occupied where the frame does not see.

The grid is planar: a pose's yaw and x, y place the vehicle's ground plane; roll and pitch of the
body do not move ground cells. Grids follow nav_msgs/OccupancyGrid (rows along y, columns along x).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from panoptic_perception.config import load_dataclass
from panoptic_perception.errors import InputError
from panoptic_perception.geometry.grid import (
    CLASS_UNKNOWN,
    OCCUPANCY_OCCUPIED,
    OCCUPANCY_UNKNOWN,
    GridGeometry,
)
from panoptic_perception.geometry.projection import GridResult
from panoptic_perception.paths import CONFIG_DIR
from panoptic_perception.tracking.ego_motion import check_pose
from panoptic_perception.tracking.polygon_cells import Box, Lattice, PolygonCells, polygon_cells, union_box

DEFAULT_FUSED_GRID_CONFIG = CONFIG_DIR / "fused_grid.yaml"


@dataclass(frozen=True)
class FusedGridConfig:
    """config/fused_grid.yaml: the odom window, how evidence adds up and fades, what counts as moving."""

    size_x_m: float = 160.0
    size_y_m: float = 160.0
    resolution_m: float = 0.2
    recentre_distance_m: float = 20.0  # the window moves when the vehicle is farther than this from its centre
    evidence_weight: float = 1.0  # per frame; below 1 asks several frames to agree
    min_log_odds: float = -10.0
    max_log_odds: float = 10.0
    decay_per_s: float = 1.0  # log-odds per second every cell moves towards 0
    free_threshold: float = -0.4  # log-odds <= this -> free
    occupied_threshold: float = 0.4  # log-odds >= this -> occupied
    moving_margin_m: float = 0.5  # moving footprints grow by this (track and mask disagree a little)

    def __post_init__(self) -> None:
        if not self.resolution_m > 0:
            raise ValueError(f"resolution_m must be positive, got {self.resolution_m}")
        if not (self.size_x_m >= 2 * self.resolution_m and self.size_y_m >= 2 * self.resolution_m):
            raise ValueError(f"size_x_m and size_y_m must be at least two cells, got {self.size_x_m} x "
                             f"{self.size_y_m}")
        if not 0 <= self.recentre_distance_m < min(self.size_x_m, self.size_y_m) / 2:
            raise ValueError(f"recentre_distance_m must be within [0, half the window), got "
                             f"{self.recentre_distance_m}")
        if not self.evidence_weight > 0:
            raise ValueError(f"evidence_weight must be positive, got {self.evidence_weight}")
        if not self.min_log_odds <= self.free_threshold < 0 < self.occupied_threshold <= self.max_log_odds:
            raise ValueError("need min_log_odds <= free_threshold < 0 < occupied_threshold <= max_log_odds, got "
                             f"{self.min_log_odds}, {self.free_threshold}, {self.occupied_threshold}, "
                             f"{self.max_log_odds}")
        if self.decay_per_s < 0 or self.moving_margin_m < 0:
            raise ValueError("decay_per_s and moving_margin_m must not be negative")

    def window_cells(self) -> Tuple[int, int]:
        """(width, height): cells along x and y."""
        # round(): 160 / 0.2 is 800 cells, not 799 from float noise
        return int(round(self.size_x_m / self.resolution_m)), int(round(self.size_y_m / self.resolution_m))


def load_fused_grid_config(path: str | Path | None = None) -> FusedGridConfig:
    """Load config/fused_grid.yaml (or another file of the same shape)."""
    return load_dataclass(FusedGridConfig, DEFAULT_FUSED_GRID_CONFIG if path is None else path)


class _Lazy:
    """A result field held as an array, or as a function that computes it on first access (then kept)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_" + name

    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self._slot]
        if callable(value):
            value = value()
            obj.__dict__[self._slot] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._slot] = value


class FusedGridResult:
    """The fused grid at one stamp, odom frame, [height, width] numpy arrays (copies: safe to keep).

    occupancy: int8 -1 / 0 / 100: static layer; under moving things the current frame's grid where it
        sees the cell, else occupied within their footprints
    class_grid: uint8: class last seen where occupancy is known, else 255 (unknown)
    log_odds: float32: the static layer's evidence
    geometry: origin in the odom frame
    frame_occupancy: int8: this frame's grid alone, resampled (-1 outside its view)
    frame_log_odds: float32: this frame's evidence, resampled, unweighted (0 outside)
    moving: bool: cells under this update's moving footprints (without the margin)
    reset: time went backwards: everything before this frame was dropped

    log_odds, frame_occupancy, frame_log_odds and moving may be given as functions: the update keeps
    only the part of the window it touched and builds the full arrays when they are first read (the
    node publishes occupancy alone). FusedGrid hands out occupancy and class_grid read-only: it reuses
    their memory once nothing refers to them any more (copy them to change them).
    """

    log_odds = _Lazy()
    frame_occupancy = _Lazy()
    frame_log_odds = _Lazy()
    moving = _Lazy()

    def __init__(self, occupancy: np.ndarray, class_grid: np.ndarray, log_odds: Any, geometry: GridGeometry,
                 frame_occupancy: Any, frame_log_odds: Any, moving: Any, stamp_ns: int, reset: bool = False) -> None:
        self.occupancy = occupancy
        self.class_grid = class_grid
        self.log_odds = log_odds
        self.geometry = geometry
        self.frame_occupancy = frame_occupancy
        self.frame_log_odds = frame_log_odds
        self.moving = moving
        self.stamp_ns = stamp_ns
        self.reset = reset

    def __repr__(self) -> str:
        return f"FusedGridResult(stamp_ns={self.stamp_ns}, geometry={self.geometry}, reset={self.reset})"

    def known_part(self) -> Tuple[np.ndarray, GridGeometry]:
        """The occupancy cut to the bounding box of its known cells, and that box's geometry (odom frame):
        what is worth sending. A window that knows nothing gives its centre cell, unknown."""
        known = self.occupancy != OCCUPANCY_UNKNOWN
        rows, cols = np.flatnonzero(known.any(1)), np.flatnonzero(known.any(0))
        g = self.geometry
        if rows.size == 0:
            r0, r1, c0, c1 = g.height // 2, g.height // 2 + 1, g.width // 2, g.width // 2 + 1
        else:
            r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        part = GridGeometry(g.resolution_m, g.origin_x_m + c0 * g.resolution_m, g.origin_y_m + r0 * g.resolution_m,
                            c1 - c0, r1 - r0)
        return self.occupancy[r0:r1, c0:c1], part

    def sample(self, x_m: np.ndarray, y_m: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Occupancy and class at odom points (nearest cell; -1 / 255 outside the window)."""
        row, col, inside = self.geometry.cell_of(x_m, y_m)
        occupancy = np.where(inside, self.occupancy[row, col], OCCUPANCY_UNKNOWN).astype(np.int8)
        classes = np.where(inside, self.class_grid[row, col], CLASS_UNKNOWN).astype(np.uint8)
        return occupancy, classes

    def in_vehicle_frame(self, geometry: GridGeometry, odom_from_vehicle: np.ndarray
                         ) -> Tuple[np.ndarray, np.ndarray]:
        """Occupancy and class resampled onto a vehicle-frame grid (e.g. a frame's) at a pose."""
        yaw, tx, ty = planar_pose(odom_from_vehicle)
        x, y = geometry.cell_centers()
        c, s = math.cos(yaw), math.sin(yaw)
        return self.sample(tx + c * x - s * y, ty + s * x + c * y)


def planar_pose(odom_from_vehicle: Any) -> Tuple[float, float, float]:
    """(yaw_rad, x_m, y_m) of a 4x4 rigid transform; InputError naming what is wrong with it."""
    pose = check_pose(odom_from_vehicle)
    return math.atan2(pose[1, 0], pose[0, 0]), float(pose[0, 3]), float(pose[1, 3])




def _shifted(array: np.ndarray, d_cols: int, d_rows: int, fill: Any) -> np.ndarray:
    """out[r, c] = array[r + d_rows, c + d_cols] where that exists, else fill: whole cells, exact."""
    height, width = array.shape
    out = np.full_like(array, fill)
    r0, r1 = max(0, -d_rows), min(height, height - d_rows)
    c0, c1 = max(0, -d_cols), min(width, width - d_cols)
    if r0 < r1 and c0 < c1:
        out[r0:r1, c0:c1] = array[r0 + d_rows:r1 + d_rows, c0 + d_cols:c1 + d_cols]
    return out


class _Scratch:
    """Per-name buffers for the arrays an update needs only while it runs: a fresh array of a few
    hundred kilobytes costs its page faults again whenever the allocator has handed the memory back."""

    def __init__(self) -> None:
        self._buffers: dict = {}

    def get(self, name: str, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            # a quarter more than asked: a box that grows a little every frame does not allocate every frame
            buffer = self._buffers[name] = np.empty(max(size + size // 4, 1), dtype=dtype)
        return buffer[:size].reshape(shape)


class _Pool:
    """Things handed out in results (arrays, canvases), taken back once nothing but this pool refers to
    them (the caller dropped the result and every view): results stay safe to keep, and a steady
    stream of updates does not allocate - a fresh megabyte costs its page faults again whenever the
    allocator has handed freed memory back to the system."""

    def __init__(self, keep: int) -> None:
        self._items: List[Any] = [np.empty(0)]
        # what an item only the pool holds counts, measured as `take` measures (Python versions differ)
        self._unused = self._references(0)
        self._items.clear()
        self._keep = keep

    def _references(self, k: int) -> int:
        return sys.getrefcount(self._items[k])

    def take(self, fits: Callable[[Any], bool]) -> Any:
        """An item nothing else refers to that `fits`, or None."""
        for k in range(len(self._items)):
            if self._references(k) <= self._unused and fits(self._items[k]):
                self._items.append(self._items.pop(k))
                return self._items[-1]
        return None

    def add(self, item: Any) -> Any:
        self._items.append(item)
        if len(self._items) > self._keep:
            del self._items[0]
        return item


class _Recycler:
    """Arrays of any shape for results, from buffers in a _Pool."""

    def __init__(self, keep: int = 8) -> None:
        self._pool = _Pool(keep)

    def get(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        size = math.prod(shape)
        buffer = self._pool.take(lambda b: b.dtype == dtype and b.size >= size)
        if buffer is None:
            buffer = self._pool.add(np.empty(max(size + size // 4, 1), dtype=dtype))  # as _Scratch: room to grow
        return buffer[:size].reshape(shape)


class _Outputs:
    """The occupancy and class arrays of results, reused once nothing else refers to them. Each pair
    remembers the box beyond which it holds only unknown (-1 / 255): only that box is filled again.
    Results get them read-only, so that what is reused is what was written."""

    def __init__(self, height: int, width: int, keep: int = 4) -> None:
        self._shape = (height, width)
        self._pairs: List[list] = [[np.empty(0), np.empty(0), None]]  # [occupancy, class_grid, written box]
        self._unused = self._references(0)  # measured as `get` measures
        self._pairs.clear()
        self._keep = keep

    def _references(self, k: int) -> int:
        return max(sys.getrefcount(self._pairs[k][0]), sys.getrefcount(self._pairs[k][1]))

    def get(self, overwritten: Optional[Box]) -> list:
        """[occupancy, class_grid, None], all unknown but perhaps in the box the caller overwrites whole;
        put the box written in at [2]."""
        for k in range(len(self._pairs)):
            if self._references(k) <= self._unused:
                pair = self._pairs.pop(k)
                self._pairs.append(pair)
                pair[0].flags.writeable = pair[1].flags.writeable = True
                if pair[2] is not None:
                    for r0, r1, c0, c1 in _outside(pair[2], overwritten):
                        pair[0][r0:r1, c0:c1] = OCCUPANCY_UNKNOWN
                        pair[1][r0:r1, c0:c1] = CLASS_UNKNOWN
                    pair[2] = None
                return pair
        self._pairs.append([np.full(self._shape, OCCUPANCY_UNKNOWN, dtype=np.int8),
                            np.full(self._shape, CLASS_UNKNOWN, dtype=np.uint8), None])
        if len(self._pairs) > self._keep:
            del self._pairs[0]
        return self._pairs[-1]


class _FrameCanvas:
    """A frame's grids inside a border of one cell of 'not seen' (0 / 255 / -1): a frame cell index
    clipped to [-1, width] x [-1, height] picks the frame's value, or 'not seen' outside it, by a gather."""

    def __init__(self, geometry: GridGeometry, window_resolution_m: float) -> None:
        self.geometry = geometry
        self.window_resolution_m = window_resolution_m
        self.width, self.height = geometry.width + 2, geometry.height + 2
        self.centre = (slice(1, 1 + geometry.height), slice(1, 1 + geometry.width))
        self.log_odds = np.zeros((self.height, self.width), dtype=np.float32)
        self.class_grid = np.full((self.height, self.width), CLASS_UNKNOWN, dtype=np.uint8)
        self.occupancy = np.full((self.height, self.width), OCCUPANCY_UNKNOWN, dtype=np.int8)

    def fits(self, geometry: GridGeometry, window_resolution_m: float) -> bool:
        return geometry == self.geometry and window_resolution_m == self.window_resolution_m

    def load(self, frame: GridResult) -> None:
        # float64 evidence is rounded to float32 as where(...).astype(float32) did
        np.copyto(self.log_odds[self.centre], frame.log_odds, casting="unsafe")
        np.copyto(self.class_grid[self.centre], frame.class_grid, casting="unsafe")
        np.copyto(self.occupancy[self.centre], frame.occupancy, casting="unsafe")


class _FrameSample:
    """Where each window cell of the frame's region (rows, cols) finds its frame cell on a _FrameCanvas:
    a flat index per cell, or, when the frame is not rotated, one index per row and one per column."""

    def __init__(self, rows: slice, cols: slice, flat: Optional[np.ndarray] = None,
                 row_index: Optional[np.ndarray] = None, col_index: Optional[np.ndarray] = None) -> None:
        self.rows, self.cols = rows, cols
        self.flat, self.row_index, self.col_index = flat, row_index, col_index
        self.slices: Optional[Tuple[slice, slice]] = None
        if flat is None:  # runs of consecutive cells (the usual case) are slices of the canvas
            r0, r1, c0, c1 = int(row_index[0]), int(row_index[-1]), int(col_index[0]), int(col_index[-1])
            if (r1 - r0 == len(row_index) - 1 and c1 - c0 == len(col_index) - 1
                    and np.array_equal(row_index, np.arange(r0, r1 + 1))
                    and np.array_equal(col_index, np.arange(c0, c1 + 1))):
                self.slices = slice(r0, r1 + 1), slice(c0, c1 + 1)

    def take(self, canvas: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The canvas' values on the region, in `out` if given (else a view of the canvas when the indices
        are runs)."""
        if self.flat is not None:
            # every index is inside the canvas: the mode only lets `out` be written directly ('wrap' is the
            # cheapest)
            return np.take(canvas, self.flat, out=out, mode="wrap")
        if self.slices is not None:
            if out is None:
                return canvas[self.slices]
            np.copyto(out, canvas[self.slices])
            return out
        return np.take(np.take(canvas, self.row_index, axis=0), self.col_index, axis=1)

    def take_box(self, canvas: np.ndarray, box: Box, fill: Any) -> np.ndarray:
        """The canvas' values on a window box; fill where the box leaves the region."""
        r0, r1, c0, c1 = box
        i0, i1 = max(r0, self.rows.start), min(r1, self.rows.stop)
        j0, j1 = max(c0, self.cols.start), min(c1, self.cols.stop)
        si, sj = slice(i0 - self.rows.start, i1 - self.rows.start), slice(j0 - self.cols.start, j1 - self.cols.start)
        if i0 >= i1 or j0 >= j1:
            return np.full((r1 - r0, c1 - c0), fill, dtype=canvas.dtype)
        if self.flat is not None:
            values = np.take(canvas, self.flat[si, sj])
        elif self.slices is not None:
            rows, cols = self.slices
            values = canvas[rows.start + si.start:rows.start + si.stop, cols.start + sj.start:cols.start + sj.stop]
        else:
            values = np.take(np.take(canvas, self.row_index[si], axis=0), self.col_index[sj], axis=1)
        if (i0, i1, j0, j1) == box:  # the footprint lies in the frame's region, as a moving thing seen now does
            return values
        out = np.full((r1 - r0, c1 - c0), fill, dtype=canvas.dtype)
        out[i0 - r0:i1 - r0, j0 - c0:j1 - c0] = values
        return out


def _near_multiples(p: np.ndarray, q: np.ndarray, bits: int, slack: int) -> Tuple[np.ndarray, np.ndarray]:
    """(i, j) of the integer sums q[k, i] + p[k, j] (any row k of p [n, w] and q [n, h]) that lie within
    `slack` of a multiple of 2**bits.

    Sorting p by its remainder makes this two binary searches per i instead of a pass over all h * w
    sums: the cells are few (a fraction ~ 4 * slack / 2**bits)."""
    one, n, h, w = 1 << bits, len(p), q.shape[1], p.shape[1]
    remainder = p & (one - 1)
    # every row's remainders twice (they wrap around), rows kept apart by 4 * one: one sorted array
    apart = np.arange(0, 4 * one * n, 4 * one, dtype=np.int64)[:, None]
    ordered = np.sort(remainder, axis=1)
    ordered = (np.concatenate([ordered, ordered + one], axis=1) + apart).ravel()
    start = ((((-slack) - q) & (one - 1)) + apart).ravel()
    # remainders within [start, start + 2 * slack]: integers, so 'left' of start + 2 * slack + 1
    lo, hi = np.split(np.searchsorted(ordered, np.concatenate([start, start + (2 * slack + 1)])), 2)
    count = hi - lo
    hits = np.flatnonzero(count)
    if hits.size == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    order = np.argsort(remainder, axis=1, kind="stable")  # np.sort's order: equal remainders are equal
    count = count[hits]
    at = np.repeat(hits, count)
    # positions lo[hit] ... hi[hit] - 1 of every hit, one after another
    position = np.arange(len(at)) - np.repeat(np.cumsum(count) - count, count) + lo[at]
    k = at // h
    return at % h, order[k, (position - 2 * w * k) % w]


def _sample(geometry: GridGeometry, canvas: _FrameCanvas, origin_cell: Tuple[int, int], res: float, yaw: float,
            tx: float, ty: float, rows: slice, cols: slice, scratch: Optional[_Scratch] = None) -> _FrameSample:
    """The frame cell under each window cell centre of the region, as the per-cell float64 arithmetic
    of `exact` (odom centre -> vehicle frame -> floor of the frame's cell coordinate) picks it."""
    f_res = geometry.resolution_m
    # odom centres of the window cells the frame can reach, from lattice indices (the same
    # values whatever the window's position), then into the vehicle frame
    dx = (origin_cell[0] + np.arange(cols.start, cols.stop) + 0.5) * res - tx
    dy = (origin_cell[1] + np.arange(rows.start, rows.stop) + 0.5) * res - ty
    c, s = math.cos(yaw), math.sin(yaw)
    ox, oy = geometry.origin_x_m, geometry.origin_y_m
    h, w = rows.stop - rows.start, cols.stop - cols.start
    if s == 0.0:
        # s * dy and -s * dx are +-0: a column's cells share the frame column, a row's the frame row
        col = np.floor((c * dx + s * dy[0] - ox) / f_res).astype(np.intp) + 1
        row = np.floor((-s * dx[0] + c * dy - oy) / f_res).astype(np.intp) + 1
        np.clip(col, 0, canvas.width - 1, out=col)
        np.clip(row, 0, canvas.height - 1, out=row)
        return _FrameSample(rows, cols, row_index=row, col_index=col)
    # vehicle x = cx[j] + sx[i], y = cy[j] + sy[i]: each a sum of a column term and a row term
    along_cols = np.array([[c], [-s]]) * dx  # cx; cy
    along_rows = np.array([[s], [c]]) * dy  # sx; sy

    def exact(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Flat canvas index of cells (i, j) of the region: the reference arithmetic."""
        col = np.floor(((along_cols[0, j] + along_rows[0, i]) - ox) / f_res).astype(np.intp) + 1
        row = np.floor(((along_cols[1, j] + along_rows[1, i]) - oy) / f_res).astype(np.intp) + 1
        return np.clip(row, 0, canvas.height - 1) * canvas.width + np.clip(col, 0, canvas.width - 1)

    # Fixed point: the canvas column is floor(p[0, j] + q[0, i]), the row floor(p[1, j] + q[1, i]). In
    # integers of 2**-bits, (p_fix + q_fix) >> bits is that floor except where the sum lies within
    # rounding (one unit; the float error is far below it) of a whole cell: those few cells get the
    # reference arithmetic.
    p = (along_cols - np.array([[ox], [oy]])) / f_res + 1.0  # + 1: the canvas' border
    q = along_rows / f_res
    ends_p, ends_q = p[:, [0, -1]].tolist(), q[:, [0, -1]].tolist()  # p and q are linear: their ends bound them
    magnitude = max(max(map(abs, a)) + max(map(abs, b)) for a, b in zip(ends_p, ends_q))
    bits = min(20, 30 - int(magnitude + 2).bit_length())  # sums and terms stay within int32
    if bits < 10:  # a frame of thousands of cells: every cell by the reference arithmetic
        i, j = np.indices((h, w)).reshape(2, -1)
        return _FrameSample(rows, cols, flat=exact(i, j).reshape(h, w))
    scratch = scratch if scratch is not None else _Scratch()
    scale = float(1 << bits)
    p_fix = np.rint(p * scale).astype(np.int32)
    q_fix = np.rint(q * scale).astype(np.int32)
    sums = np.add(p_fix[:, None, :], q_fix[:, :, None], out=scratch.get("sums", (2, h, w), np.int32))
    np.right_shift(sums, bits, out=sums)
    np.clip(sums, 0, np.array([[[canvas.width - 1]], [[canvas.height - 1]]], dtype=np.int32), out=sums)  # border
    col_sum, row_sum = sums
    row_sum *= canvas.width  # int32 loops, then one widening copy: mixed int32 / int64 loops are slow
    row_sum += col_sum
    flat = scratch.get("flat", (h, w), np.intp)
    np.copyto(flat, row_sum)
    i, j = _near_multiples(p_fix, q_fix, bits, slack=2)  # 1 would do (rounding <= 1 unit): a margin
    if i.size:
        flat[i, j] = exact(i, j)
    return _FrameSample(rows, cols, flat=flat)


class FusedGrid:
    """Accumulates per-frame grids into a static odom-frame layer; one instance per odom frame.

    Only a box of the window is worked on per frame: the static layer is exactly 0 outside the box
    `_box` (it grows to hold every frame's region, and shrinks every SHRINK_EVERY updates to the
    cells that are not 0 yet: evidence decays to exactly 0 within max(|min_log_odds|, max_log_odds)
    / decay_per_s). The box's log-odds are one contiguous array (numpy's fast loops need that; on a
    box cut out of the window they run 4-5 times slower), a new one each update, so that a result
    can keep the previous one instead of a copy. The results are the same, cell for cell, as fusing
    the whole window every frame.
    """

    SHRINK_EVERY = 10  # updates between cutting the box down to its non-zero cells
    GROW_CELLS = 32  # a box side the frame keeps passing moves this much farther: fewer re-layouts

    def __init__(self, config: Optional[FusedGridConfig] = None) -> None:
        self._config = config if config is not None else FusedGridConfig()
        self._width, self._height = self._config.window_cells()
        self._box: Optional[Box] = None  # the static layer is 0 outside it
        self._last_region: Optional[Box] = None  # the previous frame's region (which way the box grows)
        self._log_odds: Optional[np.ndarray] = None  # float32 [box rows, box cols]: the static layer on the box
        self._class = np.full((self._height, self._width), CLASS_UNKNOWN, dtype=np.uint8)
        self._origin_cell: Optional[Tuple[int, int]] = None  # odom lattice index of cell (0, 0): (x, y)
        self._stamp_ns: Optional[int] = None
        self._updates = 0
        self._canvases = _Pool(keep=4)
        self._scratch = _Scratch()
        self._recycler = _Recycler()
        self._outputs_pool = _Outputs(self._height, self._width)

    @property
    def config(self) -> FusedGridConfig:
        return self._config

    @property
    def geometry(self) -> Optional[GridGeometry]:
        """The window in the odom frame; None before the first frame."""
        if self._origin_cell is None:
            return None
        res = self._config.resolution_m
        return GridGeometry(res, self._origin_cell[0] * res, self._origin_cell[1] * res, self._width, self._height)

    def reset(self) -> None:
        """Forget everything (a new drive, or odom restarted)."""
        self._box = self._log_odds = self._last_region = None
        self._class.fill(CLASS_UNKNOWN)
        self._origin_cell = None
        self._stamp_ns = None

    def update(self, frame_grid: GridResult, odom_from_vehicle: Any, stamp_ns: int,
               moving_footprints: Sequence[np.ndarray] = ()) -> FusedGridResult:
        """Add one frame (vehicle-frame grid at pose odom_from_vehicle, taken at stamp_ns).

        moving_footprints: (k, 2) convex polygons, vehicle frame, of the things moving now.
        A stamp before the previous one (a bag played again) resets the grid first; the result says so.
        """
        frame = _numpy_grid(frame_grid)
        yaw, tx, ty = planar_pose(odom_from_vehicle)
        stamp_ns = _checked_stamp(stamp_ns)
        polygons = _checked_polygons(moving_footprints)
        went_back = self._stamp_ns is not None and stamp_ns < self._stamp_ns
        if went_back:
            self.reset()
        dt_s = 0.0 if self._stamp_ns is None else (stamp_ns - self._stamp_ns) * 1e-9
        self._stamp_ns = stamp_ns
        self._follow(tx, ty)

        moving = self._moving_cells(polygons, yaw, tx, ty)
        whole = self._frame_region(frame.geometry, yaw, tx, ty)
        region = None
        if whole is not None:
            # Only frame cells with evidence or a class change the static layer: the region is the
            # rotated bounding box of those (a camera sees a wedge of its grid), and of the moving
            # footprints, which show the frame's own cells
            cells = _cells_with_something(frame)
            if cells is not None:
                region = self._frame_region(frame.geometry, yaw, tx, ty, cells)
            if moving is not None:
                r0, r1, c0, c1 = moving.box
                region = _union_slices(region, (slice(r0, r1), slice(c0, c1)))
            region = _intersection_slices(region, whole)
        self._decay(np.float32(self._config.decay_per_s * dt_s), region)
        sample, canvas, kept_frame = None, None, None
        if region is not None:
            sample, canvas = self._add_frame(frame, region, moving, yaw, tx, ty)
        if whole is not None:
            if canvas is None:
                canvas = self._canvas_of(frame)
            # the frame_* layers are resampled from the canvas if they are read: it stays the result's
            kept_frame = (frame.geometry, self._config.resolution_m, self._origin_cell, yaw, tx, ty, whole, canvas)
        outputs = self._outputs_pool.get(self._box)
        occupancy, class_grid = outputs[0], outputs[1]
        written = self._outputs(occupancy, class_grid)
        if moving is not None:
            self._show_moving(occupancy, class_grid, moving, sample, canvas)
            written = union_box(written, moving.box)
        outputs[2] = written
        occupancy.flags.writeable = class_grid.flags.writeable = False
        kept = None if self._box is None else (self._box, self._log_odds)  # the next update writes a new array
        self._updates += 1
        if self._updates % self.SHRINK_EVERY == 0:
            self._shrink()
        shape = (self._height, self._width)
        frame_layers = _lazy_frame_layers(shape, kept_frame)
        return FusedGridResult(occupancy, class_grid, _lazy_log_odds(shape, kept), self.geometry,
                               lambda: frame_layers()[1], lambda: frame_layers()[0],
                               _lazy_moving(shape, moving), stamp_ns, went_back)

    def _decay(self, step: np.float32, region: Optional[Tuple[slice, slice]]) -> None:
        """The box's log-odds moved towards 0 by `step` into a new array, the box grown to hold the region."""
        box = target = self._box
        if region is not None:
            need = (region[0].start, region[0].stop, region[1].start, region[1].stop)
            if box is None:
                target = need
            elif not (box[0] <= need[0] and need[1] <= box[1] and box[2] <= need[2] and need[3] <= box[3]):
                # a side the frame's region keeps moving out (it did since the last frame) moves GROW_CELLS
                # farther than the region: fewer re-layouts while driving
                last = self._last_region if self._last_region is not None else need
                grow = [self.GROW_CELLS if moved else 0 for moved in (need[0] < last[0], need[1] > last[1],
                                                                      need[2] < last[2], need[3] > last[3])]
                target = _clipped((min(box[0], need[0] - grow[0]), max(box[1], need[1] + grow[1]),
                                   min(box[2], need[2] - grow[2]), max(box[3], need[3] + grow[3])),
                                  self._height, self._width)
            self._last_region = need
        if target is None:
            return
        new = self._recycler.get((target[1] - target[0], target[3] - target[2]), np.float32)
        if box is None:
            new.fill(0.0)
        else:
            out = new
            if target != box:
                new.fill(0.0)
                out = new[box[0] - target[0]:box[1] - target[0], box[2] - target[2]:box[3] - target[2]]
            if step > 0:
                # towards 0 by `step`, never past it: L - clip(L, -step, step) is exactly the old
                # max(L - step, 0) + min(L + step, 0) (one of the two terms is 0; x - (-y) is x + y)
                # (clip as min then max: two passes, each faster than clip's one)
                towards = np.minimum(self._log_odds, step,
                                     out=self._scratch.get("towards", self._log_odds.shape, np.float32))
                np.maximum(towards, -step, out=towards)
                np.subtract(self._log_odds, towards, out=out)
            else:
                np.copyto(out, self._log_odds)
        self._box, self._log_odds = target, new

    def _add_frame(self, frame: GridResult, region: Tuple[slice, slice], moving: Optional[PolygonCells],
                   yaw: float, tx: float, ty: float) -> Tuple[_FrameSample, _FrameCanvas]:
        """The frame's evidence and classes into the static layer over its region, but under moving things."""
        cfg, scratch = self._config, self._scratch
        rows, cols = region
        h, w = rows.stop - rows.start, cols.stop - cols.start
        canvas = self._canvas_of(frame)
        sample = _sample(frame.geometry, canvas, self._origin_cell, cfg.resolution_m, yaw, tx, ty, rows, cols,
                         scratch)
        evidence = sample.take(canvas.log_odds, scratch.get("evidence", (h, w), np.float32))
        classes = sample.take(canvas.class_grid, scratch.get("classes", (h, w), np.uint8))
        # the region's log-odds in a contiguous copy: numpy's float loops are several times faster there
        r0, c0 = self._box[0], self._box[2]
        target = self._log_odds[rows.start - r0:rows.stop - r0, cols.start - c0:cols.stop - c0]
        window = scratch.get("window", (h, w), np.float32)
        np.copyto(window, target)
        window_class = self._class[rows, cols]  # a view: byte loops run as fast on it as on a copy
        # moving things add nothing: their cells keep what they held (decayed), as before the frame
        part = None if moving is None else _within(moving.box, (rows.start, rows.stop, cols.start, cols.stop))
        if part is not None:
            in_box, (r, c) = part
            r = slice(r.start - rows.start, r.stop - rows.start)
            c = slice(c.start - cols.start, c.stop - cols.start)
            held = (r, c, window[r, c].copy(), window_class[r, c].copy(), moving.grown[in_box])
        if cfg.evidence_weight != 1.0:  # x * 1 is x: no pass for the default
            evidence = np.multiply(evidence, np.float32(cfg.evidence_weight),
                                   out=scratch.get("weighted", (h, w), np.float32))
        window += evidence
        # clip(x, lo, hi) is max(min(x, hi), lo) for numbers; min and max take half clip's time
        np.minimum(window, np.float32(cfg.max_log_odds), out=window)
        np.maximum(window, np.float32(cfg.min_log_odds), out=window)
        # the class where the frame knows it, else the old one, without a branch per cell: with
        # m = 255 where known and 0 where not, min(class, old | m) is class (known) or old (class is 255)
        m = np.not_equal(classes, CLASS_UNKNOWN, out=scratch.get("known", (h, w), bool)).view(np.uint8)
        m = np.negative(m, out=scratch.get("known255", (h, w), np.uint8))
        np.bitwise_or(window_class, m, out=m)
        np.minimum(classes, m, out=window_class)
        if part is not None:
            r, c, log_odds, class_grid, grown = held
            np.copyto(window[r, c], log_odds, where=grown)
            np.copyto(window_class[r, c], class_grid, where=grown)
        np.copyto(target, window)
        return sample, canvas

    def _canvas_of(self, frame: GridResult) -> _FrameCanvas:
        """The frame on a canvas no result refers to any more."""
        res = self._config.resolution_m
        canvas = self._canvases.take(lambda c: c.fits(frame.geometry, res))
        if canvas is None:
            canvas = self._canvases.add(_FrameCanvas(frame.geometry, res))
        canvas.load(frame)
        return canvas

    def _outputs(self, occupancy: np.ndarray, class_grid: np.ndarray) -> Optional[Box]:
        """Occupancy and class of the static layer into all-unknown arrays (it is unknown outside the box);
        the box written."""
        cfg, scratch = self._config, self._scratch
        if self._box is None:
            return None
        r0, r1, c0, c1 = self._box
        log_odds = self._log_odds
        free = np.less_equal(log_odds, cfg.free_threshold, out=scratch.get("free", log_odds.shape, bool))
        occupied = np.greater_equal(log_odds, cfg.occupied_threshold,
                                    out=scratch.get("occupied", log_odds.shape, bool))
        # -1 + free + 101 * occupied (never both: 0 free, 100 occupied), in int8 without a branch per cell
        part = scratch.get("occupancy", log_odds.shape, np.int8)
        np.multiply(occupied.view(np.int8), np.int8(OCCUPANCY_OCCUPIED - OCCUPANCY_UNKNOWN), out=part)
        np.add(part, free.view(np.int8), out=part)
        np.add(part, np.int8(OCCUPANCY_UNKNOWN), out=occupancy[r0:r1, c0:c1])
        # the class where known, else 255: class | (255 where unknown)
        unknown = np.equal(part, 0, out=free).view(np.uint8)  # part is occupancy + 1: 0 where unknown
        np.negative(unknown, out=unknown)
        np.bitwise_or(self._class[r0:r1, c0:c1], unknown, out=class_grid[r0:r1, c0:c1])
        return self._box

    def _show_moving(self, occupancy: np.ndarray, class_grid: np.ndarray, moving: PolygonCells,
                     sample: Optional[_FrameSample], canvas: Optional[_FrameCanvas]) -> None:
        """Under moving things the static layer holds what was there before they came (road seen free a
        moment ago): the current frame decides where it sees the cell, and a moving thing's own footprint
        is occupied where it does not. Whether the frame sees a cell does not depend on the footprint, so
        all footprints are applied at once on the box that holds them."""
        box, inside, grown = moving.box, moving.inside, moving.grown
        r0, r1, c0, c1 = box
        if sample is not None:
            frame_occupancy = sample.take_box(canvas.occupancy, box, OCCUPANCY_UNKNOWN)
            frame_class = sample.take_box(canvas.class_grid, box, CLASS_UNKNOWN)
            seen = frame_occupancy != OCCUPANCY_UNKNOWN
        else:
            seen = np.zeros_like(inside)
        now = np.logical_and(grown, seen, out=seen)
        unseen_thing = inside > now  # inside and not seen: now holds all of inside that is seen
        window_occupancy, window_class = occupancy[r0:r1, c0:c1], class_grid[r0:r1, c0:c1]
        if sample is not None:
            np.copyto(window_occupancy, frame_occupancy, where=now)
            np.copyto(window_class, frame_class, where=now)
        np.copyto(window_occupancy, OCCUPANCY_OCCUPIED, where=unseen_thing)
        np.copyto(window_class, CLASS_UNKNOWN, where=unseen_thing)

    # -- window --------------------------------------------------------------------------------

    def _follow(self, x_m: float, y_m: float) -> None:
        """Place the window around the vehicle, or move it by whole cells when the vehicle strays."""
        res = self._config.resolution_m
        target = (int(round(x_m / res - self._width / 2)), int(round(y_m / res - self._height / 2)))
        if self._origin_cell is None:
            self._origin_cell = target
            return
        centre_x = (self._origin_cell[0] + self._width / 2) * res
        centre_y = (self._origin_cell[1] + self._height / 2) * res
        limit = self._config.recentre_distance_m
        if abs(x_m - centre_x) <= limit and abs(y_m - centre_y) <= limit:
            return
        d_cols, d_rows = target[0] - self._origin_cell[0], target[1] - self._origin_cell[1]
        if self._last_region is not None:
            r0, r1, c0, c1 = self._last_region
            self._last_region = (r0 - d_rows, r1 - d_rows, c0 - d_cols, c1 - d_cols)
        if self._box is not None:  # the box's evidence stays where it is in the odom frame: the box moves
            r0, r1, c0, c1 = moved = (self._box[0] - d_rows, self._box[1] - d_rows,
                                      self._box[2] - d_cols, self._box[3] - d_cols)
            self._box = _clipped(moved, self._height, self._width)
            if self._box is None:
                self._log_odds = None
            elif self._box != moved:
                n0, n1, m0, m1 = self._box
                self._log_odds = self._log_odds[n0 - r0:n1 - r0, m0 - c0:m1 - c0].copy()
        self._class = _shifted(self._class, d_cols, d_rows, CLASS_UNKNOWN)
        self._origin_cell = target

    def _shrink(self) -> None:
        """Cut the box down to its cells that are not 0."""
        if self._box is None:
            return
        nonzero = np.not_equal(self._log_odds, 0, out=self._scratch.get("free", self._log_odds.shape, bool))
        rows, cols = np.flatnonzero(nonzero.any(1)), np.flatnonzero(nonzero.any(0))
        if rows.size == 0:
            self._box = self._log_odds = None
            return
        r0, c0 = self._box[0], self._box[2]
        box = (r0 + int(rows[0]), r0 + int(rows[-1]) + 1, c0 + int(cols[0]), c0 + int(cols[-1]) + 1)
        if box != self._box:
            self._log_odds = self._log_odds[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].copy()
            self._box = box

    def _frame_region(self, geometry: GridGeometry, yaw: float, tx: float, ty: float,
                      cells: Optional[Box] = None) -> Optional[Tuple[slice, slice]]:
        """Window rows and columns the frame grid (or its cells rows [r0, r1), columns [c0, c1)) can reach
        at this pose: their rotated bounding box."""
        r0, r1, c0, c1 = (0, geometry.height, 0, geometry.width) if cells is None else cells
        ox, oy, res = geometry.origin_x_m, geometry.origin_y_m, geometry.resolution_m
        x0, y0, x1, y1 = ox + c0 * res, oy + r0 * res, ox + c1 * res, oy + r1 * res
        c, s = math.cos(yaw), math.sin(yaw)
        corners = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
        x = [tx + c * cx - s * cy for cx, cy in corners]
        y = [ty + s * cx + c * cy for cx, cy in corners]
        return self._cells_of_box(min(x), max(x), min(y), max(y))

    def _cells_of_box(self, x_min: float, x_max: float, y_min: float, y_max: float
                      ) -> Optional[Tuple[slice, slice]]:
        res = self._config.resolution_m
        c0 = max(int(math.floor(x_min / res)) - self._origin_cell[0], 0)
        c1 = min(int(math.ceil(x_max / res)) - self._origin_cell[0], self._width)
        r0 = max(int(math.floor(y_min / res)) - self._origin_cell[1], 0)
        r1 = min(int(math.ceil(y_max / res)) - self._origin_cell[1], self._height)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def _moving_cells(self, polygons: List[np.ndarray], yaw: float, tx: float, ty: float) -> Optional[PolygonCells]:
        """Window cells under the moving footprints (vehicle frame, at pose yaw, tx, ty), and under them
        grown by moving_margin_m (edges moved out; corners mitred, cut by the grown bounding box)."""
        lattice = Lattice(self._origin_cell[0], self._origin_cell[1], self._width, self._height,
                          self._config.resolution_m)
        return polygon_cells(polygons, yaw, tx, ty, lattice, self._config.moving_margin_m)


def _union_slices(a: Optional[Tuple[slice, slice]], b: Tuple[slice, slice]) -> Tuple[slice, slice]:
    if a is None:
        return b
    return (slice(min(a[0].start, b[0].start), max(a[0].stop, b[0].stop)),
            slice(min(a[1].start, b[1].start), max(a[1].stop, b[1].stop)))


def _intersection_slices(a: Optional[Tuple[slice, slice]], b: Tuple[slice, slice]) -> Optional[Tuple[slice, slice]]:
    if a is None:
        return None
    rows = slice(max(a[0].start, b[0].start), min(a[0].stop, b[0].stop))
    cols = slice(max(a[1].start, b[1].start), min(a[1].stop, b[1].stop))
    return (rows, cols) if rows.start < rows.stop and cols.start < cols.stop else None


def _cells_with_something(frame: GridResult) -> Optional[Box]:
    """Rows [r0, r1) and columns [c0, c1) of the frame's cells with evidence or a class; None if none."""
    something = frame.log_odds != 0
    something |= frame.class_grid != CLASS_UNKNOWN
    rows = np.flatnonzero(something.any(1))
    if rows.size == 0:
        return None
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(something[r0:r1].any(0))
    return r0, r1, int(cols[0]), int(cols[-1]) + 1


def _outside(box: Box, cut: Optional[Box]) -> List[Box]:
    """box less cut, as up to four boxes."""
    r0, r1, c0, c1 = box
    if cut is None or cut[0] >= r1 or cut[1] <= r0 or cut[2] >= c1 or cut[3] <= c0:
        return [box]
    i0, i1 = max(r0, cut[0]), min(r1, cut[1])
    parts = [(r0, i0, c0, c1), (i1, r1, c0, c1), (i0, i1, c0, max(c0, cut[2])), (i0, i1, min(c1, cut[3]), c1)]
    return [p for p in parts if p[0] < p[1] and p[2] < p[3]]


def _clipped(box: Box, height: int, width: int) -> Optional[Box]:
    r0, r1, c0, c1 = max(box[0], 0), min(box[1], height), max(box[2], 0), min(box[3], width)
    return (r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None


def _within(box: Box, region: Box) -> Optional[Tuple[Tuple[slice, slice], Tuple[slice, slice]]]:
    """The part of box inside region: (slices relative to box, window slices), or None."""
    r0, r1 = max(box[0], region[0]), min(box[1], region[1])
    c0, c1 = max(box[2], region[2]), min(box[3], region[3])
    if r0 >= r1 or c0 >= c1:
        return None
    return ((slice(r0 - box[0], r1 - box[0]), slice(c0 - box[2], c1 - box[2])),
            (slice(r0, r1), slice(c0, c1)))


def _lazy_log_odds(shape: Tuple[int, int], kept: Optional[Tuple[Box, np.ndarray]]) -> Callable[[], np.ndarray]:
    def build() -> np.ndarray:
        out = np.zeros(shape, dtype=np.float32)
        if kept is not None:
            (r0, r1, c0, c1), values = kept
            out[r0:r1, c0:c1] = values
        return out
    return build


def _lazy_frame_layers(shape: Tuple[int, int], kept_frame: Optional[tuple]) -> Callable[[], Tuple[np.ndarray,
                                                                                                np.ndarray]]:
    """frame_log_odds and frame_occupancy, resampled again from the frame's canvas (which no later update
    touches while the result holds it)."""
    built: List[Tuple[np.ndarray, np.ndarray]] = []

    def build() -> Tuple[np.ndarray, np.ndarray]:
        if not built:
            log_odds = np.zeros(shape, dtype=np.float32)
            occupancy = np.full(shape, OCCUPANCY_UNKNOWN, dtype=np.int8)
            if kept_frame is not None:
                geometry, res, origin_cell, yaw, tx, ty, (rows, cols), canvas = kept_frame
                sample = _sample(geometry, canvas, origin_cell, res, yaw, tx, ty, rows, cols)
                log_odds[rows, cols] = sample.take(canvas.log_odds)
                occupancy[rows, cols] = sample.take(canvas.occupancy)
            built.append((log_odds, occupancy))
        return built[0]
    return build


def _lazy_moving(shape: Tuple[int, int], moving: Optional[PolygonCells]) -> Callable[[], np.ndarray]:
    def build() -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        if moving is not None:
            r0, r1, c0, c1 = moving.box
            out[r0:r1, c0:c1] = moving.inside
        return out
    return build


def _numpy_grid(frame_grid: Any) -> GridResult:
    if not isinstance(frame_grid, GridResult):
        raise InputError(f"frame_grid must be a GridResult, got {type(frame_grid).__name__}")
    frame = frame_grid if isinstance(frame_grid.log_odds, np.ndarray) else frame_grid.to_numpy()
    shape = (frame.geometry.height, frame.geometry.width)
    for name in ("occupancy", "class_grid", "log_odds"):
        if np.shape(getattr(frame, name)) != shape:
            raise InputError(f"frame_grid.{name} has shape {np.shape(getattr(frame, name))}, its geometry "
                             f"says {shape}")
    # a sum is finite only if every term is (one pass, no temporary); it may also overflow: then look closer
    if not math.isfinite(float(np.sum(frame.log_odds))) and not np.isfinite(frame.log_odds).all():
        raise InputError("frame_grid.log_odds has non-finite values")
    return frame


def _checked_stamp(stamp_ns: Any) -> int:
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)) or stamp_ns < 0:
        raise InputError(f"stamp_ns must be a non-negative integer (nanoseconds), got {stamp_ns!r}")
    return int(stamp_ns)


def _checked_polygons(footprints: Any) -> List[np.ndarray]:
    """The footprints as arrays of corners, grouped by corner count: one (n, k, 2) array per k (a frame's
    footprints are usually all rectangles, and come as one such array from the tracking stage)."""
    if isinstance(footprints, np.ndarray) and footprints.ndim == 3:
        stacked = footprints.astype(np.float64, copy=False)
        if stacked.shape[1] >= 3 and stacked.shape[2] == 2 and np.isfinite(stacked).all():
            return [stacked] if len(stacked) else []
    groups: dict = {}
    for k, footprint in enumerate(footprints):
        polygon = np.asarray(footprint, dtype=np.float64)
        if polygon.ndim != 2 or polygon.shape[1] != 2 or polygon.shape[0] < 3:
            raise InputError(f"moving footprint {k} must be (k >= 3, 2) corners, got shape {polygon.shape}")
        if not np.isfinite(polygon).all():
            raise InputError(f"moving footprint {k} has non-finite corners")
        groups.setdefault(len(polygon), []).append(polygon)
    return [np.stack(group) for group in groups.values()]
