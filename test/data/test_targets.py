"""Training targets from panoptic labels: boxes, classes, masks, semantic with ignore."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_perception.data.panoptic_io import Segment, segments_from_map
from panoptic_perception.data.targets import segment_geometry, targets_from_panoptic
from panoptic_perception.errors import InputError
from panoptic_perception.labels import load_label_space

SPACE = load_label_space("cityscapes")
ROAD, SKY, PERSON, CAR = 0, 10, 11, 13


def _scene():
    pan = np.full((20, 30), 1, np.int32)  # sky
    pan[10:] = 2  # road
    pan[8:14, 3:9] = 100  # car, 36 px
    pan[5:15, 20:23] = 101  # person, 30 px
    pan[12, 27] = 102  # car, 1 px
    pan[15:18, 10:16] = 103  # car crowd
    pan[0, :] = 0  # VOID
    segs = segments_from_map(pan, {1: SKY, 2: ROAD, 100: CAR, 101: PERSON, 102: CAR, 103: CAR}, crowd=[103])
    return pan, segs


def test_targets_boxes_classes_masks_semantic():
    pan, segs = _scene()
    t = targets_from_panoptic(pan, segs, SPACE)
    assert t["boxes"].dtype == np.float32 and t["classes"].dtype == np.int64
    assert t["masks"].dtype == np.uint8 and t["semantic"].dtype == np.int64
    assert t["classes"].tolist() == [CAR, PERSON, CAR]  # crowd 103 and stuff excluded
    np.testing.assert_array_equal(t["boxes"], [[3, 8, 9, 14], [20, 5, 23, 15], [27, 12, 28, 13]])
    for mask, seg_id in zip(t["masks"], (100, 101, 102)):
        np.testing.assert_array_equal(mask, (pan == seg_id).astype(np.uint8))
    sem = t["semantic"]
    assert (sem[0] == 255).all()  # VOID
    assert (sem[pan == 103] == 255).all()  # crowd
    assert (
        (sem[pan == 2] == ROAD).all() and (sem[pan == 100] == CAR).all() and (sem[pan == 101] == PERSON).all()
    )


def test_min_area_drops_small_instances_but_keeps_their_semantics():
    pan, segs = _scene()
    t = targets_from_panoptic(pan, segs, SPACE, min_area_px=31)
    assert t["classes"].tolist() == [CAR]
    assert t["masks"].shape == (1, 20, 30) and t["boxes"].shape == (1, 4)
    assert t["semantic"][12, 27] == CAR


def test_no_instances_gives_empty_arrays_with_right_shapes():
    pan = np.full((6, 7), 1, np.int32)
    t = targets_from_panoptic(pan, [Segment(1, ROAD, 42, (0, 0, 7, 6))], SPACE)
    assert t["boxes"].shape == (0, 4) and t["classes"].shape == (0,) and t["masks"].shape == (0, 6, 7)
    assert (t["semantic"] == ROAD).all()


def test_segment_geometry_matches_per_segment_measurement():
    rng = np.random.default_rng(0)
    pan = rng.integers(0, 6, (25, 40)).astype(np.int32) * 7
    ids = [7, 14, 21, 28, 35, 99]
    area, boxes = segment_geometry(pan, ids)
    ref = {s.id: s for s in segments_from_map(pan, {i: 0 for i in ids[:-1]})}
    for i, seg_id in enumerate(ids[:-1]):
        assert area[i] == ref[seg_id].area_px and tuple(boxes[i].tolist()) == ref[seg_id].bbox_xywh
    assert area[-1] == 0 and boxes[-1].tolist() == [0, 0, 0, 0]


def test_bad_categories_are_named():
    pan = np.ones((3, 3), np.int32)
    with pytest.raises(InputError, match="segment 1 has category 40"):
        targets_from_panoptic(pan, [Segment(1, 40, 9, (0, 0, 3, 3))], SPACE)
    with pytest.raises(InputError, match=r"\[H, W\]"):
        targets_from_panoptic(np.ones((3, 3, 1), np.int32), [], SPACE)
