"""polygon_cells: the cells under convex polygons, against the per-cell test written out cell by cell."""
from __future__ import annotations

import math

import numpy as np
import pytest

from panoptic_perception.tracking import polygon_cells as pc
from panoptic_perception.tracking.polygon_cells import Lattice, polygon_cells


def per_cell(polygons, yaw, tx, ty, lattice: Lattice, margin: float):
    """Whole-window masks (inside, grown): every cell of every polygon's clipped box tested on its own."""
    res = lattice.resolution_m
    inside = np.zeros((lattice.height, lattice.width), dtype=bool)
    grown = np.zeros_like(inside)
    c, s = math.cos(yaw), math.sin(yaw)
    for polygon in polygons:
        x = tx + c * polygon[:, 0] - s * polygon[:, 1]
        y = ty + s * polygon[:, 0] + c * polygon[:, 1]
        c0 = max(math.floor((x.min() - margin) / res) - lattice.origin_col, 0)
        c1 = min(math.ceil((x.max() + margin) / res) - lattice.origin_col, lattice.width)
        r0 = max(math.floor((y.min() - margin) / res) - lattice.origin_row, 0)
        r1 = min(math.ceil((y.max() + margin) / res) - lattice.origin_row, lattice.height)
        if np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) < 0:
            x, y = x[::-1], y[::-1]
        for row in range(r0, r1):
            for col in range(c0, c1):
                cx, cy = (lattice.origin_col + col + 0.5) * res, (lattice.origin_row + row + 0.5) * res
                distances = []
                for k in range(len(x)):
                    ex, ey = x[(k + 1) % len(x)] - x[k], y[(k + 1) % len(x)] - y[k]
                    length = math.hypot(ex, ey) or 1.0
                    distances.append((ex * (cy - y[k]) - ey * (cx - x[k])) / length)
                inside[row, col] |= min(distances) >= 0.0
                grown[row, col] |= min(distances) >= -margin
    return inside, grown


def whole(cells, lattice: Lattice):
    inside = np.zeros((lattice.height, lattice.width), dtype=bool)
    grown = np.zeros_like(inside)
    if cells is not None:
        r0, r1, c0, c1 = cells.box
        inside[r0:r1, c0:c1], grown[r0:r1, c0:c1] = cells.inside, cells.grown
    return inside, grown


def grouped(polygons):
    groups = {}
    for p in polygons:
        groups.setdefault(len(p), []).append(p)
    return [np.array(g, dtype=np.float64) for g in groups.values()]


