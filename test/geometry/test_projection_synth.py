"""Projection against the synthetic world's exact truth, fed the ground-truth panoptic (geometry alone)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from panoptic_perception.geometry.camera import Camera
from panoptic_perception.geometry.grid import load_grid_config
from panoptic_perception.geometry.panoptic_outputs import fusion_outputs_from_panoptic
from panoptic_perception.geometry.projection import GroundProjector
from panoptic_perception.labels import load_label_space

synth = pytest.importorskip("panoptic_perception.data.synth", reason="synthetic world not available")

SEEDS = (0, 1, 2)
ROAD = 0


def _fusion_outputs(frame, labels):
    return fusion_outputs_from_panoptic(frame.panoptic, {s.id: s.category_id for s in frame.segments}, labels)


@pytest.fixture(scope="module")
def frames():
    labels = load_label_space("cityscapes")
    config = load_grid_config()
    out = []
    for seed in SEEDS:
        frame = synth.StreetWorld(synth.SynthConfig(), seed=seed).render(0)
        outputs, slot_of = _fusion_outputs(frame, labels)
        result = GroundProjector(frame.camera, config, labels).project(outputs)
        out.append((frame, slot_of, result))
    return out


@pytest.mark.slow
def test_object_positions_within_the_issue_bounds(frames):
    errors = []
    for frame, slot_of, result in frames:
        found = {o.segment_id: o for o in result.objects}
        for box in frame.objects:
            obj = found.get(slot_of.get(box.segment_id, -1))
            if obj is None or not obj.contact_visible:
                continue
            errors.append((math.hypot(*box.center_m[:2]), math.hypot(obj.x_m - box.center_m[0],
                                                                     obj.y_m - box.center_m[1])))
    errors = np.array(errors)
    near, mid = errors[errors[:, 0] < 30, 1], errors[errors[:, 0] < 60, 1]
    assert len(near) >= 10
    assert np.median(near) < 0.3, np.median(near)
    assert np.median(mid) < 1.0, np.median(mid)


@pytest.mark.slow
def test_free_cells_match_the_visible_drivable_truth(frames):
    for frame, _, result in frames:
        bev = frame.bev  # arrays [x, y]; the grid is [row = y, col = x]
        truth = (bev.visible & bev.drivable & (bev.footprint_ids == 0)).T
        free_road = (result.occupancy.numpy() == 0) & (result.class_grid.numpy() == ROAD)
        iou = (free_road & truth).sum() / (free_road | truth).sum()
        assert iou >= 0.9, (frame.index, iou)


@pytest.mark.slow
def test_occupied_cells_match_the_footprints_of_the_things_in_view(frames):
    config = load_grid_config()
    labels = load_label_space("cityscapes")
    inter = union = 0
    for frame, slot_of, result in frames:
        bev = frame.bev
        seen = [i for i in np.unique(bev.footprint_ids) if i and i in slot_of]
        truth = np.isin(bev.footprint_ids, seen).T
        occupied = (result.occupancy.numpy() == 100) & np.isin(result.class_grid.numpy(), labels.thing_ids)
        inter += (occupied & truth).sum()
        union += (occupied | truth).sum()
        # no occupied cell farther behind its true object along the ray than the class prior
        x, y = result.geometry.cell_centers()
        for obj in result.objects:
            if not obj.contact_visible:
                continue
            box = next((b for b in frame.objects if slot_of.get(b.segment_id) == obj.segment_id), None)
            if box is None:
                continue
            prior = config.prior_for(obj.class_name)
            far_edge = math.hypot(*box.center_m[:2]) + math.hypot(*box.size_m[:2]) / 2
            corners = obj.footprint.corners()
            assert np.hypot(corners[:, 0], corners[:, 1]).max() <= far_edge + prior.length_m + 0.5
    assert inter / union >= 0.6, inter / union


@pytest.mark.slow
def test_one_degree_of_pitch_error_moves_objects_by_the_expected_range(frames):
    from dataclasses import replace

    labels = load_label_space("cityscapes")
    frame, slot_of, result = frames[0]
    outputs, _ = _fusion_outputs(frame, labels)
    cam = frame.camera
    assert cam.extrinsics.pitch_deg == 0.0
    wrong = Camera(cam.intrinsics, replace(cam.extrinsics, pitch_deg=1.0))
    pitched = GroundProjector(wrong, load_grid_config(), labels).project(outputs)
    h = cam.extrinsics.height_m
    base = {o.segment_id: o for o in result.objects if o.contact_visible and o.range_m < 30}
    checked = 0
    for obj in pitched.objects:
        ref = base.get(obj.segment_id)
        if ref is None or ref.class_name not in ("car", "truck", "bus"):
            continue
        r = ref.range_m - ref.footprint.length_m / 2  # roughly the near contact range
        expected_shift = r - h / math.tan(math.atan2(h, r) + math.radians(1.0))
        shift = ref.range_m - obj.range_m
        assert shift == pytest.approx(expected_shift, rel=0.25, abs=0.3), (obj.segment_id, shift)
        checked += 1
    assert checked >= 1


def test_synthetic_truth_is_drawn_on_the_projection_grid(frames):
    """The synth BEV truth and the projector share one grid definition; truth arrays are its transpose."""
    frame, _, result = frames[0]
    assert synth.SynthConfig().bev == load_grid_config().grid
    geometry = result.geometry
    assert frame.bev.shape == (geometry.width, geometry.height)
    assert (frame.bev.resolution_m, frame.bev.x_min_m, frame.bev.y_min_m) == (
        geometry.resolution_m, geometry.origin_x_m, geometry.origin_y_m)
    x, y = geometry.cell_centers()
    centres = frame.bev.cell_centres()
    np.testing.assert_array_equal(centres[..., 0], x.T)
    np.testing.assert_array_equal(centres[..., 1], y.T)
