"""ROS messages <-> numpy arrays, nothing else.

Inputs: `sensor_msgs/Image` (rgb8, bgr8, rgba8, bgra8, mono8 and 8UC1/8UC3/8UC4 read as OpenCV
does, converted directly; every other encoding cv_bridge turns into rgb8 - Bayer, yuv422, 16-bit -
through cv_bridge) and `sensor_msgs/CompressedImage` become an RGB uint8 (H, W, 3) array;
`sensor_msgs/CameraInfo` becomes `geometry.camera.Intrinsics`. A message that cannot be used
raises InputError naming what is wrong, so the node can log it (throttled) and skip the frame.

Outputs are built from numpy arrays and the core's records: `data.panoptic_io.Segment` (the one
segment record), `geometry.objects.GroundObject`, `geometry.grid.GridGeometry`.

Stamps and frames (docs/ARCHITECTURE.md): image-like outputs copy the input image's header (stamp AND
frame_id); grid and objects take the input stamp with the vehicle frame. Nothing here reads the
clock.

Class grid: published as `nav_msgs/OccupancyGrid` (it carries the grid geometry, so a consumer
needs nothing else, and rviz's Map display draws it). Its int8 cells hold the uint8 class ids
bit for bit: read them with `np.frombuffer(bytes(np.int8(msg.data)), np.uint8)` (or
`class_grid_msg_to_numpy`); 255 (= -1, rviz's "unknown") is unknown / void.
"""
from __future__ import annotations

import io
import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from geometry_msgs.msg import Point, Pose, Vector3
from nav_msgs.msg import MapMetaData, OccupancyGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from panoptic_perception.data.panoptic_io import Segment as PanopticSegment
from panoptic_perception.errors import InputError
from panoptic_perception.geometry.camera import Intrinsics
from panoptic_perception.geometry.grid import GridGeometry
from panoptic_perception.geometry.objects import GroundObject
from panoptic_perception.msg import (
    DetectedObject,
    DetectedObjects,
    PanopticSegmentation,
    Segment,
    TrackedObject,
    TrackedObjects,
)
from panoptic_perception.tracking.tracker import CONFIRMED, LOST, TENTATIVE, Track

# encoding -> (channels, cv2 conversion code name to RGB or None when already RGB)
_INPUT_ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, "COLOR_BGR2RGB"),
    "rgba8": (4, "COLOR_RGBA2RGB"),
    "bgra8": (4, "COLOR_BGRA2RGB"),
    "mono8": (1, "COLOR_GRAY2RGB"),
    # Generic OpenCV types: cv_bridge treats 3 and 4 channels as BGR(A).
    "8UC1": (1, "COLOR_GRAY2RGB"),
    "8UC3": (3, "COLOR_BGR2RGB"),
    "8UC4": (4, "COLOR_BGRA2RGB"),
}
SUPPORTED_ENCODINGS: Tuple[str, ...] = tuple(_INPUT_ENCODINGS)


def to_numpy(array: Any) -> np.ndarray:
    """numpy view of an array or a (CPU or CUDA) torch tensor."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


# ----------------------------------------------------------------------------- headers


def copy_header(header: Header, frame_id: Optional[str] = None) -> Header:
    """A new Header with the input's stamp (and frame_id unless one is given)."""
    return Header(seq=header.seq, stamp=header.stamp,
                  frame_id=header.frame_id if frame_id is None else frame_id)


# ----------------------------------------------------------------------------- inputs


def _as_bytes(data: Any) -> Any:
    # rospy delivers uint8[] as bytes; messages built by hand may hold lists.
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    return np.asarray(data, dtype=np.uint8).tobytes()


def _describe(msg: Any) -> str:
    header = getattr(msg, "header", None)
    if header is None:
        return "image"
    return f"image (frame '{header.frame_id}', stamp {header.stamp.secs}.{header.stamp.nsecs:09d})"


def check_image_size(msg: Any, width: int, height: int, max_size: Optional[Tuple[int, int]]) -> None:
    """InputError when width x height exceeds max_size (width, height): one huge frame would
    otherwise allocate gigabytes that the allocator keeps for the rest of the process's life."""
    if max_size is not None and (width > max_size[0] or height > max_size[1]):
        raise InputError(f"{_describe(msg)}: {width}x{height} is larger than the {max_size[0]}x{max_size[1]} "
                         f"limit (~max_image_width, ~max_image_height); refused")


