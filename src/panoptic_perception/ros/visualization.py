"""Pictures for people: the overlay image and rviz markers. Drawing only, no perception logic.

`draw_overlay` blends class colours into the camera image, outlines every thing segment and
writes "class score" labels; it works on whole arrays (a colour lookup table, shifted
comparisons for outlines), so a KITTI-sized frame takes a few milliseconds.

`objects_to_markers` turns ground objects into a MarkerArray: a closed LINE_STRIP footprint and a
TEXT_VIEW_FACING label per object. Marker ids are the segment ids (stable for as long as the
pipeline keeps a segment's id), and every array starts with a DELETEALL so markers of objects
that disappeared vanish in the same rviz update instead of lingering.

`tracks_to_markers` draws tracks the same way, keyed by track id, with "#id class speed" labels and
a velocity arrow for moving ones (what a second from now looks like).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from panoptic_perception.data.panoptic_io import Segment
from panoptic_perception.errors import InputError
from panoptic_perception.geometry.objects import GroundObject
from panoptic_perception.ros.conversions import copy_header, to_numpy
from panoptic_perception.tracking.tracker import CONFIRMED, TENTATIVE, Track

FOOTPRINT_NS = "footprints"
LABEL_NS = "labels"
TRACK_NS, TRACK_LABEL_NS, VELOCITY_NS = "tracks", "track_labels", "velocities"
_OUTLINE_RGB = (255, 255, 255)


def color_lut(label_space: Any) -> np.ndarray:
    """(256, 3) uint8 colour per class id; ids outside the label space (void 255) are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    colors = label_space.colors()
    lut[: len(colors)] = colors
    return lut


def _thing_mask(segment_map: np.ndarray, thing_ids: Sequence[int]) -> np.ndarray:
    if not len(thing_ids):
        return np.zeros(segment_map.shape, dtype=bool)
    return np.isin(segment_map, np.asarray(thing_ids, dtype=segment_map.dtype))


def _boundaries(segment_map: np.ndarray) -> np.ndarray:
    """Bool mask of pixels whose 4-neighbourhood holds another segment id."""
    seg = np.asarray(segment_map)
    edge = np.zeros(seg.shape, dtype=bool)
    horizontal = seg[:, 1:] != seg[:, :-1]
    vertical = seg[1:, :] != seg[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    return edge


def segment_outlines(segment_map: np.ndarray, thing_ids: Sequence[int]) -> np.ndarray:
    """Bool mask of the pixels of thing segments that touch a different segment (4-neighbourhood)."""
    return _boundaries(segment_map) & _thing_mask(np.asarray(segment_map), thing_ids)


def draw_overlay(rgb: np.ndarray, category_map: np.ndarray, segment_map: Optional[np.ndarray],
                 segments: Sequence[Any], label_space: Any, alpha: float = 0.5,
                 draw_labels: bool = True, lut: Optional[np.ndarray] = None) -> np.ndarray:
    """Camera image with class colours blended in (void pixels untouched), white outlines around
    thing segments and "name score" labels at their boxes. Returns a new (H, W, 3) uint8 RGB array.

    `segments`: the frame's segment table (data.panoptic_io.Segment); only things get labels.
    Thing pixels are found through the category map (a per-class lookup, much cheaper than
    matching segment ids), so the two maps must agree, as the pipeline's outputs do.
    """
    import cv2

    rgb = to_numpy(rgb)
    category_map = to_numpy(category_map)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"overlay needs an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    if category_map.shape != rgb.shape[:2] or category_map.dtype != np.uint8:
        raise InputError(f"category map {category_map.shape} {category_map.dtype} does not match image "
                         f"{rgb.shape[:2]} (uint8 expected)")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"overlay alpha must be within [0, 1], got {alpha}")
    rgb = np.ascontiguousarray(rgb)
    category_map = np.ascontiguousarray(category_map)
    lut = color_lut(label_space) if lut is None else lut
    # cv2.LUT is several times faster than numpy fancy indexing on a full frame.
    colours = cv2.LUT(cv2.merge([category_map] * 3), lut.reshape(256, 1, 3))
    blended = cv2.addWeighted(rgb, 1.0 - alpha, colours, alpha, 0.0)
    void = category_map >= label_space.num_classes
    cv2.copyTo(rgb, void.view(np.uint8), blended)
    if segment_map is None:
        return blended
    segment_map = to_numpy(segment_map)
    if segment_map.shape != rgb.shape[:2]:
        raise InputError(f"segment map {segment_map.shape} does not match image {rgb.shape[:2]}")
    categories = label_space.categories
    thing_lut = np.zeros((256, 1), dtype=np.uint8)
    thing_lut[label_space.thing_ids] = 1
    outline = _boundaries(segment_map) & cv2.LUT(category_map, thing_lut).view(bool)
    cv2.bitwise_or(blended, np.full_like(blended, 255), dst=blended, mask=outline.view(np.uint8))
    if draw_labels:
        def is_thing(seg: Segment) -> bool:
            if seg.is_thing is not None:
                return seg.is_thing
            return 0 <= seg.category_id < len(categories) and categories[seg.category_id].is_thing

        _draw_labels(blended, [s for s in segments if is_thing(s)], categories)
    return blended


