"""polygon_cells: the cells under convex polygons, against the per-cell test written out cell by cell
(test/support/polygon_reference.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from polygon_reference import per_cell_masks

from panoptic_perception.errors import InputError
from panoptic_perception.tracking.polygon_cells import Lattice, polygon_cells


def per_cell(polygons, yaw, tx, ty, lattice: Lattice, margin: float):
    return per_cell_masks(polygons, yaw, tx, ty, lattice.origin_col, lattice.origin_row, lattice.width,
                          lattice.height, lattice.resolution_m, margin)


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
    if cells is not None:  # the box holds the cells, within the window
        r0, r1, c0, c1 = cells.box
        rows, cols = np.flatnonzero(expected_grown.any(1)), np.flatnonzero(expected_grown.any(0))
        assert 0 <= r0 <= rows[0] and rows[-1] < r1 <= lattice.height
        assert 0 <= c0 <= cols[0] and cols[-1] < c1 <= lattice.width
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


def test_long_polygons_use_fewer_fraction_bits_and_absurd_ones_are_refused():
    lattice = Lattice(-100, -100, 200, 200, 0.2)
    # a 2 km strip across the window: its corners lie thousands of cells from the box
    long = [np.array([[-1000.0, 0.0], [1000.0, 0.3], [1000.0, 2.3], [-1000.0, 2.0]]),
            rectangle(3.0, -2.0, 4.4, 1.8, 0.4)]
    assert check(long, 0.2, 1.0, 1.0, lattice, 0.5) > 0
    with pytest.raises(InputError, match="far too large"):
        polygon_cells(grouped([np.array([[0.0, 0.0], [1e9, 0.0], [0.0, 1.0]])]), 0.0, 0.0, 0.0, lattice, 0.5)


def test_geometry_cells_of_a_rotated_car():
    """Independent of the integers: a 4 m x 2 m car at 30 degrees on 0.1 m cells covers its area in cells,
    within a cell's width along its outline; the grown one its grown area."""
    lattice = Lattice(-100, -100, 200, 200, 0.1)
    cells = polygon_cells(grouped([rectangle(1.0, 2.0, 4.0, 2.0, math.radians(30))]), 0.0, 0.0, 0.0, lattice, 0.5)
    area_cells = 4.0 * 2.0 / 0.01
    assert abs(cells.inside.sum() - area_cells) < 12.0 / 0.1  # perimeter x one cell
    grown_area = (4.0 + 1.0) * (2.0 + 1.0) / 0.01  # mitred corners: the rectangle grown by 0.5 m each side
    assert abs(cells.grown.sum() - grown_area) < 16.0 / 0.1


def test_polygons_off_the_window_give_nothing_and_those_across_its_edge_are_cut():
    lattice = Lattice(0, 0, 20, 10, 0.5)
    assert polygon_cells(grouped([rectangle(100.0, 100.0, 2.0, 1.0, 0.3)]), 0.0, 0.0, 0.0, lattice, 0.5) is None
    assert polygon_cells([], 0.0, 0.0, 0.0, lattice, 0.5) is None
    across = [rectangle(0.0, 2.0, 3.0, 1.0, 0.2), rectangle(9.8, 4.9, 2.0, 2.0, 0.0)]
    assert check(across, 0.0, 0.0, 0.0, lattice, 0.5) > 0