def image_to_rgb(msg: Image, copy: bool = False, max_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB.

    For rgb8 without row padding the result is a read-only view of the message's buffer unless
    `copy` is set; every other encoding is converted into a new array. Images larger than
    `max_size` (width, height) are refused before anything is allocated for them.
    """
    encoding = msg.encoding
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_image_size(msg, width, height, max_size)
    data = _as_bytes(msg.data)
    if height == 0 or width == 0 or len(data) == 0:
        raise InputError(f"{_describe(msg)}: empty image ({width}x{height}, {len(data)} bytes)")
    if encoding not in _INPUT_ENCODINGS:
        return _bridge_to_rgb(msg, data, height, width, step)
    channels, code = _INPUT_ENCODINGS[encoding]
    row_bytes = width * channels
    if step < row_bytes:
        raise InputError(f"{_describe(msg)}: step {step} is smaller than width {width} x {channels} "
                         f"channels = {row_bytes} bytes")
    if len(data) != step * height:
        raise InputError(f"{_describe(msg)}: data has {len(data)} bytes, expected step {step} x height "
                         f"{height} = {step * height}")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, step)
    pixels = rows[:, :row_bytes].reshape(height, width, channels)
    if code is None:
        return pixels.copy() if copy or not pixels.flags.c_contiguous else pixels
    import cv2

    src = pixels[:, :, 0] if channels == 1 else pixels
    return cv2.cvtColor(np.ascontiguousarray(src), getattr(cv2, code))


def _bridge_to_rgb(msg: Image, data: Any, height: int, width: int, step: int) -> np.ndarray:
    """Every other encoding cv_bridge can turn into rgb8 (Bayer patterns, yuv422, 16-bit colour and
    mono, ...). The common 8-bit encodings above stay on the direct path: 0.1 ms for a 1242x375 bgr8
    frame against cv_bridge's 1.2 ms, and no copy at all for rgb8."""
    from cv_bridge import CvBridge, CvBridgeError

    bridge = CvBridge()
    try:
        dtype, channels = bridge.encoding_to_dtype_with_channels(msg.encoding)
    except (CvBridgeError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(f"{_describe(msg)}: unsupported encoding '{msg.encoding}' (neither one of "
                         f"{', '.join(SUPPORTED_ENCODINGS)} nor one cv_bridge knows)") from exc
    row_bytes = width * channels * np.dtype(dtype).itemsize
    if step < row_bytes or len(data) != step * height:
        raise InputError(f"{_describe(msg)}: '{msg.encoding}' {width}x{height} needs step >= {row_bytes} and "
                         f"step x height bytes; got step {step} and {len(data)} bytes")
    try:
        rgb = bridge.imgmsg_to_cv2(msg, "rgb8")
    except (CvBridgeError, TypeError, ValueError) as exc:
        raise InputError(f"{_describe(msg)}: cv_bridge cannot turn '{msg.encoding}' into rgb8: {exc}") from exc
    return np.ascontiguousarray(rgb)


def _compressed_size(data: Any) -> Optional[Tuple[int, int]]:
    """(width, height) from a JPEG / PNG header without decoding the pixels; None if unknown."""

    try:
        from PIL import Image as PilImage

        with PilImage.open(io.BytesIO(bytes(data))) as header:
            return header.size
    except Exception:  # noqa: BLE001 - unreadable headers are reported by the decoder itself
        return None


def compressed_to_rgb(msg: CompressedImage, max_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg / png, as image_transport's compressed plugin writes) -> RGB.

    Images larger than `max_size` (width, height) are refused from their header, before decoding."""
    import cv2

    data = _as_bytes(msg.data)
    if len(data) == 0:
        raise InputError(f"{_describe(msg)}: empty compressed image (format '{msg.format}')")
    if "compressedDepth" in msg.format:
        raise InputError(f"{_describe(msg)}: compressedDepth images are not camera images")
    if max_size is not None:
        size = _compressed_size(data)
        if size is not None:
            check_image_size(msg, size[0], size[1], max_size)
    # The compressed plugin encodes colour as BGR whatever the original encoding, so imdecode's
    # BGR result is right in every case.
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise InputError(f"{_describe(msg)}: cannot decode {len(data)} bytes of format '{msg.format}'")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_message_to_rgb(msg: Any, max_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Image or CompressedImage -> RGB (H, W, 3) uint8; larger than max_size (width, height): InputError."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        rgb = compressed_to_rgb(msg, max_size)
        check_image_size(msg, rgb.shape[1], rgb.shape[0], max_size)  # headers PIL could not read
        return rgb
    return image_to_rgb(msg, max_size=max_size)


def camera_info_to_intrinsics(info: CameraInfo) -> Intrinsics:
    """CameraInfo -> Intrinsics; InputError for an uncalibrated (all-zero K) or malformed one."""
    K = tuple(float(v) for v in info.K)
    if not any(K):
        raise InputError(f"CameraInfo (frame '{info.header.frame_id}') has an all-zero K: the camera "
                         f"is not calibrated")
    if int(info.binning_x) > 1 or int(info.binning_y) > 1:
        raise InputError(f"CameraInfo (frame '{info.header.frame_id}') uses binning "
                         f"{info.binning_x}x{info.binning_y}, which this node does not support")
    P = tuple(float(v) for v in info.P)
    return Intrinsics(
        width=int(info.width), height=int(info.height), K=K, D=tuple(float(v) for v in info.D),
        R=tuple(float(v) for v in info.R) if any(info.R) else Intrinsics.__dataclass_fields__["R"].default,
        P=P if any(P) else None, distortion_model=info.distortion_model or "plumb_bob",
    )


def check_image_matches_camera_info(rgb: np.ndarray, info: CameraInfo) -> None:
    """InputError when the image is not the size the CameraInfo describes."""
    height, width = rgb.shape[:2]
    if (width, height) != (int(info.width), int(info.height)):
        raise InputError(f"image is {width}x{height} but its CameraInfo (frame '{info.header.frame_id}') "
                         f"says {info.width}x{info.height}")


def intrinsics_to_camera_info(intrinsics: Intrinsics, header: Header) -> CameraInfo:
    """Intrinsics -> CameraInfo with the given header (used when writing bags)."""
    P = intrinsics.P
    if P is None:
        k = intrinsics.K
        P = (k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, k[6], k[7], k[8], 0.0)
    return CameraInfo(header=header, width=intrinsics.width, height=intrinsics.height,
                      distortion_model=intrinsics.distortion_model, D=list(intrinsics.D),
                      K=list(intrinsics.K), R=list(intrinsics.R), P=list(P))


# ----------------------------------------------------------------------------- outputs


def image_msg(array: np.ndarray, encoding: str, header: Header) -> Image:
    """A sensor_msgs/Image of a contiguous copy of `array` with this encoding and header."""
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                 step=array.strides[0], data=array.tobytes())


def rgb_to_image_msg(rgb: np.ndarray, header: Header) -> Image:
    """(H, W, 3) uint8 RGB -> rgb8 Image with the given header."""
    rgb = to_numpy(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"rgb8 output needs an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    return image_msg(rgb, "rgb8", header)


def category_map_to_mono8_msg(category_map: np.ndarray, header: Header) -> Image:
    """(H, W) uint8 class ids (255 void) -> mono8 Image."""
    category_map = to_numpy(category_map)
    if category_map.ndim != 2 or category_map.dtype != np.uint8:
        raise InputError(f"mono8 class map needs an (H, W) uint8 array, got {category_map.shape} "
                         f"{category_map.dtype}")
    return image_msg(category_map, "mono8", header)


def segment_map_to_image_msg(segment_map: np.ndarray, header: Header) -> Image:
    """(H, W) integer segment ids -> 32SC1 little-endian Image."""
    segment_map = to_numpy(segment_map)
    if segment_map.ndim != 2 or segment_map.dtype.kind not in "iu":
        raise InputError(f"panoptic image needs an (H, W) integer array, got {segment_map.shape} "
                         f"{segment_map.dtype}")
    if segment_map.dtype != np.dtype("<i4"):
        too_big = segment_map.size and int(segment_map.max()) > np.iinfo(np.int32).max
        if too_big or (segment_map.size and int(segment_map.min()) < 0):
            raise InputError("segment ids must be within 0..2^31-1 for a 32SC1 image")
        segment_map = segment_map.astype("<i4")
    return image_msg(segment_map, "32SC1", header)


def panoptic_to_msg(segment_map: np.ndarray, segments: Sequence[PanopticSegment], header: Header,
                    label_space: Any) -> PanopticSegmentation:
    """Segment-id map plus segment table -> PanopticSegmentation with the input image's header.

    `label_space` (labels.LabelSpace) names the ids and fills name / is_thing where a segment
    leaves them out.
    """
    categories = label_space.categories
    msg = PanopticSegmentation(header=header, label_space=label_space.name,
                               panoptic=segment_map_to_image_msg(segment_map, header))
    out: List[Segment] = []
    for seg in segments:
        if seg.id <= 0:
            raise InputError(f"segment id {seg.id} is invalid: ids are >= 1, 0 is void")
        if not 0 <= seg.category_id < len(categories):
            raise InputError(f"segment {seg.id}: category {seg.category_id} is not in label space "
                             f"{label_space.name} (0..{len(categories) - 1})")
        category = categories[seg.category_id]
        x, y, w, h = seg.bbox_xywh
        out.append(Segment(
            id=seg.id, category_id=seg.category_id, category_name=seg.category_name or category.name,
            is_thing=category.is_thing if seg.is_thing is None else seg.is_thing,
            score=seg.score, area=seg.area_px,
            bbox=RegionOfInterest(x_offset=max(x, 0), y_offset=max(y, 0), width=max(w, 0), height=max(h, 0)),
            track_id=seg.track_id,
        ))
    msg.segments = out
    return msg


def _grid_msg(cells: np.ndarray, geom: GridGeometry, header: Header, vehicle_frame: str) -> OccupancyGrid:
    if cells.shape != (geom.height, geom.width):
        raise InputError(f"grid array is {cells.shape} (rows, cols) but the geometry says "
                         f"{geom.height} rows x {geom.width} columns")
    grid_header = copy_header(header, frame_id=vehicle_frame)
    info = MapMetaData(map_load_time=header.stamp, resolution=geom.resolution_m, width=geom.width,
                       height=geom.height,
                       origin=Pose(position=Point(x=geom.origin_x_m, y=geom.origin_y_m, z=0.0)))
    info.origin.orientation.w = 1.0
    # genpy packs int8[] with struct from a sequence of Python ints: tolist() is its fast input.
    return OccupancyGrid(header=grid_header, info=info, data=cells.ravel().tolist())


def occupancy_to_msg(occupancy: np.ndarray, geometry: GridGeometry, header: Header,
                     vehicle_frame: str) -> OccupancyGrid:
    """int8 [height, width] (-1 unknown, 0 free, 100 occupied) -> OccupancyGrid in the vehicle frame,
    stamped with the input image's stamp."""
    occupancy = to_numpy(occupancy)
    if occupancy.ndim != 2 or occupancy.dtype.kind not in "iu":
        raise InputError(f"occupancy needs a 2-D integer array, got {occupancy.shape} {occupancy.dtype}")
    if occupancy.size and (int(occupancy.min()) < -1 or int(occupancy.max()) > 100):
        raise InputError(f"occupancy values must be -1 or 0..100, got {int(occupancy.min())}.."
                         f"{int(occupancy.max())}")
    return _grid_msg(occupancy.astype(np.int8, copy=False), geometry, header, vehicle_frame)


def class_grid_to_msg(class_grid: np.ndarray, geometry: GridGeometry, header: Header,
                      vehicle_frame: str) -> OccupancyGrid:
    """uint8 [height, width] class ids (255 unknown) -> OccupancyGrid whose int8 cells are the same bytes."""
    class_grid = to_numpy(class_grid)
    if class_grid.ndim != 2 or class_grid.dtype != np.uint8:
        raise InputError(f"class grid needs a 2-D uint8 array, got {class_grid.shape} {class_grid.dtype}")
    return _grid_msg(class_grid.view(np.int8), geometry, header, vehicle_frame)


def objects_to_msg(objects: Sequence[GroundObject], header: Header, vehicle_frame: str) -> DetectedObjects:
    """Ground objects -> DetectedObjects with the input stamp and the vehicle frame."""
    out = DetectedObjects(header=copy_header(header, frame_id=vehicle_frame))
    for obj in objects:
        footprint = obj.footprint
        out.objects.append(DetectedObject(
            segment_id=obj.segment_id, category_id=obj.category, category_name=obj.class_name, score=obj.score,
            position=Point(x=footprint.x_m, y=footprint.y_m, z=0.0), yaw_rad=footprint.heading_rad,
            length_m=footprint.length_m, width_m=footprint.width_m, position_sigma_m=obj.position_sigma_m,
        ))
    return out


_TRACK_STATUS = {TENTATIVE: TrackedObject.TENTATIVE, CONFIRMED: TrackedObject.CONFIRMED, LOST: TrackedObject.LOST}


def tracks_to_msg(tracks: Sequence[Track], header: Header, frame_id: str, ego_motion_known: bool) -> TrackedObjects:
    """Tracks -> TrackedObjects with the input stamp, in `frame_id` (odom, or the vehicle frame)."""
    out = TrackedObjects(header=copy_header(header, frame_id=frame_id), ego_motion_known=ego_motion_known)
    for track in tracks:
        if track.status not in _TRACK_STATUS:
            raise InputError(f"track {track.track_id}: unknown status {track.status!r}")
        out.tracks.append(TrackedObject(
            track_id=track.track_id, status=_TRACK_STATUS[track.status], segment_id=track.segment_id,
            category_id=track.category, category_name=track.class_name, score=track.score,
            position=Point(x=track.x_m, y=track.y_m, z=0.0),
            velocity=Vector3(x=track.vx_mps, y=track.vy_mps, z=0.0), speed_mps=track.speed_mps,
            speed_sigma_mps=track.speed_sigma_mps, is_moving=track.is_moving, heading_rad=track.heading_rad,
            front_known=track.front_known, length_m=track.length_m, width_m=track.width_m,
            covariance=list(track.covariance), age_frames=track.age_frames, hits=track.hits, misses=track.misses,
        ))
    return out


# ----------------------------------------------------------------------------- reading outputs back


def panoptic_msg_to_numpy(msg: PanopticSegmentation) -> Tuple[np.ndarray, List[PanopticSegment]]:
    """PanopticSegmentation -> (int32 segment map, segment table): what a consumer decodes."""
    image = msg.panoptic
    if image.encoding != "32SC1":
        raise InputError(f"panoptic image encoding must be 32SC1, got '{image.encoding}'")
    dtype = np.dtype(">i4" if image.is_bigendian else "<i4")
    data = _as_bytes(image.data)
    if len(data) != image.step * image.height or image.step < 4 * image.width:
        raise InputError(f"panoptic image: {len(data)} bytes do not match step {image.step} x {image.height}")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(image.height, image.step)[:, :4 * image.width]
    ids = np.ascontiguousarray(rows).view(dtype).reshape(image.height, image.width).astype(np.int32)
    segments = [PanopticSegment(id=s.id, category_id=s.category_id, score=s.score, area_px=s.area,
                                bbox_xywh=(s.bbox.x_offset, s.bbox.y_offset, s.bbox.width, s.bbox.height),
                                category_name=s.category_name, is_thing=s.is_thing, track_id=s.track_id)
                for s in msg.segments]
    return ids, segments


def occupancy_msg_to_numpy(msg: OccupancyGrid) -> Tuple[np.ndarray, GridGeometry]:
    """OccupancyGrid -> (int8 [height, width] cells, geometry)."""
    info = msg.info
    cells = np.asarray(msg.data, dtype=np.int8)
    if cells.size != info.width * info.height:
        raise InputError(f"OccupancyGrid has {cells.size} cells, expected {info.width} x {info.height}")
    geometry = GridGeometry(float(info.resolution), float(info.origin.position.x),
                            float(info.origin.position.y), int(info.width), int(info.height))
    return cells.reshape(info.height, info.width), geometry


def class_grid_msg_to_numpy(msg: OccupancyGrid) -> Tuple[np.ndarray, GridGeometry]:
    """Class-grid OccupancyGrid -> (uint8 class ids, 255 unknown, geometry)."""
    cells, geometry = occupancy_msg_to_numpy(msg)
    return cells.view(np.uint8), geometry


def quaternion_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """(x, y, z, w) of a 3x3 rotation matrix (Shepperd's method, numerically safe for all angles)."""
    m = np.asarray(rotation, dtype=np.float64)
    # KITTI prints its rotations with 7 digits, so they are only nearly orthonormal: use the
    # nearest rotation (polar decomposition) rather than let the error land in one component.
    u, _, vt = np.linalg.svd(m)
    m = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0.0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.array(q)
    return q / np.linalg.norm(q)


def transform_to_matrix(transform: Any) -> np.ndarray:
    """geometry_msgs/Transform -> 4x4 matrix."""
    q = transform.rotation
    x, y, z, w = q.x, q.y, q.z, q.w
    rot = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    matrix = np.eye(4)
    matrix[:3, :3] = rot
    matrix[:3, 3] = (transform.translation.x, transform.translation.y, transform.translation.z)
    return matrix