def _category_name(categories: Sequence[Any], category_id: int) -> str:
    return categories[category_id].name if 0 <= category_id < len(categories) else "?"


def _draw_labels(image: np.ndarray, things: Sequence[Segment], categories: Sequence[Any]) -> None:
    import cv2

    height, width = image.shape[:2]
    # Text scaled with the image so labels stay legible on both 640x192 and 1242x375 frames.
    scale = max(0.35, min(1.0, height / 600.0))
    thickness = 1
    for rec in sorted(things, key=lambda r: r.score):  # best on top
        name = rec.category_name or _category_name(categories, rec.category_id)
        text = f"{name} {rec.score:.2f}" + (f" #{rec.track_id}" if rec.track_id else "")
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x, y = int(rec.bbox_xywh[0]), int(rec.bbox_xywh[1])
        x = min(max(x, 0), max(width - tw - 2, 0))
        y = max(y, th + baseline + 2)
        y = min(y, height - 1)
        cv2.rectangle(image, (x, y - th - baseline - 2), (x + tw + 2, y), (0, 0, 0), thickness=-1)
        cv2.putText(image, text, (x + 1, y - baseline - 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)


def footprint_corners(x_m: float, y_m: float, yaw_rad: float, length_m: float, width_m: float) -> np.ndarray:
    """(4, 2) ground corners of a yawed rectangle, counter-clockwise from front-left."""
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    half = np.array([[length_m, width_m], [-length_m, width_m],
                     [-length_m, -width_m], [length_m, -width_m]]) / 2
    rot = np.array([[c, -s], [s, c]])
    return half @ rot.T + np.array([x_m, y_m])


def objects_to_markers(objects: Sequence[GroundObject], header: Header, vehicle_frame: str, label_space: Any,
                       line_width_m: float = 0.1, text_height_m: float = 0.8,
                       lifetime_s: float = 0.0) -> MarkerArray:
    """Footprint LINE_STRIPs plus TEXT labels for ground objects, preceded by a DELETEALL.

    Stamped with the input image's stamp in the vehicle frame; marker id = segment id in both
    namespaces. `lifetime_s` > 0 also lets rviz expire markers when the node stops publishing.
    """
    import genpy

    marker_header = copy_header(header, frame_id=vehicle_frame)
    lut = color_lut(label_space).astype(np.float32) / 255.0
    categories = label_space.categories
    lifetime = genpy.Duration.from_sec(lifetime_s)
    markers = [Marker(header=marker_header, action=Marker.DELETEALL)]
    for obj in objects:
        marker_id = int(obj.segment_id) & 0x7FFFFFFF  # Marker.id is int32
        r, g, b = (float(v) for v in lut[obj.category & 0xFF])
        colour = ColorRGBA(r=r, g=g, b=b, a=1.0)
        footprint = obj.footprint
        # Objects without a size estimate still get a visible footprint.
        corners = footprint_corners(footprint.x_m, footprint.y_m, footprint.heading_rad,
                                    max(footprint.length_m, 0.1), max(footprint.width_m, 0.1))
        name = obj.class_name or _category_name(categories, obj.category)
        rng = math.hypot(obj.x_m, obj.y_m)
        markers.append(_footprint_strip(marker_header, FOOTPRINT_NS, marker_id, colour, lifetime, corners,
                                        line_width_m))
        markers.append(_label(marker_header, LABEL_NS, marker_id, lifetime, f"{name} {obj.score:.2f}\n{rng:.1f} m",
                              obj.x_m, obj.y_m, text_height_m))
    return MarkerArray(markers=markers)


def _footprint_strip(header: Header, ns: str, marker_id: int, colour: ColorRGBA, lifetime: Any,
                     corners: np.ndarray, line_width_m: float) -> Marker:
    strip = Marker(header=header, ns=ns, id=marker_id, type=Marker.LINE_STRIP, action=Marker.ADD, color=colour,
                   lifetime=lifetime, frame_locked=False)
    strip.pose.orientation.w = 1.0
    strip.scale.x = line_width_m
    strip.points = [Point(x=float(cx), y=float(cy), z=0.05) for cx, cy in (*corners, corners[0])]
    return strip


def _label(header: Header, ns: str, marker_id: int, lifetime: Any, text: str, x_m: float, y_m: float,
           text_height_m: float) -> Marker:
    label = Marker(header=header, ns=ns, id=marker_id, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                   color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0), lifetime=lifetime, text=text)
    label.pose.position.x, label.pose.position.y, label.pose.position.z = x_m, y_m, 1.5
    label.pose.orientation.w = 1.0
    label.scale.z = text_height_m
    return label