def rectangle(x, y, length, width, yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    corners = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * [length / 2, width / 2]
    return corners @ [[c, s], [-s, c]] + [x, y]


def check(polygons, yaw, tx, ty, lattice, margin):
    cells = polygon_cells(grouped(polygons), yaw, tx, ty, lattice, margin)
    expected_inside, expected_grown = per_cell(polygons, yaw, tx, ty, lattice, margin)
    inside, grown = whole(cells, lattice)
    np.testing.assert_array_equal(inside, expected_inside)
    np.testing.assert_array_equal(grown, expected_grown)
    if cells is not None:  # the box is tight: something on each of its sides
        assert grown[cells.box[0]].any() and grown[cells.box[1] - 1].any()
        assert grown[:, cells.box[2]].any() and grown[:, cells.box[3] - 1].any()
    return expected_grown.sum()


@pytest.mark.parametrize("seed", range(6))
def test_random_polygons_match_the_per_cell_test(seed):
    rng = np.random.default_rng(seed)
    res = float(rng.choice([0.2, 0.25, 0.5]))
    lattice = Lattice(int(rng.integers(-40, 40)), int(rng.integers(-40, 40)), 60, 50, res)
    polygons = [rectangle(*rng.uniform(-4, 14, 2), rng.uniform(0.3, 5), rng.uniform(0.3, 2), rng.uniform(-4, 4))
                for _ in range(12)]
    polygons += [rng.uniform(-1, 1, (3, 2)) * 3 + rng.uniform(0, 10, 2) for _ in range(4)]  # triangles
    polygons += [np.array([[3.0, 1.0], [5.0, 1.2], [5.0, 1.2], [4.0, 2.5]]),  # a repeated corner
                 np.array([[2.0, -1.0], [3.0, -1.5], [4.0, -1.0], [3.5, 0.0], [2.5, 0.0]])]
    polygons = [p[::-1] if rng.random() < 0.5 else p for p in polygons]  # either winding
    origin = np.array([lattice.origin_col, lattice.origin_row]) * lattice.resolution_m
    tx, ty = origin + rng.uniform(0, 8, 2)
    assert check(polygons, rng.uniform(-math.pi, math.pi), tx, ty, lattice, float(rng.choice([0.0, 0.3, 0.5]))) > 0


@pytest.mark.parametrize("yaw", [0.0, math.pi / 2, math.pi, -math.pi / 2])
def test_edges_through_cell_centres_are_decided_as_the_per_cell_test_decides(yaw):
    """Axis-aligned rectangles whose edges, and edges moved by the margin, run through cell centres:
    the float64 rounding decides those cells, the same way in both."""
    lattice = Lattice(-20, -20, 40, 40, 0.25)
    polygons = [rectangle(0.125 + 0.25 * i, 0.125 - 0.25 * i, 1.0 + 0.5 * i, 0.5 + 0.25 * i, 0.0) for i in range(6)]
    polygons += [rectangle(-2.0, 1.0, 1.5, 1.0, math.pi / 4),
                 np.array([[0.125, 0.125], [2.125, 0.125], [0.125, 2.125]])]
    check(polygons, yaw, 0.25 * 3, -0.25 * 2, lattice, 0.25)
    check(polygons, yaw, 0.0, 0.0, lattice, 0.5)


def test_nearly_horizontal_and_vertical_edges():
    lattice = Lattice(-10, -10, 40, 40, 0.2)
    polygons = [np.array([[0.0, 0.1], [5.0, 0.1 + 1e-15], [5.0, 2.1], [0.0, 2.1 - 1e-13]]),
                np.array([[1.1, -1.0], [1.1 + 1e-14, 1.0], [-1.0, 1.0]]),
                rectangle(2.0, -1.0, 3.0, 1.0, 1e-12), rectangle(0.0, 0.0, 3.0, 1.0, math.pi / 2 + 1e-15)]
    check(polygons, 0.0, 0.0, 0.0, lattice, 0.5)
    check(polygons, 1e-13, 0.1, 0.1, lattice, 0.0)


def test_a_wrong_crossing_prediction_is_caught_and_the_row_tested_cell_by_cell(monkeypatch):
    """The prediction only saves work: whatever it says, the runs are the per-cell test's."""
    rng = np.random.default_rng(7)
    real = pc._predicted_crossing
    wrong = []

    def off_by_some(*args):
        crossing = real(*args)
        shift = rng.integers(-6, 7, crossing.shape)
        wrong.append(int((shift != 0).sum()))
        return crossing + shift

    monkeypatch.setattr(pc, "_predicted_crossing", off_by_some)
    lattice = Lattice(-30, -30, 60, 60, 0.2)
    polygons = [rectangle(*rng.uniform(-3, 3, 2), rng.uniform(1, 5), rng.uniform(0.5, 2), rng.uniform(-4, 4))
                for _ in range(10)]
    assert check(polygons, 0.3, 0.5, -0.2, lattice, 0.5) > 0
    assert sum(wrong) > 100


def test_polygons_off_the_window_give_nothing_and_those_across_its_edge_are_cut():
    lattice = Lattice(0, 0, 20, 10, 0.5)
    assert polygon_cells(grouped([rectangle(100.0, 100.0, 2.0, 1.0, 0.3)]), 0.0, 0.0, 0.0, lattice, 0.5) is None
    assert polygon_cells([], 0.0, 0.0, 0.0, lattice, 0.5) is None
    across = [rectangle(0.0, 2.0, 3.0, 1.0, 0.2), rectangle(9.8, 4.9, 2.0, 2.0, 0.0)]
    assert check(across, 0.0, 0.0, 0.0, lattice, 0.5) > 0
