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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from panoptic_perception.config import load_dataclass
from panoptic_perception.errors import InputError
from panoptic_perception.geometry.grid import (
    CLASS_UNKNOWN,
    OCCUPANCY_FREE,
    OCCUPANCY_OCCUPIED,
    OCCUPANCY_UNKNOWN,
    GridGeometry,
)
from panoptic_perception.geometry.projection import GridResult
from panoptic_perception.paths import CONFIG_DIR
from panoptic_perception.tracking.ego_motion import check_pose

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
    node publishes occupancy alone).
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


Box = Tuple[int, int, int, int]  # window rows [r0, r1) and columns [c0, c1)


def _shifted(array: np.ndarray, d_cols: int, d_rows: int, fill: Any) -> np.ndarray:
    """out[r, c] = array[r + d_rows, c + d_cols] where that exists, else fill: whole cells, exact."""
    height, width = array.shape
    out = np.full_like(array, fill)
    r0, r1 = max(0, -d_rows), min(height, height - d_rows)
    c0, c1 = max(0, -d_cols), min(width, width - d_cols)
    if r0 < r1 and c0 < c1:
        out[r0:r1, c0:c1] = array[r0 + d_rows:r1 + d_rows, c0 + d_cols:c1 + d_cols]
    return out


def _polygon_masks(x_m: np.ndarray, y_m: np.ndarray, polygon: np.ndarray, margin_m: float
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Points (x_m [1, w], y_m [h, 1]) inside a convex polygon, and inside it grown by margin_m (edges moved
    out; corners mitred)."""
    area2 = np.sum(polygon[:, 0] * np.roll(polygon[:, 1], -1) - np.roll(polygon[:, 0], -1) * polygon[:, 1])
    if area2 < 0:  # clockwise: the inside is to the right of each edge
        polygon = polygon[::-1]
    a = polygon
    edge = np.roll(polygon, -1, axis=0) - a
    length = np.hypot(edge[:, 0], edge[:, 1])
    keep = length != 0.0
    a, edge, length = a[keep, :, None, None], edge[keep, :, None, None], length[keep, None, None]
    # signed distance to each edge's line, positive inside: [edges, h, w]
    distance = (edge[:, 0] * (y_m - a[:, 1]) - edge[:, 1] * (x_m - a[:, 0])) / length
    return (distance >= 0.0).all(0), (distance >= -margin_m).all(0)


class _FrameCanvas:
    """A frame's grids inside a border of 'not seen' (0 / 255 / -1) wide enough that every window cell of
    the frame's region, at any yaw, has a cell here: resampling is a gather without bounds tests."""

    def __init__(self, geometry: GridGeometry, window_resolution_m: float) -> None:
        self.geometry = geometry
        self.window_resolution_m = window_resolution_m
        res, width, height = geometry.resolution_m, geometry.width, geometry.height
        # region cells lie in the rotated frame's bounding box (a square of the half-diagonal around its
        # centre, whatever the yaw) grown by half a window cell: within sqrt(2) half-diagonals + a cell
        reach = (math.sqrt(2.0) * math.hypot(width * res, height * res) / 2 + window_resolution_m) / res + 2
        self.pad_cols = max(0, math.ceil(reach - width / 2)) + 1
        self.pad_rows = max(0, math.ceil(reach - height / 2)) + 1
        self.width, self.height = width + 2 * self.pad_cols, height + 2 * self.pad_rows
        self.centre = (slice(self.pad_rows, self.pad_rows + height), slice(self.pad_cols, self.pad_cols + width))
        self.log_odds = np.zeros((self.height, self.width), dtype=np.float32)
        self.class_grid = np.full((self.height, self.width), CLASS_UNKNOWN, dtype=np.uint8)
        self.occupancy = self.padded_occupancy(None)

    def fits(self, geometry: GridGeometry, window_resolution_m: float) -> bool:
        return geometry == self.geometry and window_resolution_m == self.window_resolution_m

    def load(self, frame: GridResult) -> None:
        # float64 evidence is rounded to float32 as the old where(...).astype(float32) did
        np.copyto(self.log_odds[self.centre], frame.log_odds, casting="unsafe")
        np.copyto(self.class_grid[self.centre], frame.class_grid, casting="unsafe")
        np.copyto(self.occupancy[self.centre], frame.occupancy, casting="unsafe")

    def padded_occupancy(self, occupancy: Optional[np.ndarray]) -> np.ndarray:
        out = np.full((self.height, self.width), OCCUPANCY_UNKNOWN, dtype=np.int8)
        if occupancy is not None:
            np.copyto(out[self.centre], occupancy, casting="unsafe")
        return out


class _FrameSample:
    """Where each window cell of the frame's region (rows, cols) finds its frame cell on a _FrameCanvas:
    a flat index per cell, or, when the frame is not rotated, one index per row and one per column."""

    def __init__(self, rows: slice, cols: slice, flat: Optional[np.ndarray] = None,
                 row_index: Optional[np.ndarray] = None, col_index: Optional[np.ndarray] = None) -> None:
        self.rows, self.cols = rows, cols
        self.flat, self.row_index, self.col_index = flat, row_index, col_index
        self.slices: Optional[Tuple[slice, slice]] = None
        if flat is None:
            r, c = row_index, col_index
            if (r[-1] - r[0] == len(r) - 1 and c[-1] - c[0] == len(c) - 1 and (np.diff(r) == 1).all()
                    and (np.diff(c) == 1).all()):
                self.slices = slice(int(r[0]), int(r[-1]) + 1), slice(int(c[0]), int(c[-1]) + 1)

    def take(self, canvas: np.ndarray) -> np.ndarray:
        """The canvas' values on the region (a view of the canvas when the indices are runs)."""
        if self.flat is not None:
            return np.take(canvas, self.flat)
        if self.slices is not None:
            return canvas[self.slices]
        return np.take(np.take(canvas, self.row_index, axis=0), self.col_index, axis=1)

    def take_box(self, canvas: np.ndarray, box: Box, fill: Any) -> np.ndarray:
        """The canvas' values on a window box; fill where the box leaves the region."""
        r0, r1, c0, c1 = box
        out = np.full((r1 - r0, c1 - c0), fill, dtype=canvas.dtype)
        i0, i1 = max(r0, self.rows.start), min(r1, self.rows.stop)
        j0, j1 = max(c0, self.cols.start), min(c1, self.cols.stop)
        if i0 >= i1 or j0 >= j1:
            return out
        si, sj = slice(i0 - self.rows.start, i1 - self.rows.start), slice(j0 - self.cols.start, j1 - self.cols.start)
        if self.flat is not None:
            values = np.take(canvas, self.flat[si, sj])
        else:
            values = np.take(np.take(canvas, self.row_index[si], axis=0), self.col_index[sj], axis=1)
        out[i0 - r0:i1 - r0, j0 - c0:j1 - c0] = values
        return out


def _near_multiples(p: np.ndarray, q: np.ndarray, bits: int, slack: int) -> Tuple[np.ndarray, np.ndarray]:
    """(i, j) of the sums q[i] + p[j] of integers that lie within `slack` of a multiple of 2**bits.

    Sorting p by its remainder makes this a pair of binary searches per i instead of a pass over all
    len(q) * len(p) sums: the cells are few (a fraction ~ 4 * slack / 2**bits)."""
    one = 1 << bits
    p_rem = p.astype(np.int64) & (one - 1)
    order = np.argsort(p_rem, kind="stable")
    doubled = np.concatenate([p_rem[order], p_rem[order] + one])  # remainders wrap around
    start = (-q.astype(np.int64) - slack) & (one - 1)
    lo = np.searchsorted(doubled, start, "left")
    hi = np.searchsorted(doubled, start + 2 * slack, "right")
    hits = np.flatnonzero(hi > lo)
    if hits.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    i = np.repeat(hits, (hi - lo)[hits])
    j = np.concatenate([order[np.arange(lo[k], hi[k]) % len(p)] for k in hits])
    return i, j


class FusedGrid:
    """Accumulates per-frame grids into a static odom-frame layer; one instance per odom frame.

    Only a box of the window is worked on per frame: the static layer is exactly 0 outside the box
    `_active` (every frame's region is added to it; it shrinks now and then to the cells that are
    not 0 yet: evidence decays to exactly 0 within max(|min_log_odds|, max_log_odds) / decay_per_s).
    The results are the same, cell for cell, as fusing the whole window every frame.
    """

    SHRINK_EVERY = 10  # updates between recomputing the active box from its non-zero cells

    def __init__(self, config: Optional[FusedGridConfig] = None) -> None:
        self._config = config if config is not None else FusedGridConfig()
        self._width, self._height = self._config.window_cells()
        self._log_odds = np.zeros((self._height, self._width), dtype=np.float32)
        self._class = np.full((self._height, self._width), CLASS_UNKNOWN, dtype=np.uint8)
        self._origin_cell: Optional[Tuple[int, int]] = None  # odom lattice index of cell (0, 0): (x, y)
        self._stamp_ns: Optional[int] = None
        self._active: Optional[Box] = None  # the static layer is 0 outside it
        self._updates = 0
        self._canvas: Optional[_FrameCanvas] = None

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
        if self._active is not None:
            r0, r1, c0, c1 = self._active
            self._log_odds[r0:r1, c0:c1] = 0.0
        self._active = None
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
        self._decay(dt_s)

        cfg = self._config
        footprints = self._moving_masks(polygons, yaw, tx, ty)
        region = self._frame_region(frame.geometry, yaw, tx, ty)
        sample = ev = None
        if region is not None:
            rows, cols = region
            self._active = _union(self._active, (rows.start, rows.stop, cols.start, cols.stop))
            if self._canvas is None or not self._canvas.fits(frame.geometry, cfg.resolution_m):
                self._canvas = _FrameCanvas(frame.geometry, cfg.resolution_m)
            canvas = self._canvas
            canvas.load(frame)
            sample = self._sample(frame.geometry, canvas, yaw, tx, ty, rows, cols)
            ev = sample.take(canvas.log_odds)
            classes = sample.take(canvas.class_grid)
            window = self._log_odds[rows, cols]  # a view: updated in place
            # moving things add nothing: their cells keep what they held (decayed), as before the frame
            held = []
            known = classes != CLASS_UNKNOWN
            for box, _, grown in footprints:
                part = _within(box, (rows.start, rows.stop, cols.start, cols.stop))
                if part is not None:
                    in_box, in_region = part
                    held.append((in_region, self._log_odds[in_region[0], in_region[1]].copy(), grown[in_box]))
                    known[in_region[0].start - rows.start:in_region[0].stop - rows.start,
                          in_region[1].start - cols.start:in_region[1].stop - cols.start] &= ~grown[in_box]
            if cfg.evidence_weight == 1.0:  # x * 1 is x: skip the pass
                window += ev
            else:
                window += ev * np.float32(cfg.evidence_weight)
            np.clip(window, cfg.min_log_odds, cfg.max_log_odds, out=window)
            for (r, c), values, grown in held:
                np.copyto(self._log_odds[r, c], values, where=grown)
            np.copyto(self._class[rows, cols], classes, where=known)
            if sample.flat is None:  # ev is a view of the canvas, which the next frame overwrites
                ev = ev.copy()

        occupancy = np.full(self._log_odds.shape, OCCUPANCY_UNKNOWN, dtype=np.int8)
        class_grid = np.full(self._log_odds.shape, CLASS_UNKNOWN, dtype=np.uint8)
        kept = None
        if self._active is not None:
            r0, r1, c0, c1 = self._active
            log_odds = self._log_odds[r0:r1, c0:c1]
            free = log_odds <= cfg.free_threshold
            occupied = log_odds >= cfg.occupied_threshold
            part = occupancy[r0:r1, c0:c1]
            part[free] = OCCUPANCY_FREE
            part[occupied] = OCCUPANCY_OCCUPIED
            np.copyto(class_grid[r0:r1, c0:c1], self._class[r0:r1, c0:c1], where=free | occupied)
            kept = (self._active, log_odds.copy())
        # Under moving things the static layer holds what was there before they came (road seen
        # free a moment ago): the current frame decides where it sees the cell, and a moving
        # thing's own footprint is occupied where it does not.
        for box, inside, grown in footprints:
            r0, r1, c0, c1 = box
            if sample is not None:
                frame_occupancy = sample.take_box(self._canvas.occupancy, box, OCCUPANCY_UNKNOWN)
                frame_class = sample.take_box(self._canvas.class_grid, box, CLASS_UNKNOWN)
            else:
                frame_occupancy = np.full(inside.shape, OCCUPANCY_UNKNOWN, dtype=np.int8)
                frame_class = np.full(inside.shape, CLASS_UNKNOWN, dtype=np.uint8)
            seen = frame_occupancy != OCCUPANCY_UNKNOWN
            now, unseen_thing = grown & seen, inside & ~seen
            occupancy[r0:r1, c0:c1][now] = frame_occupancy[now]
            class_grid[r0:r1, c0:c1][now] = frame_class[now]
            occupancy[r0:r1, c0:c1][unseen_thing] = OCCUPANCY_OCCUPIED
            class_grid[r0:r1, c0:c1][unseen_thing] = CLASS_UNKNOWN

        self._updates += 1
        if self._updates % self.SHRINK_EVERY == 0:
            self._shrink()
        shape = self._log_odds.shape
        frame_occupancy_lazy = _lazy_frame_occupancy(shape, sample, self._canvas, frame.occupancy.copy()
                                                     if sample is not None else None)
        return FusedGridResult(occupancy, class_grid, _lazy_log_odds(shape, kept), self.geometry,
                               frame_occupancy_lazy, _lazy_frame_log_odds(shape, sample, ev),
                               _lazy_moving(shape, footprints), stamp_ns, went_back)

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
        if self._active is not None:  # only the active box holds evidence: move that
            r0, r1, c0, c1 = self._active
            values = self._log_odds[r0:r1, c0:c1].copy()
            self._log_odds[r0:r1, c0:c1] = 0.0
            self._active = _clipped((r0 - d_rows, r1 - d_rows, c0 - d_cols, c1 - d_cols), self._height,
                                    self._width)
            if self._active is not None:
                n0, n1, m0, m1 = self._active
                self._log_odds[n0:n1, m0:m1] = values[n0 - (r0 - d_rows):n1 - (r0 - d_rows),
                                                      m0 - (c0 - d_cols):m1 - (c0 - d_cols)]
        self._class = _shifted(self._class, d_cols, d_rows, CLASS_UNKNOWN)
        self._origin_cell = target

    def _decay(self, dt_s: float) -> None:
        step = np.float32(self._config.decay_per_s * dt_s)
        if step > 0 and self._active is not None:
            r0, r1, c0, c1 = self._active
            log_odds = self._log_odds[r0:r1, c0:c1]
            # towards 0 by `step`, never past it: L - min(max(L, -step), step) is exactly the old
            # max(L - step, 0) + min(L + step, 0) (one of the two terms is 0; x - (-y) is x + y)
            towards = np.minimum(log_odds, step)
            np.maximum(towards, -step, out=towards)
            log_odds -= towards

    def _shrink(self) -> None:
        """Cut the active box down to its cells that are not 0."""
        if self._active is None:
            return
        r0, r1, c0, c1 = self._active
        nonzero = self._log_odds[r0:r1, c0:c1] != 0
        rows, cols = np.flatnonzero(nonzero.any(1)), np.flatnonzero(nonzero.any(0))
        if rows.size == 0:
            self._active = None
        else:
            self._active = (r0 + int(rows[0]), r0 + int(rows[-1]) + 1, c0 + int(cols[0]), c0 + int(cols[-1]) + 1)

    def _frame_region(self, geometry: GridGeometry, yaw: float, tx: float, ty: float
                      ) -> Optional[Tuple[slice, slice]]:
        """Window rows and columns the frame grid can reach at this pose (its rotated bounding box)."""
        x0, y0 = geometry.origin_x_m, geometry.origin_y_m
        x1, y1 = x0 + geometry.width * geometry.resolution_m, y0 + geometry.height * geometry.resolution_m
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        c, s = math.cos(yaw), math.sin(yaw)
        ox, oy = tx + c * corners[:, 0] - s * corners[:, 1], ty + s * corners[:, 0] + c * corners[:, 1]
        return self._cells_of_box(ox.min(), ox.max(), oy.min(), oy.max())

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

    def _sample(self, geometry: GridGeometry, canvas: _FrameCanvas, yaw: float, tx: float, ty: float,
                rows: slice, cols: slice) -> _FrameSample:
        """The frame cell under each window cell centre of the region, as the per-cell float64 arithmetic
        below (odom centre -> vehicle frame -> floor of the frame's cell coordinate) picks it."""
        res, f_res = self._config.resolution_m, geometry.resolution_m
        # odom centres of the window cells the frame can reach, from lattice indices (the same
        # values whatever the window's position), then into the vehicle frame
        dx = (self._origin_cell[0] + np.arange(cols.start, cols.stop) + 0.5) * res - tx
        dy = (self._origin_cell[1] + np.arange(rows.start, rows.stop) + 0.5) * res - ty
        c, s = math.cos(yaw), math.sin(yaw)
        # vehicle x = cx[j] + sx[i], y = cy[j] + sy[i]: each a sum of a column term and a row term
        cx, sx, cy, sy = c * dx, s * dy, -s * dx, c * dy
        ox, oy = geometry.origin_x_m, geometry.origin_y_m
        pad_r, pad_c = canvas.pad_rows, canvas.pad_cols

        def exact(i: np.ndarray, j: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
            """Canvas row and column of cells (i, j) of the region: the reference arithmetic."""
            col = np.floor(((cx[j] + sx[i]) - ox) / f_res).astype(np.intp) + pad_c
            row = np.floor(((cy[j] + sy[i]) - oy) / f_res).astype(np.intp) + pad_r
            return row, col

        h, w = rows.stop - rows.start, cols.stop - cols.start
        if s == 0.0:
            # s * dy is +-0 and c * dy's partner -s * dx too: a row's cells share the frame row,
            # a column's the frame column
            return _FrameSample(rows, cols, row_index=exact(np.arange(h), np.zeros(h, dtype=np.intp))[0],
                                col_index=exact(np.zeros(w, dtype=np.intp), np.arange(w))[1])
        # Fixed point: the canvas column is floor(pc[j] + qc[i]) with pc, qc the two terms over the
        # resolution. In integers of 2**-bits, (pc_fix[j] + qc_fix[i]) >> bits is that floor except where
        # the sum lies within rounding (one unit; the float error is far below it) of a whole cell:
        # those few cells get the reference arithmetic.
        pc, qc = (cx - ox) / f_res + pad_c, sx / f_res
        pr, qr = (cy - oy) / f_res + pad_r, sy / f_res
        magnitude = max(np.abs(pc).max() + np.abs(qc).max(), np.abs(pr).max() + np.abs(qr).max())
        bits = min(20, 30 - int(magnitude + 2).bit_length())  # sums and terms stay within int32
        slack = 2
        if bits < 10:  # a frame of thousands of cells: every cell by the reference arithmetic
            i, j = np.indices((h, w)).reshape(2, -1)
            row, col = exact(i, j)
            return _FrameSample(rows, cols, flat=(row * canvas.width + col).reshape(h, w))
        scale = float(1 << bits)
        fixed = [np.rint(term * scale).astype(np.int32) for term in (pc, qc, pr, qr)]
        col_sum = np.add(fixed[0][None, :], fixed[1][:, None])
        flat = np.add(fixed[2][None, :], fixed[3][:, None])
        np.right_shift(col_sum, bits, out=col_sum)
        np.right_shift(flat, bits, out=flat)
        flat *= canvas.width
        flat += col_sum
        flat = flat.astype(np.intp)
        i_c, j_c = _near_multiples(fixed[0], fixed[1], bits, slack)
        i_r, j_r = _near_multiples(fixed[2], fixed[3], bits, slack)
        if i_c.size or i_r.size:
            i, j = np.concatenate([i_c, i_r]), np.concatenate([j_c, j_r])
            row, col = exact(i, j)
            flat[i, j] = row * canvas.width + col
        return _FrameSample(rows, cols, flat=flat)

    def _moving_masks(self, polygons: Sequence[np.ndarray], yaw: float, tx: float, ty: float
                      ) -> List[Tuple[Box, np.ndarray, np.ndarray]]:
        """Per footprint: its window box, the cells under it, and under it grown by moving_margin_m."""
        out = []
        margin, res = self._config.moving_margin_m, self._config.resolution_m
        c, s = math.cos(yaw), math.sin(yaw)
        for polygon in polygons:
            odom = np.stack([tx + c * polygon[:, 0] - s * polygon[:, 1],
                             ty + s * polygon[:, 0] + c * polygon[:, 1]], 1)
            lo, hi = odom.min(0) - margin, odom.max(0) + margin
            box = self._cells_of_box(lo[0], hi[0], lo[1], hi[1])
            if box is None:
                continue
            rows, cols = box
            x = (self._origin_cell[0] + np.arange(cols.start, cols.stop) + 0.5)[None, :] * res
            y = (self._origin_cell[1] + np.arange(rows.start, rows.stop) + 0.5)[:, None] * res
            inside, grown = _polygon_masks(x, y, odom, margin)
            out.append(((rows.start, rows.stop, cols.start, cols.stop), inside, grown))
        return out


def _union(a: Optional[Box], b: Box) -> Box:
    if a is None:
        return b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


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


def _lazy_frame_log_odds(shape: Tuple[int, int], sample: Optional[_FrameSample], ev: Optional[np.ndarray]
                         ) -> Callable[[], np.ndarray]:
    def build() -> np.ndarray:
        out = np.zeros(shape, dtype=np.float32)
        if sample is not None:
            out[sample.rows, sample.cols] = ev
        return out
    return build


def _lazy_frame_occupancy(shape: Tuple[int, int], sample: Optional[_FrameSample], canvas: Optional[_FrameCanvas],
                          occupancy: Optional[np.ndarray]) -> Callable[[], np.ndarray]:
    padded = None if sample is None else (canvas.padded_occupancy, occupancy)

    def build() -> np.ndarray:
        out = np.full(shape, OCCUPANCY_UNKNOWN, dtype=np.int8)
        if padded is not None:
            make, values = padded
            out[sample.rows, sample.cols] = sample.take(make(values))
        return out
    return build


def _lazy_moving(shape: Tuple[int, int], footprints: List[Tuple[Box, np.ndarray, np.ndarray]]
                 ) -> Callable[[], np.ndarray]:
    def build() -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        for (r0, r1, c0, c1), inside, _ in footprints:
            out[r0:r1, c0:c1] |= inside
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
    if not np.isfinite(frame.log_odds).all():
        raise InputError("frame_grid.log_odds has non-finite values")
    return frame


def _checked_stamp(stamp_ns: Any) -> int:
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)) or stamp_ns < 0:
        raise InputError(f"stamp_ns must be a non-negative integer (nanoseconds), got {stamp_ns!r}")
    return int(stamp_ns)


def _checked_polygons(footprints: Sequence[Any]) -> List[np.ndarray]:
    polygons = []
    for k, footprint in enumerate(footprints):
        polygon = np.asarray(footprint, dtype=np.float64)
        if polygon.ndim != 2 or polygon.shape[1] != 2 or polygon.shape[0] < 3:
            raise InputError(f"moving footprint {k} must be (k >= 3, 2) corners, got shape {polygon.shape}")
        if not np.isfinite(polygon).all():
            raise InputError(f"moving footprint {k} has non-finite corners")
        polygons.append(polygon)
    return polygons
