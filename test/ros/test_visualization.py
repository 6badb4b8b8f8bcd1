"""ros/visualization.py: overlay picture and rviz markers."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("visualization_msgs", reason="ROS Python packages not installed (run `make setup`)")

import genpy  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from panoptic_perception.data.panoptic_io import Segment  # noqa: E402
from panoptic_perception.errors import InputError  # noqa: E402
from panoptic_perception.geometry.objects import Footprint, GroundObject  # noqa: E402
from panoptic_perception.labels import load_label_space  # noqa: E402
from panoptic_perception.ros import visualization as vis  # noqa: E402

CITY = load_label_space("cityscapes")
STAMP = genpy.Time(100, 5)
ROAD, CAR, PERSON = 0, 13, 11


def _scene():
    """A grey image with road below, a car and a person; sky region left void."""
    h, w = 60, 80
    rgb = np.full((h, w, 3), 100, np.uint8)
    cat = np.full((h, w), 255, np.uint8)
    seg = np.zeros((h, w), np.int32)
    cat[30:, :] = ROAD
    seg[30:, :] = 1
    cat[20:40, 10:30] = CAR
    seg[20:40, 10:30] = 7
    cat[15:45, 50:60] = PERSON
    seg[15:45, 50:60] = 9
    segments = [Segment(id=1, category_id=ROAD, area_px=int((seg == 1).sum())),
                Segment(id=7, category_id=CAR, score=0.93, bbox_xywh=(10, 20, 20, 20)),
                Segment(id=9, category_id=PERSON, score=0.61, bbox_xywh=(50, 15, 10, 30))]
    return rgb, cat, seg, segments


def test_overlay_blends_class_colours_and_leaves_void_alone():
    rgb, cat, seg, segments = _scene()
    out = vis.draw_overlay(rgb, cat, None, segments, CITY, alpha=0.5)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:10], rgb[:10])  # void rows unchanged
    road = np.array(CITY.categories[ROAD].color, float)
    expected = np.round(0.5 * 100 + 0.5 * road)
    assert np.abs(out[55, 40].astype(float) - expected).max() <= 1
    car = np.array(CITY.categories[CAR].color, float)
    assert np.abs(out[30, 20].astype(float) - np.round(0.5 * 100 + 0.5 * car)).max() <= 1
    assert not np.shares_memory(out, rgb)
    # alpha 0 is the camera image, alpha 1 the colour map.
    np.testing.assert_array_equal(vis.draw_overlay(rgb, cat, None, [], CITY, alpha=0.0), rgb)
    full = vis.draw_overlay(rgb, cat, None, [], CITY, alpha=1.0)
    np.testing.assert_array_equal(full[55, 40], CITY.categories[ROAD].color)


def test_outlines_only_around_things():
    _, _, seg, _ = _scene()
    edges = vis.segment_outlines(seg, [7, 9])
    assert edges[20, 15] and edges[39, 15] and edges[25, 10] and edges[25, 29]  # car border
    assert not edges[30, 20]  # car interior
    assert edges[15, 55]  # person border
    assert not edges[30, 0] and not edges[30, 40]  # the road/void border is stuff: no outline
    assert not vis.segment_outlines(seg, []).any()


def test_overlay_draws_white_outlines_and_labels_for_things_only():
    rgb, cat, seg, segments = _scene()
    plain = vis.draw_overlay(rgb, cat, seg, segments, CITY, draw_labels=False)
    np.testing.assert_array_equal(plain[39, 15], (255, 255, 255))
    assert tuple(plain[30, 20]) != (255, 255, 255)
    labelled = vis.draw_overlay(rgb, cat, seg, segments, CITY, draw_labels=True)
    changed = np.any(labelled != plain, axis=2)
    assert changed.any(), "labels drew nothing"
    ys, xs = np.nonzero(changed)
    # Labels sit at the things' boxes, not on the road-only lower band.
    assert ys.max() < 45
    assert xs.min() >= 10


def test_overlay_rejects_mismatched_inputs():
    rgb, cat, seg, segments = _scene()
    with pytest.raises(InputError, match="category map"):
        vis.draw_overlay(rgb, cat[:10], seg, segments, CITY)
    with pytest.raises(InputError, match="segment map"):
        vis.draw_overlay(rgb, cat, seg[:, :5], segments, CITY)
    with pytest.raises(InputError, match="alpha"):
        vis.draw_overlay(rgb, cat, seg, segments, CITY, alpha=1.5)


def test_footprint_corners_follow_yaw():
    corners = vis.footprint_corners(10.0, 2.0, math.pi / 2, 4.0, 2.0)
    # Yawed 90 degrees: the 4 m length runs along +y.
    np.testing.assert_allclose(corners.max(axis=0) - corners.min(axis=0), [2.0, 4.0], atol=1e-9)
    np.testing.assert_allclose(corners.mean(axis=0), [10.0, 2.0], atol=1e-9)
    np.testing.assert_allclose(corners[0], [9.0, 4.0], atol=1e-9)  # front-left is ahead along +y


def test_markers_start_with_deleteall_and_use_segment_ids():
    objects = [GroundObject(segment_id=7, category=CAR, class_name="car", score=0.9,
                            footprint=Footprint(x_m=12.0, y_m=-1.0, length_m=4.0, width_m=1.8, heading_rad=0.0),
                            range_m=12.0, covariance_xy=(0.1, 0.0, 0.0, 0.1), contact_columns=5,
                            contact_visible=True, truncated=False),
               GroundObject(segment_id=9, category=PERSON, class_name="person", score=0.6,
                            footprint=Footprint(x_m=8.0, y_m=3.0, length_m=0.6, width_m=0.6, heading_rad=0.0),
                            range_m=8.5, covariance_xy=(0.1, 0.0, 0.0, 0.1), contact_columns=5,
                            contact_visible=True, truncated=False)]
    header = Header(stamp=STAMP, frame_id="camera_color_left")
    array = vis.objects_to_markers(objects, header, "base_link", CITY)
    first = array.markers[0]
    assert first.action == Marker.DELETEALL
    assert vis.marker_ids_by_namespace(array) == {vis.FOOTPRINT_NS: [7, 9], vis.LABEL_NS: [7, 9]}
    for m in array.markers:
        assert m.header.stamp == STAMP and m.header.frame_id == "base_link"
    strip = next(m for m in array.markers if m.ns == vis.FOOTPRINT_NS and m.id == 7)
    assert strip.type == Marker.LINE_STRIP and len(strip.points) == 5
    assert (strip.points[0].x, strip.points[0].y) == (strip.points[-1].x, strip.points[-1].y)  # closed
    xs = [p.x for p in strip.points]
    assert min(xs) == pytest.approx(10.0) and max(xs) == pytest.approx(14.0)
    car_colour = np.array(CITY.categories[CAR].color) / 255.0
    np.testing.assert_allclose([strip.color.r, strip.color.g, strip.color.b], car_colour, atol=1e-6)
    label = next(m for m in array.markers if m.ns == vis.LABEL_NS and m.id == 9)
    assert label.type == Marker.TEXT_VIEW_FACING and label.text.startswith("person 0.60")
    assert label.scale.z > 0 and label.pose.orientation.w == 1.0
    # A size-less object still gets a visible (non-degenerate) footprint.
    person = next(m for m in array.markers if m.ns == vis.FOOTPRINT_NS and m.id == 9)
    assert max(p.x for p in person.points) > min(p.x for p in person.points)


def test_no_objects_still_clears_stale_markers():
    array = vis.objects_to_markers([], Header(stamp=STAMP, frame_id="cam"), "base_link", CITY)
    assert [m.action for m in array.markers] == [Marker.DELETEALL]
    assert array.markers[0].header.stamp == STAMP
