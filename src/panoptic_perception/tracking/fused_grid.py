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
from typing import Any, List, Optional, Sequence, Tuple

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


@dataclass
class FusedGridResult:
    """The fused grid at one stamp, odom frame, [height, width] numpy arrays (copies: safe to keep)."""

    occupancy: np.ndarray  # int8 -1 / 0 / 100: static layer; under moving things the current frame's
    # grid where it sees the cell, else occupied within their footprints
    class_grid: np.ndarray  # uint8: class last seen where occupancy is known, else 255 (unknown)
    log_odds: np.ndarray  # float32: the static layer's evidence
    geometry: GridGeometry  # origin in the odom frame
    frame_occupancy: np.ndarray  # int8: this frame's grid alone, resampled (-1 outside its view)
    frame_log_odds: np.ndarray  # float32: this frame's evidence, resampled, unweighted (0 outside)
    moving: np.ndarray  # bool: cells under this update's moving footprints (without the margin)
    stamp_ns: int
    reset: bool = False  # time went backwards: everything before this frame was dropped

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


def _polygon_mask(x_m: np.ndarray, y_m: np.ndarray, polygon: np.ndarray, margin_m: float) -> np.ndarray:
    """Points inside a convex polygon grown by margin_m (edges moved out; corners mitred)."""
    area2 = np.sum(polygon[:, 0] * np.roll(polygon[:, 1], -1) - np.roll(polygon[:, 0], -1) * polygon[:, 1])
    if area2 < 0:  # clockwise: the inside is to the right of each edge
        polygon = polygon[::-1]
    inside = np.ones(np.broadcast_shapes(np.shape(x_m), np.shape(y_m)), dtype=bool)
    for a, b in zip(polygon, np.roll(polygon, -1, axis=0)):
        edge = b - a
        length = float(np.hypot(*edge))
        if length == 0.0:
            continue
        # signed distance to the edge's line, positive inside
        inside &= (edge[0] * (y_m - a[1]) - edge[1] * (x_m - a[0])) / length >= -margin_m
    return inside


class FusedGrid:
    """Accumulates per-frame grids into a static odom-frame layer; one instance per odom frame."""

    def __init__(self, config: Optional[FusedGridConfig] = None) -> None:
        self._config = config if config is not None else FusedGridConfig()
        self._width, self._height = self._config.window_cells()
        self._log_odds = np.zeros((self._height, self._width), dtype=np.float32)
        self._class = np.full((self._height, self._width), CLASS_UNKNOWN, dtype=np.uint8)
        self._origin_cell: Optional[Tuple[int, int]] = None  # odom lattice index of cell (0, 0): (x, y)
        self._stamp_ns: Optional[int] = None

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
        self._log_odds.fill(0.0)
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

        cfg, res = self._config, self._config.resolution_m
        frame_log_odds = np.zeros_like(self._log_odds)
        frame_occupancy = np.full(self._log_odds.shape, OCCUPANCY_UNKNOWN, dtype=np.int8)
        frame_class = np.full(self._log_odds.shape, CLASS_UNKNOWN, dtype=np.uint8)
        moving, masked = self._moving_masks(polygons, yaw, tx, ty)
        region = self._frame_region(frame.geometry, yaw, tx, ty)
        if region is not None:
            rows, cols = region
            # odom centres of the window cells the frame can reach, from lattice indices (the same
            # values whatever the window's position), then into the vehicle frame
            x = (self._origin_cell[0] + np.arange(cols.start, cols.stop) + 0.5) * res
            y = (self._origin_cell[1] + np.arange(rows.start, rows.stop) + 0.5) * res
            dx, dy = x[None, :] - tx, y[:, None] - ty
            c, s = math.cos(yaw), math.sin(yaw)
            f_row, f_col, seen = frame.geometry.cell_of(c * dx + s * dy, -s * dx + c * dy)
            evidence = np.where(seen, frame.log_odds[f_row, f_col], 0.0).astype(np.float32)
            frame_log_odds[rows, cols] = evidence
            frame_occupancy[rows, cols] = np.where(seen, frame.occupancy[f_row, f_col], OCCUPANCY_UNKNOWN)
            classes = np.where(seen, frame.class_grid[f_row, f_col], CLASS_UNKNOWN).astype(np.uint8)
            frame_class[rows, cols] = classes
            static = ~masked[rows, cols]
            window = self._log_odds[rows, cols]  # a view: updated in place
            window += np.where(static, evidence * np.float32(cfg.evidence_weight), np.float32(0.0))
            np.clip(window, cfg.min_log_odds, cfg.max_log_odds, out=window)
            known = static & (classes != CLASS_UNKNOWN)
            self._class[rows, cols][known] = classes[known]

        occupancy = np.full(self._log_odds.shape, OCCUPANCY_UNKNOWN, dtype=np.int8)
        occupancy[self._log_odds <= cfg.free_threshold] = OCCUPANCY_FREE
        occupancy[self._log_odds >= cfg.occupied_threshold] = OCCUPANCY_OCCUPIED
        class_grid = np.where(occupancy != OCCUPANCY_UNKNOWN, self._class, CLASS_UNKNOWN).astype(np.uint8)
        # Under moving things the static layer holds what was there before they came (road seen
        # free a moment ago): the current frame decides where it sees the cell, and a moving
        # thing's own footprint is occupied where it does not.
        now = masked & (frame_occupancy != OCCUPANCY_UNKNOWN)
        unseen_thing = moving & ~now
        occupancy[now] = frame_occupancy[now]
        class_grid[now] = frame_class[now]
        occupancy[unseen_thing] = OCCUPANCY_OCCUPIED
        class_grid[unseen_thing] = CLASS_UNKNOWN
        return FusedGridResult(occupancy, class_grid, self._log_odds.copy(), self.geometry, frame_occupancy,
                               frame_log_odds, moving, stamp_ns, went_back)

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
        self._log_odds = _shifted(self._log_odds, d_cols, d_rows, 0.0)
        self._class = _shifted(self._class, d_cols, d_rows, CLASS_UNKNOWN)
        self._origin_cell = target

    def _decay(self, dt_s: float) -> None:
        step = np.float32(self._config.decay_per_s * dt_s)
        if step > 0:
            # towards 0 by `step`, never past it: max(L - step, 0) + min(L + step, 0)
            positive = np.maximum(self._log_odds - step, np.float32(0.0))
            np.minimum(self._log_odds + step, np.float32(0.0), out=self._log_odds)
            self._log_odds += positive

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

    def _moving_masks(self, polygons: Sequence[np.ndarray], yaw: float, tx: float, ty: float
                      ) -> Tuple[np.ndarray, np.ndarray]:
        """Window cells under the moving footprints, and under them grown by moving_margin_m."""
        inside = np.zeros(self._log_odds.shape, dtype=bool)
        grown = np.zeros(self._log_odds.shape, dtype=bool)
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
            inside[rows, cols] |= _polygon_mask(x, y, odom, 0.0)
            grown[rows, cols] |= _polygon_mask(x, y, odom, margin)
        return inside, grown


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
