"""FusedGrid: per-frame grids fused in the odom frame (tracking/fused_grid.py).

Unit tests feed frame grids sampled from a known odom-frame world; the slow tests drive through the
synthetic street (data/synth) with its exact bird's-eye truth.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from polygon_reference import per_cell_masks

from panoptic_perception.config import from_dict, to_dict
from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.geometry.grid import GridGeometry
from panoptic_perception.geometry.projection import GridResult
from panoptic_perception.tracking.fused_grid import (
    FusedGrid,
    FusedGridConfig,
    load_fused_grid_config,
    planar_pose,
)

CAR, ROAD = 13, 0
FREE_LO, OCC_LO = -0.75, 2.0  # per-frame evidence of the toy worlds (exact in float32)
DT_NS = 100_000_000  # 10 Hz

MOVING_SPEED_MPS = 0.5  # stands in for the tracker's is_moving: truth speeds are exact


def pose(x_m: float = 0.0, y_m: float = 0.0, yaw_rad: float = 0.0) -> np.ndarray:
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:2, 3] = x_m, y_m
    return out


def frame_geometry(length_m: float = 6.0, width_m: float = 4.0, res: float = 0.5) -> GridGeometry:
    return GridGeometry(res, 0.0, -width_m / 2, int(round(length_m / res)), int(round(width_m / res)))


def frame_from_log_odds(log_odds: np.ndarray, geometry: GridGeometry) -> GridResult:
    """A frame grid as the projector would give it (its thresholds +-0.4): road free, car occupied."""
    log_odds = log_odds.astype(np.float32)
    occupancy = np.full(log_odds.shape, -1, dtype=np.int8)
    occupancy[log_odds <= -0.4] = 0
    occupancy[log_odds >= 0.4] = 100
    class_grid = np.where(occupancy == 0, ROAD, np.where(occupancy == 100, CAR, 255)).astype(np.uint8)
    return GridResult(occupancy, class_grid, log_odds, geometry)


def frame_seeing(world, odom_from_vehicle: np.ndarray, geometry: GridGeometry) -> GridResult:
    """The frame grid at a pose of a world given as log-odds(x, y) in the odom frame."""
    yaw, tx, ty = planar_pose(odom_from_vehicle)
    x, y = geometry.cell_centers()
    c, s = math.cos(yaw), math.sin(yaw)
    return frame_from_log_odds(world(tx + c * x - s * y, ty + s * x + c * y), geometry)


def free_world(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.full(np.shape(x), FREE_LO)


def small_config(**changes) -> FusedGridConfig:
    base = FusedGridConfig(size_x_m=20.0, size_y_m=20.0, resolution_m=0.5, recentre_distance_m=3.0,
                           evidence_weight=1.0, min_log_odds=-3.0, max_log_odds=4.0, decay_per_s=2.5,
                           free_threshold=-0.4, occupied_threshold=0.4, moving_margin_m=0.5)
    return replace(base, **changes)


def value_at(result, x_m: float, y_m: float, layer: str = "log_odds"):
    row, col, inside = result.geometry.cell_of(np.array([x_m]), np.array([y_m]))
    assert inside[0]
    return getattr(result, layer)[row[0], col[0]]


# -- config ----------------------------------------------------------------------------------------

def test_config_file_is_the_documented_default():
    assert load_fused_grid_config() == FusedGridConfig()
    assert from_dict(FusedGridConfig, to_dict(small_config())) == small_config()
    assert FusedGridConfig().window_cells() == (800, 800)


@pytest.mark.parametrize("data, match", [
    ({"resolution_m": 0.0}, "resolution_m"),
    ({"size_x_m": 0.1}, "two cells"),
    ({"recentre_distance_m": 80.0}, "recentre_distance_m"),
    ({"evidence_weight": 0.0}, "evidence_weight"),
    ({"free_threshold": 0.1}, "free_threshold"),
    ({"min_log_odds": -0.2}, "min_log_odds"),
    ({"occupied_threshold": 11.0}, "max_log_odds"),
    ({"decay_per_s": -1.0}, "decay_per_s"),
    ({"decay_per_sec": 1.0}, "decay_per_sec"),
    ({"moving_margin_m": "wide"}, "moving_margin_m"),
])
def test_bad_config_is_named(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(FusedGridConfig, data)


# -- accumulation ----------------------------------------------------------------------------------

def test_cells_seen_in_many_frames_become_certain_and_a_cell_seen_once_fades():
    cfg = small_config()
    fused, geometry = FusedGrid(cfg), frame_geometry()
    history = []
    for k in range(12):  # 1 m per frame along x: a cell in [0, 1) m is seen by the first frame only
        at = pose(1.0 * k)
        history.append(fused.update(frame_seeing(free_world, at, geometry), at, k * DT_NS))
    decay = cfg.decay_per_s * DT_NS * 1e-9  # 0.25 per frame
    for k, result in enumerate(history):
        # seen once: -0.75, then 0.25 closer to 0 per frame, never past it
        expected = min(FREE_LO + decay * k, 0.0)
        assert value_at(result, 0.25, 0.0) == pytest.approx(expected, abs=1e-6), k
        assert value_at(result, 0.25, 0.0, "occupancy") == (0 if expected <= -0.4 else -1), k
    # seen by frames 0..5 (x in [5, 6)): -0.75 then -0.5 net per frame until the clamp holds it
    assert value_at(history[5], 5.25, 0.0) == pytest.approx(-3.0)
    assert value_at(history[5], 5.25, 0.0, "occupancy") == 0
    assert value_at(history[5], 5.25, 0.0, "class_grid") == ROAD
    assert history[-1].log_odds.min() >= cfg.min_log_odds


def test_the_clamp_holds_and_lets_a_cell_change_its_mind():
    cfg = small_config(decay_per_s=0.0)
    fused, geometry = FusedGrid(cfg), frame_geometry()
    occupied = frame_from_log_odds(np.full((geometry.height, geometry.width), OCC_LO), geometry)
    free = frame_from_log_odds(np.full((geometry.height, geometry.width), FREE_LO), geometry)
    for k in range(10):
        result = fused.update(occupied, pose(), k * DT_NS)
        seen = result.frame_occupancy != -1
        np.testing.assert_allclose(result.log_odds[seen], min(OCC_LO * (k + 1), cfg.max_log_odds))
    assert result.log_odds.max() == cfg.max_log_odds
    # from the clamp (4) free evidence of -0.75 per frame crosses -0.4 after ceil(4.4 / 0.75) = 6 frames
    for k in range(6):
        result = fused.update(free, pose(), (10 + k) * DT_NS)
        assert (result.occupancy[seen] == (0 if k == 5 else (100 if k < 5 - 1 else -1))).all(), k
    np.testing.assert_allclose(result.log_odds[seen], cfg.max_log_odds + 6 * FREE_LO, atol=1e-6)


def test_recentring_moves_evidence_by_whole_cells_exactly():
    rng = np.random.default_rng(0)
    table = rng.choice([FREE_LO, -0.25, OCC_LO], size=(400, 400)).astype(np.float32)

    def world(x, y):  # a random value per 0.5 m odom cell
        return table[np.floor(x / 0.5).astype(int) + 200, np.floor(y / 0.5).astype(int) + 200]

    small = FusedGrid(small_config())
    large = FusedGrid(small_config(size_x_m=200.0, size_y_m=200.0, recentre_distance_m=90.0))
    geometry = frame_geometry()
    origins = set()
    for k in range(30):  # a curve with sub-cell steps
        at = pose(0.83 * k, 0.02 * k * k, 0.03 * k)
        frame = frame_seeing(world, at, geometry)
        a = small.update(frame, at, k * DT_NS)
        b = large.update(frame, at, k * DT_NS)
        origins.add((a.geometry.origin_x_m, a.geometry.origin_y_m))
        x, y = a.geometry.cell_centers()
        row, col, inside = b.geometry.cell_of(x, y)
        assert inside.all()
        np.testing.assert_array_equal(a.log_odds, b.log_odds[row, col])
        np.testing.assert_array_equal(a.occupancy, b.occupancy[row, col])
    assert len(origins) >= 3  # it did move
    for ox, oy in origins:  # on the lattice of whole cells
        assert ox / 0.5 == round(ox / 0.5) and oy / 0.5 == round(oy / 0.5)


def test_resampling_picks_the_frame_cell_under_each_window_cell_centre():
    rng = np.random.default_rng(1)
    geometry = frame_geometry(5.0, 3.0, 0.25)
    frame = frame_from_log_odds(rng.uniform(-2, 2, size=(geometry.height, geometry.width)), geometry)
    cfg = small_config(size_x_m=12.0, size_y_m=12.0, min_log_odds=-5.0, max_log_odds=5.0)
    at = pose(3.37, -1.2, math.radians(30))
    result = FusedGrid(cfg).update(frame, at, 0)
    # per-cell reference, written out
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    expected = np.zeros_like(result.log_odds)
    g = result.geometry
    for row in range(g.height):
        for col in range(g.width):
            xo = g.origin_x_m + (col + 0.5) * g.resolution_m - 3.37
            yo = g.origin_y_m + (row + 0.5) * g.resolution_m + 1.2
            xv, yv = c * xo + s * yo, -s * xo + c * yo
            fc, fr = math.floor(xv / 0.25), math.floor((yv + 1.5) / 0.25)
            if 0 <= fc < geometry.width and 0 <= fr < geometry.height:
                expected[row, col] = frame.log_odds[fr, fc]
    np.testing.assert_allclose(result.log_odds, expected, atol=1e-6)
    assert (result.frame_log_odds == result.log_odds).all()


def test_a_frame_cell_ahead_of_a_vehicle_turned_left_lands_to_its_left_in_odom():
    geometry = frame_geometry()
    lo = np.zeros((geometry.height, geometry.width))
    row, col, _ = geometry.cell_of(np.array([5.25]), np.array([0.25]))
    lo[row[0], col[0]] = OCC_LO
    result = FusedGrid(small_config()).update(frame_from_log_odds(lo, geometry), pose(10.0, 0.0, math.pi / 2), 0)
    occupied = np.argwhere(result.occupancy == 100)
    assert len(occupied) == 1
    x, y = result.geometry.cell_centers()
    assert (x[tuple(occupied[0])], y[tuple(occupied[0])]) == pytest.approx((9.75, 5.25))


def test_back_in_the_vehicle_frame_one_frame_reads_as_the_frame_itself():
    rng = np.random.default_rng(2)
    geometry = frame_geometry()
    frame = frame_from_log_odds(rng.choice([FREE_LO, 0.0, OCC_LO], size=(geometry.height, geometry.width)), geometry)
    at = pose(2.5, -1.0)  # whole cells: no resampling
    result = FusedGrid(small_config()).update(frame, at, 0)
    occupancy, classes = result.in_vehicle_frame(geometry, at)
    np.testing.assert_array_equal(occupancy, frame.occupancy)
    np.testing.assert_array_equal(classes, frame.class_grid)


# -- moving things ---------------------------------------------------------------------------------

def car_at(x_m: float, y_m: float = 1.0, length_m: float = 2.0, width_m: float = 1.0):
    """A world with a car box on free road (the projector's thing evidence, 4 per frame), and its corners."""
    def world(x, y):
        inside = (np.abs(x - x_m) <= length_m / 2) & (np.abs(y - y_m) <= width_m / 2)
        return np.where(inside, 4.0, FREE_LO)
    corners = np.array([[x_m + length_m / 2, y_m + width_m / 2], [x_m - length_m / 2, y_m + width_m / 2],
                        [x_m - length_m / 2, y_m - width_m / 2], [x_m + length_m / 2, y_m - width_m / 2]])
    return world, corners


@pytest.mark.parametrize("masked", [True, False])
def test_a_passing_car_leaves_no_trail_in_the_static_layer(masked):
    cfg = small_config(size_x_m=30.0, decay_per_s=0.5)
    fused, geometry = FusedGrid(cfg), frame_geometry(12.0, 6.0)
    history = []
    for k in range(5):  # the vehicle creeps along x, the car overtakes it at 2 m per frame
        at = pose(0.2 * k)
        world, corners = car_at(2.0 + 2.0 * k)
        frame = frame_seeing(world, at, geometry)
        # the track's box (vehicle frame) is a little smaller than what the frame paints: the margin covers it
        box = corners - [0.2 * k, 0.0]
        box = box.mean(0) + (box - box.mean(0)) * [0.9, 0.8]
        result = fused.update(frame, at, k * DT_NS, [box] if masked else [])
        history.append(result)
        x, y = result.geometry.cell_centers()
        on_car = (world(x, y) > 0) & (result.frame_occupancy == 100)
        assert on_car.sum() >= 8
        assert (result.occupancy[on_car] == 100).all()  # in the output now, either way
        if masked:
            assert result.log_odds.max() <= 0.0  # nothing of the car reached the static layer
            assert result.moving[on_car].mean() > 0.5
    # where the car was two frames ago (x in [1, 3)): free road again, or a trail without the mask
    assert value_at(history[2], 1.75, 1.0, "occupancy") == (0 if masked else 100)


def test_a_footprint_counts_the_same_in_either_winding():
    world, corners = car_at(3.0)
    geometry = frame_geometry()
    frame = frame_seeing(world, pose(), geometry)
    a = FusedGrid(small_config()).update(frame, pose(), 0, [corners])
    b = FusedGrid(small_config()).update(frame, pose(), 0, [corners[::-1]])
    assert a.moving.sum() == 4 * 2  # the 0.5 m cells of the 2 m x 1 m box
    np.testing.assert_array_equal(a.moving, b.moving)
    np.testing.assert_array_equal(a.log_odds, b.log_odds)


# -- the same as fusing the whole window ------------------------------------------------------------

class WholeWindowFusedGrid:
    """The reference: FusedGrid as first written, every operation over the whole window every frame
    (decay, resampling through GridGeometry.cell_of, masks, thresholds)."""

    def __init__(self, config: FusedGridConfig) -> None:
        self.cfg = config
        self.width, self.height = config.window_cells()
        self.log_odds = np.zeros((self.height, self.width), dtype=np.float32)
        self.classes = np.full((self.height, self.width), 255, dtype=np.uint8)
        self.origin = self.stamp_ns = None

    def update(self, frame: GridResult, odom_from_vehicle, stamp_ns: int, polygons=()) -> dict:
        cfg, res = self.cfg, self.cfg.resolution_m
        yaw, tx, ty = planar_pose(odom_from_vehicle)
        went_back = self.stamp_ns is not None and stamp_ns < self.stamp_ns
        if went_back:
            self.log_odds.fill(0.0)
            self.classes.fill(255)
            self.origin = self.stamp_ns = None
        dt_s = 0.0 if self.stamp_ns is None else (stamp_ns - self.stamp_ns) * 1e-9
        self.stamp_ns = stamp_ns
        target = (int(round(tx / res - self.width / 2)), int(round(ty / res - self.height / 2)))
        if self.origin is None:
            self.origin = target
        elif max(abs(tx - (self.origin[0] + self.width / 2) * res),
                 abs(ty - (self.origin[1] + self.height / 2) * res)) > cfg.recentre_distance_m:
            g = self.geometry()
            new = GridGeometry(res, target[0] * res, target[1] * res, self.width, self.height)
            row, col, inside = g.cell_of(*new.cell_centers())
            self.log_odds = np.where(inside, self.log_odds[row, col], 0.0).astype(np.float32)
            self.classes = np.where(inside, self.classes[row, col], 255).astype(np.uint8)
            self.origin = target
        step = np.float32(cfg.decay_per_s * dt_s)
        if step > 0:
            positive = np.maximum(self.log_odds - step, np.float32(0.0))
            np.minimum(self.log_odds + step, np.float32(0.0), out=self.log_odds)
            self.log_odds += positive

        g = self.geometry()
        x, y = g.cell_centers()
        c, s = math.cos(yaw), math.sin(yaw)
        # cells under the footprints, and under them grown by the margin, one cell at a time
        moving, masked = per_cell_masks([np.asarray(p, dtype=np.float64) for p in polygons], yaw, tx, ty,
                                        self.origin[0], self.origin[1], self.width, self.height, res,
                                        cfg.moving_margin_m)
        dx, dy = x - tx, y - ty
        f_row, f_col, seen = frame.geometry.cell_of(c * dx + s * dy, -s * dx + c * dy)
        frame_log_odds = np.where(seen, frame.log_odds[f_row, f_col], 0.0).astype(np.float32)
        frame_occupancy = np.where(seen, frame.occupancy[f_row, f_col], -1).astype(np.int8)
        frame_class = np.where(seen, frame.class_grid[f_row, f_col], 255).astype(np.uint8)
        self.log_odds += np.where(masked, np.float32(0.0), frame_log_odds * np.float32(cfg.evidence_weight))
        np.clip(self.log_odds, cfg.min_log_odds, cfg.max_log_odds, out=self.log_odds)
        known = ~masked & (frame_class != 255)
        self.classes[known] = frame_class[known]

        occupancy = np.full(x.shape, -1, dtype=np.int8)
        occupancy[self.log_odds <= cfg.free_threshold] = 0
        occupancy[self.log_odds >= cfg.occupied_threshold] = 100
        class_grid = np.where(occupancy != -1, self.classes, 255).astype(np.uint8)
        now = masked & (frame_occupancy != -1)
        occupancy[now] = frame_occupancy[now]
        class_grid[now] = frame_class[now]
        occupancy[moving & ~now] = 100
        class_grid[moving & ~now] = 255
        return {"occupancy": occupancy, "class_grid": class_grid, "log_odds": self.log_odds.copy(), "geometry": g,
                "frame_occupancy": frame_occupancy, "frame_log_odds": frame_log_odds, "moving": moving,
                "stamp_ns": stamp_ns, "reset": went_back}

    def geometry(self) -> GridGeometry:
        res = self.cfg.resolution_m
        return GridGeometry(res, self.origin[0] * res, self.origin[1] * res, self.width, self.height)


def random_frame(rng, geometry: GridGeometry, dtype=np.float32) -> GridResult:
    """Evidence on and around the thresholds, some cells seen but unknown, float32 or float64; often only
    a part of the grid has evidence or a class (a camera's wedge), sometimes none, and then occupancy
    may still be known outside it (the fused grid must not assume the frame is self-consistent)."""
    log_odds = rng.choice([-6.4, -0.8, -0.41, -0.4, 0.0, 0.3, 0.4, 1.5, 4.0], size=(geometry.height, geometry.width))
    frame = frame_from_log_odds(log_odds * rng.uniform(0.5, 1.5), geometry)
    frame.occupancy[rng.random(log_odds.shape) < 0.05] = -1
    if rng.random() < 0.6:
        rows, cols = sorted(rng.integers(0, geometry.height + 1, 2)), sorted(rng.integers(0, geometry.width + 1, 2))
        outside = np.ones(log_odds.shape, dtype=bool)
        outside[rows[0]:rows[1], cols[0]:cols[1]] = False
        frame.log_odds[outside] = 0.0
        frame.class_grid[outside] = 255
        frame.occupancy[outside & (rng.random(log_odds.shape) < 0.7)] = -1
        if rng.random() < 0.5:  # a class without evidence: it still updates the layer's classes
            frame.class_grid[rng.integers(geometry.height), rng.integers(geometry.width)] = CAR
    return replace(frame, log_odds=frame.log_odds.astype(dtype))


def random_footprint(rng) -> np.ndarray:
    length, width, yaw = rng.uniform(0.5, 5.0), rng.uniform(0.5, 2.0), rng.uniform(-math.pi, math.pi)
    corners = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * [length / 2, width / 2]
    c, s = math.cos(yaw), math.sin(yaw)
    corners = corners @ [[c, s], [-s, c]] + [rng.uniform(-2.0, 12.0), rng.uniform(-5.0, 5.0)]
    return corners[::-1] if rng.random() < 0.5 else corners  # either winding


@pytest.mark.parametrize("drive", ["turning", "straight", "lattice", "weighted", "full size"])
def test_the_window_box_gives_what_fusing_the_whole_window_gives(drive):
    """Every output of every frame, bit for bit, right away and (every third, kept) after the whole drive:
    turns, recentring, moving footprints (some off the window), pauses that let everything fade,
    stamps repeated and going back. 'lattice' puts the vehicle on half cells at multiples of 90
    degrees (and 0, where rows and columns separate), so window cell centres fall exactly on frame
    cell edges, where rounding decides."""
    rng = np.random.default_rng(["turning", "straight", "lattice", "weighted", "full size"].index(drive))
    cfg, geometry, frames = small_config(), frame_geometry(), 60
    if drive == "weighted":  # evidence_weight below 1, frame cells finer than the window's, float64 evidence
        cfg, geometry = small_config(evidence_weight=0.7, resolution_m=0.4), frame_geometry(5.0, 3.0, 0.25)
    if drive == "full size":
        cfg, frames = load_fused_grid_config(), 8
        geometry = GridGeometry(0.2, 0.0, -20.0, 300, 200)
    fused, reference = FusedGrid(cfg), WholeWindowFusedGrid(cfg)
    x_m = y_m = 0.0
    yaw = 0.0 if drive in ("straight", "lattice") else rng.uniform(-math.pi, math.pi)
    stamp_ns, pairs, resets, both = 100 * DT_NS, [], 0, 0
    for k in range(frames):
        if drive == "lattice":
            yaw = [0.0, math.pi / 2, math.pi, -math.pi / 2][k % 4]
            x_m, y_m = 0.25 * rng.integers(-30, 30), 0.25 * rng.integers(-30, 30)
        else:
            if drive != "straight":
                yaw += rng.uniform(-0.3, 0.3)
            step_m = rng.uniform(0.0, 1.5)
            x_m, y_m = x_m + step_m * math.cos(yaw), y_m + step_m * math.sin(yaw)
        stamp_ns += int(rng.choice([0, DT_NS, 2 * DT_NS, 30 * DT_NS], p=[0.1, 0.6, 0.2, 0.1]))
        if k == frames // 2:
            stamp_ns -= 40 * DT_NS  # a bag played again
        frame = random_frame(rng, geometry, np.float64 if drive == "weighted" else np.float32)
        footprints = [random_footprint(rng) for _ in range(rng.integers(0, 4))]
        if k % 7 == 3:
            footprints.append(np.array([[100.0, 100.0], [101.0, 100.0], [101.0, 101.0]]))  # off the window
        if k % 5 == 1:  # a repeated corner, and five corners
            footprints.append(np.array([[3.0, 1.0], [5.0, 1.2], [5.0, 1.2], [4.0, 2.5]]))
            footprints.append(np.array([[2.0, -1.0], [3.0, -1.5], [4.0, -1.0], [3.5, 0.0], [2.5, 0.0]]))
        at = pose(x_m, y_m, yaw)
        result = fused.update(frame, at, stamp_ns, footprints)
        expected = reference.update(frame, at, stamp_ns, footprints)
        assert_same(result, expected, k)
        resets += result.reset
        both += (result.occupancy == 100).any() and (result.occupancy == 0).any()
        if k % 3 == 0:  # kept: checked again at the end; the others' memory is reused by later updates
            pairs.append((k, result, expected))
    for k, result, expected in pairs:
        assert_same(result, expected, k)
    assert resets and both


def assert_same(result, expected: dict, k: int) -> None:
    assert result.geometry == expected["geometry"] and result.stamp_ns == expected["stamp_ns"], k
    assert result.reset == expected["reset"], k
    for name in ("occupancy", "class_grid", "log_odds", "frame_occupancy", "frame_log_odds", "moving"):
        value = getattr(result, name)
        assert value.dtype == expected[name].dtype, (k, name)
        np.testing.assert_array_equal(value, expected[name], err_msg=f"frame {k}: {name}")


def test_results_stay_as_they_were_and_their_grids_are_read_only():
    geometry, fused = frame_geometry(), FusedGrid(small_config())
    world, corners = car_at(3.0)
    first = fused.update(frame_seeing(world, pose(), geometry), pose(), 0, [corners])
    kept = {name: getattr(first, name).copy() for name in ("occupancy", "class_grid", "log_odds", "moving")}
    for k in range(1, 8):  # later results are dropped at once: their memory goes round again
        fused.update(frame_seeing(free_world, pose(0.5 * k), geometry), pose(0.5 * k), k * DT_NS)
    for name, value in kept.items():
        np.testing.assert_array_equal(getattr(first, name), value, err_msg=name)
    with pytest.raises(ValueError, match="read-only"):
        first.occupancy[0, 0] = 100


def test_a_class_seen_without_evidence_still_names_the_cell():
    cfg = small_config(decay_per_s=0.0)
    geometry = frame_geometry()
    fused = FusedGrid(cfg)
    fused.update(frame_from_log_odds(np.full((geometry.height, geometry.width), FREE_LO), geometry), pose(), 0)
    frame = frame_from_log_odds(np.zeros((geometry.height, geometry.width)), geometry)
    frame.class_grid[2, 3] = CAR  # a class, no evidence: the cell stays free, now named CAR
    result = fused.update(frame, pose(), DT_NS)
    x, y = geometry.cell_centers()
    assert value_at(result, x[2, 3], y[2, 3], "occupancy") == 0
    assert value_at(result, x[2, 3], y[2, 3], "class_grid") == CAR
    assert (result.class_grid[result.occupancy == 0] == ROAD).sum() == geometry.num_cells - 1


# -- time and bad input ----------------------------------------------------------------------------

def test_time_going_backwards_resets_and_says_so():
    geometry = frame_geometry()
    fused = FusedGrid(small_config())
    world, _ = car_at(3.0)
    for k in range(5):
        result = fused.update(frame_seeing(world, pose(0.5 * k), geometry), pose(0.5 * k), 10 * DT_NS + k * DT_NS)
        assert not result.reset
    frame = frame_seeing(free_world, pose(40.0), geometry)
    result = fused.update(frame, pose(40.0), 2 * DT_NS)  # the bag starts again
    fresh = FusedGrid(small_config()).update(frame, pose(40.0), 2 * DT_NS)
    assert result.reset and result.geometry == fresh.geometry
    np.testing.assert_array_equal(result.log_odds, fresh.log_odds)
    assert not fused.update(frame, pose(40.0), 3 * DT_NS).reset


@pytest.mark.parametrize("bad, match", [
    (np.eye(3), "4x4"),
    (np.full((4, 4), np.nan), "non-finite"),
    (np.diag([2.0, 2.0, 2.0, 1.0]), "not a rotation"),
    (np.diag([1.0, -1.0, 1.0, 1.0]), "not a rotation"),
    (np.vstack([np.eye(4)[:3], [0.0, 0.0, 1.0, 1.0]]), "last row"),
    ("identity", "4x4 matrix of numbers"),
])
def test_a_bad_pose_is_refused(bad, match):
    geometry = frame_geometry()
    frame = frame_seeing(free_world, pose(), geometry)
    fused = FusedGrid(small_config())
    with pytest.raises(InputError, match=match):
        fused.update(frame, bad, 0)
    assert fused.geometry is None  # nothing changed


def test_other_bad_input_is_refused():
    geometry = frame_geometry()
    frame = frame_seeing(free_world, pose(), geometry)
    fused = FusedGrid(small_config())
    with pytest.raises(InputError, match="stamp_ns"):
        fused.update(frame, pose(), -1)
    with pytest.raises(InputError, match="stamp_ns"):
        fused.update(frame, pose(), 1.5)
    with pytest.raises(InputError, match="moving footprint 0"):
        fused.update(frame, pose(), 0, [np.zeros((2, 2))])
    with pytest.raises(InputError, match="log_odds"):
        fused.update(replace(frame, log_odds=frame.log_odds[:-1]), pose(), 0)
    with pytest.raises(InputError, match="GridResult"):
        fused.update(frame.log_odds, pose(), 0)


def test_torch_frame_grids_are_taken_as_they_come():
    torch = pytest.importorskip("torch")
    geometry = frame_geometry()
    frame = frame_seeing(free_world, pose(), geometry)
    as_torch = GridResult(torch.from_numpy(frame.occupancy), torch.from_numpy(frame.class_grid),
                          torch.from_numpy(frame.log_odds), geometry)
    a = FusedGrid(small_config()).update(frame, pose(), 0)
    b = FusedGrid(small_config()).update(as_torch, pose(), 0)
    np.testing.assert_array_equal(a.log_odds, b.log_odds)


# -- the synthetic street, exact truth ---------------------------------------------------------------

SEED = 1
FRAMES = range(0, 20, 2)  # 10 frames over 1.8 s
NEAR_M = 40.0


@pytest.fixture(scope="module")
def drive():
    """Ground-truth panoptic of each frame through the projector, plus which things move.

    Moving footprints stand for a tracker's: the true boxes of the things the camera sees that move,
    and the projector's own footprints of them (what it painted), with the true speeds.
    """
    synth = pytest.importorskip("panoptic_perception.data.synth")
    from panoptic_perception.geometry.grid import load_grid_config
    from panoptic_perception.geometry.panoptic_outputs import fusion_outputs_from_panoptic
    from panoptic_perception.geometry.projection import GroundProjector

    world = synth.StreetWorld(synth.SynthConfig(), seed=SEED)
    projector = GroundProjector(world.camera, load_grid_config(), world.labels)
    cfg = load_fused_grid_config()
    frames = []
    for index in FRAMES:
        truth = world.render(index)
        outputs, slot_of = fusion_outputs_from_panoptic(
            truth.panoptic, {s.id: s.category_id for s in truth.segments}, world.labels)
        grid = projector.project(outputs).to_numpy()
        speed = {slot_of[o.segment_id]: math.hypot(*o.velocity_mps) for o in truth.objects
                 if o.segment_id in slot_of}
        seen = [o for o in truth.objects if o.visible_px > 0]
        measured = [o for o in grid.objects if o.segment_id in speed]
        footprints = [o.footprint() for o in seen] + [o.footprint.corners() for o in measured]
        speeds = [math.hypot(*o.velocity_mps) for o in seen] + [speed[o.segment_id] for o in measured]
        moving = [f for f, v in zip(footprints, speeds) if v >= MOVING_SPEED_MPS]  # the tracker's is_moving
        frames.append((index, truth, grid, moving, pose(world.ego_x_m(index))))
    return world, cfg, frames


def fuse(world, cfg, frames, with_moving: bool = True):
    fused = FusedGrid(cfg)
    for index, _, grid, moving, at in frames:
        result = fused.update(grid, at, world.timestamp_ns(index), moving if with_moving else [])
    return result


def road_metrics(occupancy, class_grid, truth, geometry):
    """Unknown fraction and free-road IoU within NEAR_M, over the road in the grid and the road in view."""
    x, _ = geometry.cell_centers()
    near = x <= NEAR_M
    bev = truth.bev  # arrays [x, y]; grids are [row = y, col = x]
    road = (bev.drivable & (bev.footprint_ids == 0)).T & near
    in_view = road & bev.visible.T
    free_road = (occupancy == 0) & (class_grid == ROAD) & near
    return {
        "unknown_road": float((occupancy[road] == -1).mean()),
        "free_iou_road": float((free_road & road).sum() / (free_road | road).sum()),
        "unknown_in_view": float((occupancy[in_view] == -1).mean()),
        "free_iou_in_view": float((free_road & in_view).sum() / ((free_road & in_view) | in_view).sum()),
        "false_free": float((free_road & ~road).sum() / max(free_road.sum(), 1)),
    }


@pytest.mark.slow
def test_fusing_ten_frames_fills_the_road_without_false_free_space(drive):
    world, cfg, frames = drive
    _, truth, grid, _, at = frames[-1]
    single = road_metrics(grid.occupancy, grid.class_grid, truth, grid.geometry)
    fused = road_metrics(*fuse(world, cfg, frames).in_vehicle_frame(grid.geometry, at), truth, grid.geometry)
    print("single", single, "\nfused", fused)
    # the road the camera does not see now (its blind first metres, behind traffic) was seen before
    assert fused["unknown_road"] < 0.6 * single["unknown_road"]
    assert fused["free_iou_road"] > single["free_iou_road"] + 0.1
    # and no free space where there is none
    assert fused["false_free"] <= single["false_free"] + 0.001
    # the road in view is already known in one frame; older evidence costs little there (footprints
    # of parked cars that the projector draws a little differently each frame add up)
    assert fused["unknown_in_view"] <= single["unknown_in_view"] + 0.002
    assert fused["free_iou_in_view"] >= single["free_iou_in_view"] - 0.01


@pytest.mark.slow
def test_a_car_that_drove_on_leaves_no_occupied_cells_behind(drive):
    world, cfg, frames = drive
    last_index, last_truth, _, _, last_at = frames[-1]
    fused = fuse(world, cfg, frames)
    unmasked = fuse(world, cfg, frames, with_moving=False)
    x, y = fused.geometry.cell_centers()

    def under(boxes, at):  # window cells under vehicle-frame boxes at a pose (odom = vehicle + x shift)
        inside = np.zeros(x.shape, dtype=bool)
        for box in boxes:
            c, s = math.cos(box.yaw_rad), math.sin(box.yaw_rad)
            dx, dy = x - at[0, 3] - box.center_m[0], y - box.center_m[1]
            inside |= (np.abs(c * dx + s * dy) <= box.size_m[0] / 2) & (np.abs(-s * dx + c * dy) <= box.size_m[1] / 2)
        return inside

    there_now = under(last_truth.objects, last_at)
    trail_cells = trails = 0
    for index, truth, _, _, at in frames:
        if world.time_s(last_index) - world.time_s(index) < 1.0:
            continue
        cars = [o for o in truth.objects if o.category == "car" and math.hypot(*o.velocity_mps) >= 1.0
                and o.visible_px >= 200]
        for car in cars:
            cells = under([car], at) & ~there_now
            assert cells.sum() > 50
            # nothing occupied there but what the current frame itself shows (another moving thing now)
            explained = (fused.frame_occupancy == 100) | fused.moving
            assert not (cells & (fused.occupancy == 100) & ~explained).any(), (index, car.track_id)
            assert (fused.log_odds[cells] < cfg.occupied_threshold).all()
            trail_cells += int((unmasked.occupancy[cells] == 100).sum())
            trails += 1
    print(f"{trails} car positions >= 1 s old; occupied cells there without the moving footprints: {trail_cells}")
    assert trails >= 3
    assert trail_cells > 100  # without the moving footprints the cars do leave trails


def test_the_known_part_holds_every_known_cell_where_it_is():
    grid = FusedGrid(small_config())
    geometry = frame_geometry()
    result = grid.update(frame_seeing(free_world, pose(1.0, 2.0, 0.3), geometry), pose(1.0, 2.0, 0.3), 0)
    cells, part = result.known_part()
    known = result.occupancy != -1
    assert 0 < cells.size < result.occupancy.size and (cells != -1).sum() == known.sum()
    # the part's cells are the window's cells at the same odom points
    rows, cols = np.nonzero(cells != -1)
    x = part.origin_x_m + (cols + 0.5) * part.resolution_m
    y = part.origin_y_m + (rows + 0.5) * part.resolution_m
    occupancy, _ = result.sample(x, y)
    np.testing.assert_array_equal(occupancy, cells[rows, cols])
    empty = FusedGrid(small_config()).update(frame_from_log_odds(np.zeros((8, 12)), geometry), pose(), 0)
    cells, part = empty.known_part()
    assert cells.shape == (1, 1) and cells[0, 0] == -1 and (part.width, part.height) == (1, 1)