def tracks_to_markers(tracks: Sequence[Track], header: Header, frame_id: str, label_space: Any,
                      line_width_m: float = 0.1, text_height_m: float = 0.8, arrow_horizon_s: float = 1.0,
                      lifetime_s: float = 0.0) -> MarkerArray:
    """Confirmed and lost tracks as footprints, "#id class speed" labels and velocity arrows (the
    distance covered in `arrow_horizon_s`, moving tracks only), preceded by a DELETEALL. Marker id =
    track id, so rviz shows the same object under the same id frame after frame; lost (coasting)
    tracks are drawn faded."""
    import genpy

    marker_header = copy_header(header, frame_id=frame_id)
    lut = color_lut(label_space).astype(np.float32) / 255.0
    lifetime = genpy.Duration.from_sec(lifetime_s)
    markers = [Marker(header=marker_header, action=Marker.DELETEALL)]
    for track in tracks:
        if track.status == TENTATIVE:
            continue
        marker_id = int(track.track_id) & 0x7FFFFFFF
        r, g, b = (float(v) for v in lut[track.category & 0xFF])
        colour = ColorRGBA(r=r, g=g, b=b, a=1.0 if track.status == CONFIRMED else 0.4)
        corners = footprint_corners(track.x_m, track.y_m, track.heading_rad, max(track.length_m, 0.1),
                                    max(track.width_m, 0.1))
        markers.append(_footprint_strip(marker_header, TRACK_NS, marker_id, colour, lifetime, corners, line_width_m))
        markers.append(_label(marker_header, TRACK_LABEL_NS, marker_id, lifetime,
                              f"#{track.track_id} {track.class_name}\n{track.speed_mps:.1f} m/s", track.x_m, track.y_m,
                              text_height_m))
        if track.is_moving:
            arrow = Marker(header=marker_header, ns=VELOCITY_NS, id=marker_id, type=Marker.ARROW,
                           action=Marker.ADD, color=colour, lifetime=lifetime)
            arrow.pose.orientation.w = 1.0
            arrow.scale.x, arrow.scale.y, arrow.scale.z = line_width_m * 2, line_width_m * 4, line_width_m * 4
            arrow.points = [Point(x=track.x_m, y=track.y_m, z=0.5),
                            Point(x=track.x_m + track.vx_mps * arrow_horizon_s,
                                  y=track.y_m + track.vy_mps * arrow_horizon_s, z=0.5)]
            markers.append(arrow)
    return MarkerArray(markers=markers)


def marker_ids_by_namespace(array: MarkerArray) -> Dict[str, list]:
    """{namespace: [ids]} of the ADD markers in an array (for tests and diagnostics)."""
    out: Dict[str, list] = {}
    for m in array.markers:
        if m.action == Marker.ADD:
            out.setdefault(m.ns, []).append(m.id)
    return out


def grid_to_rgb(occupancy: np.ndarray, class_grid: Optional[np.ndarray] = None,
                label_space: Any = None) -> np.ndarray:
    """Occupancy grid as a picture seen from above: vehicle +x up, +y left, camera at the bottom.

    Unknown cells grey, free white, occupied black; with a class grid, known cells take their
    class colour instead (occupied ones darkened so obstacles stand out).
    """
    occ = to_numpy(occupancy)
    image = np.full(occ.shape + (3,), 128, dtype=np.uint8)
    image[occ == 0] = 255
    image[occ == 100] = 0
    if class_grid is not None and label_space is not None:
        classes = to_numpy(class_grid)
        lut = color_lut(label_space)
        known = (classes < label_space.num_classes) & (occ >= 0)
        colours = lut[classes]
        colours[occ == 100] //= 2
        image[known] = colours[known]
    # rows run along +y and columns along +x: turn so that +x is up and +y is left
    return np.ascontiguousarray(image[::-1, ::-1].transpose(1, 0, 2))
