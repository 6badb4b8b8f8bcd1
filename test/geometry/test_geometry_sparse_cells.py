"""Far cells seen through one or two pixels of a network-size map: free when the ground is visible, no stripes.

The Pipeline projects the 640x192 map of a 1242x375 camera. Beyond ~15 m one pixel row spans several
0.2 m cells, so a cell gets one or two samples; with a network's confidence below 1 their evidence
used to miss the free threshold in every other band of cells (unknown stripes). A cell seen through
fewer than `min_pixels_per_cell` samples now counts as seen by that many (geometry/ipm.py).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from panoptic_perception.geometry.analytic_scene import Box, Street, _ray_box_entry, footprint_mask, render, to_torch
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.geometry.grid import load_grid_config
from panoptic_perception.geometry.ipm import sparse_cell_gain
from panoptic_perception.geometry.projection import GroundProjector
from panoptic_perception.labels import load_label_space

CAR, BUILDING, ROAD = 13, 2, 0
FULL = Camera()  # the KITTI camera the projector is built for
SMALL = Camera(FULL.intrinsics.scaled(640, 192), FULL.extrinsics)  # what the network's map sees
ROAD_ONLY = Street(road_half_width_m=200.0, sidewalk_width_m=0.0)  # flat road to every side, sky above
BANDS_M = ((0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 40.0), (40.0, 50.0), (50.0, 60.0))


@pytest.fixture(scope="module")
def labels():
    return load_label_space("cityscapes")


def _config(**overrides):
    # the analytic street is flat: no raised sidewalk
    return replace(load_grid_config(), surface_height_m={}, **overrides)


def _road_outputs(score: float = 1.0, confidence: float = None) -> dict:
    arrays = render(SMALL, ROAD_ONLY, num_slots=4)
    arrays["segment_score"] = (arrays["segment_score"] * score).astype(np.float32)
    outputs = to_torch(arrays)
    if confidence is not None:
        outputs["pixel_confidence"] = torch.full(arrays["segment_map"].shape, confidence)
    return outputs


def _in_image(camera: Camera, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
    """Ground points (any shape) whose image point lies on the image, in front of the camera."""
    pts = np.stack([x_m.ravel(), y_m.ravel(), np.zeros(x_m.size)], 1)
    with np.errstate(invalid="ignore", divide="ignore"):  # points level with the camera: depth 0
        uv, depth = camera.project_vehicle_points(pts)
        inside = (depth > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < camera.width - 0.5) & (uv[:, 1] >= -0.5) \
            & (uv[:, 1] < camera.height - 0.5)
    return inside.reshape(x_m.shape)


def _unknown_by_band(result, visible: np.ndarray) -> list:
    x, _ = result.geometry.cell_centers()
    occ = result.occupancy.numpy()
    return [float((occ[visible & (x >= lo) & (x < hi)] == -1).mean()) for lo, hi in BANDS_M]


@pytest.mark.parametrize("score, confidence", [(0.9, None), (0.6, None), (1.0, 0.75)],
                         ids=["score-0.9", "score-0.6", "pixel-confidence-0.75"])
def test_far_road_seen_through_the_network_map_is_free_without_stripes(labels, score, confidence):
    outputs = _road_outputs(score, confidence)
    projector = GroundProjector(FULL, _config(), labels)
    result = projector.project(outputs)
    x, y = result.geometry.cell_centers()
    visible = _in_image(SMALL, x, y)
    assert all(visible[(x >= lo) & (x < hi)].sum() > 1000 for lo, hi in BANDS_M[1:])
    unknown = _unknown_by_band(result, visible)
    assert max(unknown) <= 0.002, unknown
    free = result.occupancy.numpy() == 0
    assert (result.class_grid.numpy()[free] == ROAD).all()
    # without the sparse-cell minimum (the old projection) the far bands are mostly unknown stripes
    striped = _unknown_by_band(GroundProjector(FULL, _config(min_pixels_per_cell=1), labels).project(outputs),
                               visible)
    assert min(striped[3:]) > 0.5, striped
    # straight ahead every cell from 30 m to the grid's end is free
    row = result.geometry.cell_of(np.array([40.0]), np.array([0.1]))[0][0]
    assert (result.occupancy.numpy()[row, x[0] > 30.0] == 0).all()


def test_a_sparsely_seen_cell_counts_as_min_pixels_per_cell_never_more(labels):
    score, config = 0.9, _config()
    projector = GroundProjector(FULL, config, labels)
    result = projector.project(_road_outputs(score))
    gain = projector.lookup(SMALL.width, SMALL.height).cell_gain.numpy().reshape(result.geometry.height, -1)
    log_odds = result.log_odds.numpy()
    x, y = result.geometry.cell_centers()
    per_pixel = config.evidence.free_per_pixel * score
    sparse = gain > 1
    assert sparse[x > 30.0].mean() > 0.9  # far away nearly every cell is seen through fewer pixels
    # every sample of this scene is road at the same weight: a sparse cell sums exactly min_pixels_per_cell
    np.testing.assert_allclose(log_odds[sparse], config.min_pixels_per_cell * per_pixel, rtol=1e-5)
    # cells seen by many pixels near the camera carry several times that evidence
    near = (x > 5.0) & (x < 10.0) & (np.abs(y) < 2.0)
    assert np.median(log_odds[near]) <= 4 * config.min_pixels_per_cell * per_pixel
    assert log_odds.min() >= config.max_pixels_per_cell * per_pixel - 1e-5


def test_cells_out_of_view_stay_unknown(labels):
    result = GroundProjector(FULL, _config(), labels).project(_road_outputs(0.9))
    geo = result.geometry
    x, y = geo.cell_centers()
    half = geo.resolution_m / 2
    # a cell none of whose corners or centre the camera sees lies wholly outside the view
    seen = _in_image(SMALL, x, y)
    for dx in (-half, half):
        for dy in (-half, half):
            seen |= _in_image(SMALL, x + dx, y + dy)
    out_of_view = ~seen
    assert out_of_view.sum() > 5000  # beside the camera's 80 degree view and below its lowest row
    assert (result.occupancy.numpy()[out_of_view] == -1).all()


def test_cells_hidden_behind_objects_stay_unknown_and_far_walls_stay_occupied(labels):
    boxes = (Box(20.0, 1.0, 4.4, 1.8, 1.5, 0.0, CAR, score=0.8), Box(38.0, -3.0, 4.4, 1.8, 1.5, 0.0, CAR, score=0.8),
             Box(40.0, -9.0, 40.0, 1.0, 8.0, 0.0, BUILDING, is_thing=False))
    arrays = render(SMALL, Street(boxes=boxes), num_slots=8)
    # network-like scores: the facade 0.7, the ground 0.9
    stuff_score = np.where(arrays["segment_category"] == BUILDING, 0.7, 0.9)
    arrays["segment_score"] = np.where(arrays["segment_is_thing"], arrays["segment_score"],
                                       stuff_score * arrays["segment_valid"]).astype(np.float32)
    result = GroundProjector(FULL, _config(), labels).project(to_torch(arrays))
    geo = result.geometry
    occ, cls = result.occupancy.numpy(), result.class_grid.numpy()
    x, y = geo.cell_centers()
    pts = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)
    origin = SMALL.extrinsics.translation()
    hidden = np.zeros(len(pts), dtype=bool)
    for box in boxes:
        hidden |= _ray_box_entry(origin, pts - origin, box) < 1.0  # entered before the ray reaches the cell
    hidden = hidden.reshape(x.shape) & ~footprint_mask(geo, boxes)
    # cells whose neighbours are hidden too (a cell on the shadow's edge may show some ground
    # within the map's half-pixel resolution)
    deep = hidden.copy()
    for axis in (0, 1):
        for shift in (-1, 1):
            deep &= np.roll(hidden, shift, axis=axis)
    assert deep[x > 40.0].sum() > 1000
    assert not (occ[deep] == 0).any()  # never free; a thing's prior footprint may reach in
    assert (occ[deep] == -1).mean() > 0.99
    # the facade's ground contact far away still outweighs the ground sample its cell may get
    facade = (occ == 100) & (cls == BUILDING)
    assert all(facade[(x >= lo) & (x < lo + 5.0)].sum() >= 2 for lo in range(20, 60, 5))
    # on its road-side face (y = -8.5 m) or its near end, within a far pixel row's reach, not smeared
    assert y[facade].min() >= -9.5 - 0.3 and y[facade].max() <= -8.5 + 0.5
    # and the car 38 m ahead is there
    assert (occ[footprint_mask(geo, boxes[1:2])] == 100).mean() > 0.6


def test_sparse_cell_gain_counts_samples_per_cell():
    cells = np.array([1, 2, 2, 3, 3, 3, 5])
    np.testing.assert_array_equal(sparse_cell_gain(cells, 6, 2), [1, 2, 1, 1, 1, 2])
    np.testing.assert_allclose(sparse_cell_gain(cells, 6, 3), [1, 3, 1.5, 1, 1, 3])
    np.testing.assert_array_equal(sparse_cell_gain(cells, 6, 1), np.ones(6))
    assert sparse_cell_gain(cells, 6, 2).dtype == np.float32


def test_the_gain_table_is_built_once_per_camera_and_follows_the_config(labels):
    projector = GroundProjector(FULL, _config(), labels)
    table = projector.lookup(SMALL.width, SMALL.height)
    assert table.cell_gain.shape == (table.geometry.num_cells,)
    assert float(table.cell_gain.max()) == 2.0 and float(table.cell_gain.min()) == 1.0
    projector.set_config(_config(min_pixels_per_cell=4))
    rebuilt = projector.lookup(SMALL.width, SMALL.height)
    assert rebuilt is not table and float(rebuilt.cell_gain.max()) == 4.0
    unsampled = np.ones(rebuilt.geometry.num_cells, dtype=bool)
    unsampled[rebuilt.sample_cell.numpy()] = False
    assert unsampled.sum() > 1000 and (rebuilt.cell_gain.numpy()[unsampled] == 1.0).all()
