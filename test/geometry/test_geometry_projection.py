"""The projector on exact ray-cast scenes (geometry/analytic_scene.py): truth is the boxes themselves."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from panoptic_perception.errors import InputError
from panoptic_perception.geometry.analytic_scene import Box, Street, footprint_mask, render, to_torch
from panoptic_perception.geometry.camera import Camera, Extrinsics, Intrinsics
from panoptic_perception.geometry.grid import load_grid_config
from panoptic_perception.geometry.projection import GroundProjector
from panoptic_perception.labels import load_label_space

CAR, PERSON, BUILDING = 13, 11, 2
BOXES = (
    Box(12.0, 1.5, 4.4, 1.8, 1.5, 0.0, CAR),
    Box(20.0, -3.0, 4.4, 1.8, 1.5, math.radians(28.0), CAR),
    Box(17.0, 4.2, 0.6, 0.6, 1.75, 0.0, PERSON, score=0.9),
    Box(40.0, -1.0, 4.4, 1.8, 1.5, math.radians(5.0), CAR),
    Box(8.0, -5.5, 4.4, 1.8, 1.5, math.radians(-90.0), CAR),
    Box(25.0, 10.0, 20.0, 1.0, 8.0, 0.0, BUILDING, is_thing=False),
)


@pytest.fixture(scope="module")
def labels():
    return load_label_space("cityscapes")


@pytest.fixture(scope="module")
def config():
    # the analytic street is flat: no raised sidewalk
    return replace(load_grid_config(), surface_height_m={})


@pytest.fixture(scope="module")
def scene():
    cam = Camera()
    return cam, render(cam, Street(boxes=BOXES), num_slots=32)


@pytest.fixture(scope="module")
def result(scene, config, labels):
    cam, arrays = scene
    return GroundProjector(cam, config, labels).project(to_torch(arrays))


def _visible_ground(cam: Camera, geometry, boxes) -> np.ndarray:
    """Cells whose centre the camera sees: inside the image, in front, no box in the way."""
    x, y = geometry.cell_centers()
    pts = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)
    uv, depth = cam.project_vehicle_points(pts)
    inside = (depth > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < cam.width - 0.5) & (uv[:, 1] >= -0.5) \
        & (uv[:, 1] < cam.height - 0.5)
    origin = cam.extrinsics.translation()
    rays = pts - origin
    from panoptic_perception.geometry.analytic_scene import _ray_box_entry

    hidden = np.zeros(len(pts), dtype=bool)
    for b in boxes:
        hidden |= _ray_box_entry(origin, rays, b) < 1.0  # entry before reaching the cell (t = 1)
    return (inside & ~hidden).reshape(x.shape)


def test_objects_are_placed_at_their_true_positions(result):
    found = {o.segment_id: o for o in result.objects}
    for k, box in enumerate(BOXES, start=1):
        if not box.is_thing:
            continue
        assert k in found, f"box {k} not found"
        obj = found[k]
        assert obj.category == box.category
        assert obj.contact_visible
        tol = 0.15 + 0.01 * math.hypot(box.x_m, box.y_m)  # pixel rows grow coarse with range
        assert math.hypot(obj.x_m - box.x_m, obj.y_m - box.y_m) < tol, (k, obj.x_m, obj.y_m)
        if box.category == CAR:
            d = (obj.footprint.heading_rad - box.yaw_rad + math.pi / 2) % math.pi - math.pi / 2
            assert abs(d) < math.radians(6.0), (k, math.degrees(obj.footprint.heading_rad))
    assert found[3].score == pytest.approx(0.9)
    assert found[3].class_name == "person"
    sigmas = sorted((o.range_m, o.position_sigma_m) for o in result.objects)
    assert [s for _, s in sigmas] == sorted(s for _, s in sigmas)  # uncertainty grows with range


def test_free_cells_match_visible_ground(scene, result):
    cam, _ = scene
    truth = _visible_ground(cam, result.geometry, BOXES) & ~footprint_mask(result.geometry, BOXES)
    free = result.occupancy.numpy() == 0
    iou = (free & truth).sum() / (free | truth).sum()
    assert iou >= 0.9, iou


def test_occupied_cells_match_true_footprints_and_never_run_far_behind(scene, result, config):
    things = [b for b in BOXES if b.is_thing]
    truth = footprint_mask(result.geometry, things)
    occupied = result.occupancy.numpy() == 100
    thing_cells = occupied & (result.class_grid.numpy() != BUILDING)
    iou = (thing_cells & truth).sum() / (thing_cells | truth).sum()
    assert iou >= 0.6, iou
    # every occupied thing cell lies within its class's depth prior of a true footprint
    x, y = result.geometry.cell_centers()
    for cid in np.unique(result.class_grid.numpy()[thing_cells]):
        prior = config.prior_for(load_label_space("cityscapes").categories[int(cid)].name)
        cells = thing_cells & (result.class_grid.numpy() == cid)
        near = np.zeros_like(cells)
        for b in things:
            if b.category == cid:
                near |= np.hypot(x - b.x_m, y - b.y_m) <= prior.length_m / 2 + math.hypot(b.length_m,
                                                                                           b.width_m) / 2
        assert not (cells & ~near).any()


def test_cells_hidden_behind_a_car_are_unknown(result):
    # straight behind car 1 (12 m ahead, 1.5 m left) along its camera ray, past its footprint
    occ = result.occupancy.numpy()
    geo = result.geometry
    for r in (16.0, 18.0, 19.0):
        y = 1.5 * r / 12.0
        row, col, inside = geo.cell_of(np.array([r]), np.array([y]))
        assert inside[0] and occ[row[0], col[0]] == -1, r
    # and the ground just in front of it is free
    row, col, _ = geo.cell_of(np.array([9.0]), np.array([1.5]))
    assert occ[row[0], col[0]] == 0


def test_stuff_obstacles_are_occupied_at_their_ground_contact_only(scene, result):
    occ = result.occupancy.numpy()
    cls = result.class_grid.numpy()
    building = (occ == 100) & (cls == BUILDING)
    assert building.sum() > 20
    x, y = result.geometry.cell_centers()
    # only its visible faces (y = 9.5 m side, x = 15 m end) touch the ground: nothing smeared
    assert y[building].min() >= 9.5 - 0.3
    assert y[building].max() <= 10.5 + 0.3
    assert x[building].min() >= 15.0 - 0.3
    assert (y[building] < 9.5 + 0.3).mean() > 0.8  # mostly the long face that faces the road
    hidden = ~_visible_ground(scene[0], result.geometry, BOXES)
    behind = hidden & (y > 10.6) & (x > 16.0) & (x < 34.0)
    assert behind.sum() > 1000
    # the building hides what is beyond (cells cut by the shadow's edge may still show some ground)
    assert (occ[behind] == 0).mean() < 0.01


def test_class_grid_names_ground_classes_on_free_cells(result):
    occ, cls = result.occupancy.numpy(), result.class_grid.numpy()
    _, y = result.geometry.cell_centers()
    free = occ == 0
    assert set(np.unique(cls[free])) <= {0, 1, 9}
    assert (cls[free & (np.abs(y) < 4.5)] == 0).mean() > 0.99  # road
    assert (cls[free & (np.abs(y) > 5.5) & (np.abs(y) < 7.0)] == 1).mean() > 0.95  # sidewalk
    assert (cls[occ == -1] == 255).all()


def test_evidence_is_weighted_by_confidence(scene, config, labels):
    cam, arrays = scene
    proj = GroundProjector(cam, config, labels)
    inputs = to_torch(arrays)
    conf = torch.ones(cam.height, cam.width)
    conf[:, : cam.width // 2] = 0.0  # no trust in the left half of the image
    res = proj.project({**inputs, "pixel_confidence": conf})
    occ = res.occupancy.numpy()
    _, y = res.geometry.cell_centers()
    base = proj.project(inputs).occupancy.numpy()
    # the left half of the image sees the left of the road (y > 0): no evidence there now
    assert (occ[(y > 3.0) & (base == 0)] == -1).all()
    assert (occ[(y < -1.0) & (base == 0)] == 0).mean() > 0.99
    # segment scores weight the same way when no per-pixel confidence is given
    low = dict(arrays)
    low["segment_score"] = arrays["segment_score"] * 0.5
    lo_half = proj.project(to_torch(low)).log_odds.numpy()
    lo_full = proj.project(inputs).log_odds.numpy()
    free_cells = (base == 0) & (lo_full > -10)
    np.testing.assert_allclose(lo_half[free_cells], lo_full[free_cells] * 0.5, rtol=1e-5)


def test_invalid_segments_are_ignored(scene, config, labels):
    cam, arrays = scene
    arrays = dict(arrays)
    valid = arrays["segment_valid"].copy()
    valid[: len(BOXES)] = False  # drop every box
    arrays["segment_valid"] = valid
    res = GroundProjector(cam, config, labels).project(to_torch(arrays))
    assert res.objects == []
    assert not (res.occupancy.numpy() == 100).any()


def test_pitch_error_of_one_degree_shows_the_expected_range_error(config, labels):
    box = Box(15.0, 0.0, 4.4, 1.8, 1.5, 0.0, CAR)
    cam = Camera()
    arrays = render(cam, Street(boxes=(box,)), num_slots=8)
    inputs = to_torch(arrays)
    proj = GroundProjector(cam, config, labels)
    near = proj.project(inputs).objects[0]
    near_face = near.x_m - near.footprint.length_m / 2
    assert near_face == pytest.approx(box.x_m - box.length_m / 2, abs=0.1)
    h = cam.extrinsics.height_m
    # the projector believes the camera looks 1 degree further down: every ray hits closer
    proj.set_camera(Camera(cam.intrinsics, replace(cam.extrinsics, pitch_deg=1.0)))
    pitched = proj.project(inputs).objects[0]
    expected = h / math.tan(math.atan2(h, near_face) + math.radians(1.0))
    assert pitched.x_m - pitched.footprint.length_m / 2 == pytest.approx(expected, abs=0.1)
    assert near_face - expected > 1.0  # the error is large, so the parameter is really used
    # a lower mounting height scales every ground range by the height ratio
    proj.set_camera(Camera(cam.intrinsics, replace(cam.extrinsics, height_m=1.5)))
    lower = proj.project(inputs).objects[0]
    assert lower.x_m - lower.footprint.length_m / 2 == pytest.approx(near_face * 1.5 / h, abs=0.05)


def test_network_sized_input_projects_to_the_same_place(config, labels):
    box = Box(14.0, -1.0, 4.4, 1.8, 1.5, 0.0, CAR)
    full = Camera()
    small = Camera(full.intrinsics.scaled(640, 192), full.extrinsics)
    arrays = render(small, Street(boxes=(box,)), num_slots=8)
    proj = GroundProjector(full, config, labels)  # built for the camera, fed the network's size
    obj = proj.project(to_torch(arrays)).objects[0]
    assert math.hypot(obj.x_m - box.x_m, obj.y_m - box.y_m) < 0.4
    assert proj.lookup(640, 192).camera.width == 640


def test_tables_are_built_once_and_rebuilt_only_on_change(scene, config, labels):
    cam, arrays = scene
    proj = GroundProjector(cam, config, labels)
    inputs = to_torch(arrays)
    proj.project(inputs)
    table = proj.lookup(cam.width, cam.height)
    proj.project(inputs, camera=Camera(Intrinsics.kitti(), Extrinsics()))  # equal camera
    assert proj.lookup(cam.width, cam.height) is table
    proj.set_camera(Camera(Intrinsics.kitti(), Extrinsics(pitch_deg=0.5)))
    assert proj.lookup(cam.width, cam.height) is not table


def test_bad_inputs_are_named(scene, config, labels):
    cam, arrays = scene
    proj = GroundProjector(cam, config, labels)
    inputs = to_torch(arrays)
    with pytest.raises(InputError, match="segment_valid"):
        proj.project({k: v for k, v in inputs.items() if k != "segment_valid"})
    with pytest.raises(InputError, match="segment_map"):
        proj.project({**inputs, "segment_map": inputs["segment_map"][None]})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu(scene, config, labels):
    cam, arrays = scene
    proj = GroundProjector(cam, config, labels)
    cpu = proj.project(to_torch(arrays))
    gpu = proj.project(to_torch(arrays, "cuda"))
    assert gpu.occupancy.device.type == "cuda"
    np.testing.assert_array_equal(gpu.occupancy.cpu().numpy(), cpu.occupancy.numpy())
    np.testing.assert_array_equal(gpu.class_grid.cpu().numpy(), cpu.class_grid.numpy())
    assert [o.segment_id for o in gpu.objects] == [o.segment_id for o in cpu.objects]


def test_a_far_rider_above_the_grids_first_row_stands_where_its_bicycle_does(config, labels):
    """Far away a rider's lowest visible pixels (its legs over the bicycle, ~1 m up) look at ground
    beyond the grid, above the first row the projection reads; it must still find its carrier."""
    rider_id, bicycle_id = labels.names.index("rider"), labels.names.index("bicycle")
    cam = Camera()
    bicycle = Box(40.0, -2.5, 1.8, 0.6, 1.1, 0.0, bicycle_id)
    rider = Box(40.0, -2.5, 0.5, 0.5, 1.75, 0.0, rider_id)
    arrays = render(cam, Street(boxes=(bicycle, rider)), num_slots=8)
    projector = GroundProjector(cam, config, labels)
    table = projector.lookup(cam.width, cam.height)
    rider_slots = np.flatnonzero(arrays["segment_category"] == rider_id) + 1
    rider_rows = np.nonzero(np.isin(arrays["segment_map"], rider_slots))[0]
    assert rider_rows.max() < table.first_row - 1, "the scene must put the rider's bottom above the first row"
    objects = {o.class_name: o for o in projector.project(to_torch(arrays)).objects}
    assert set(objects) == {"rider", "bicycle"}
    assert objects["rider"].footprint == objects["bicycle"].footprint
    assert objects["rider"].x_m == pytest.approx(40.0, abs=1.0) and objects["rider"].contact_visible


def _footprint_iou(a, b) -> float:
    """Area IoU of two ground rectangles, rasterised at 2 cm."""
    step = 0.02
    xs, ys = np.meshgrid(np.arange(-12, 12, step) + b.x_m, np.arange(-12, 12, step) + b.y_m)

    def inside(f) -> np.ndarray:
        c, s = math.cos(f.heading_rad), math.sin(f.heading_rad)
        dx, dy = xs - f.x_m, ys - f.y_m
        return (np.abs(c * dx + s * dy) <= f.length_m / 2) & (np.abs(-s * dx + c * dy) <= f.width_m / 2)

    a_in, b_in = inside(a), inside(b)
    return float((a_in & b_in).sum() / (a_in | b_in).sum())


@pytest.mark.parametrize("box", [Box(5.0, -3.2, 4.4, 1.8, 1.5, 0.0, CAR),
                                 Box(6.0, 3.5, 4.4, 1.8, 1.5, math.radians(5.0), CAR),
                                 Box(4.5, 3.2, 4.4, 1.8, 1.5, math.radians(12.0), CAR)],
                         ids=["right", "left", "left-turned"])
def test_a_car_being_passed_keeps_its_place_when_its_back_is_below_the_image(box, config, labels):
    """Alongside the ego, a car's back is below the image: its seen contact (the side) ends at the
    border, not at the car's end. Grown away from the camera as usual, the hidden part lands on road
    the camera sees free ahead of the car (2-3 m too far, IoU 0.1-0.34); grown toward it, it fits."""
    from panoptic_perception.geometry.objects import Footprint

    cam = Camera()
    arrays = render(cam, Street(boxes=(box,)), num_slots=4)
    (car,) = [o for o in GroundProjector(cam, config, labels).project(to_torch(arrays)).objects]
    assert car.truncated and car.contact_visible
    truth = Footprint(box.x_m, box.y_m, box.length_m, box.width_m, box.yaw_rad)
    assert _footprint_iou(car.footprint, truth) >= 0.75
    assert math.hypot(car.x_m - box.x_m, car.y_m - box.y_m) < 0.5
