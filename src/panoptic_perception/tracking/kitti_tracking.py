"""KITTI tracking label files: one text file per drive, one line per object and frame.

The format is the KITTI tracking devkit's (readme of devkit_tracking, label_02/*.txt), 17 values
per line for labels and 18 for results (the score):

    frame  track_id  type  truncated  occluded  alpha  left top right bottom  height width length
    x y z  rotation_y  [score]

- `type` is one of KITTI_TYPES; DontCare regions have track id -1 and no 3D box (-1 / -1000 / -10).
- `truncated` is an integer in the tracking format (0, 1, 2; the object benchmark's is a float);
  we write 0 for a box whose projection lies inside the image and 1 for one cut by the image
  border or the camera plane, as the raw devkit's tracklet states (0 in image, 1 truncated, 2 out
  of image). `occluded` is 0..3 (3 = unknown, which is what a tracker writes).
- `left top right bottom` is the 2D box in camera xx's rectified image (image_02 for label_02),
  0-based pixels, clipped to the image.
- `height width length` in metres; `x y z` is the *bottom centre* of the box in rectified
  camera-0 coordinates (x right, y down, z forward), and `rotation_y` the rotation about that
  frame's y axis in [-pi, pi). The devkit's computeBox3D builds the box from them: corners
  Ry(rotation_y) @ (+-l/2, 0 or -h, +-w/2) + (x, y, z), so the length axis points along
  (cos ry, 0, -sin ry) and the box rises from y to y - h.
- `alpha` is the observation angle, rotation_y - atan2(x, z) wrapped to [-pi, pi) (real labels
  agree with this within ~0.02 rad: they were computed from the annotation's own frames).

Our boxes live in the vehicle frame (REP 103: x forward, y left, z up, data/kitti.py); the drive's
calibration links the two: rect0 <- vehicle = R_rect_00 . velo_to_cam . velo <- vehicle, the
devkit's x_rect = R0_rect * Tr_velo_to_cam * x_velo. The vehicle box's heading (cos yaw, sin yaw, 0)
seen in the camera gives rotation_y = atan2(-d_z, d_x); with a camera level to the vehicle this is
rotation_y = -yaw - pi/2. The box's centre is its bottom centre raised by h/2 along the camera's
-y (its up), so a box reads back exactly; on a camera pitched by p against the vehicle the heading
read back differs by up to ~p^2 / 2 (1e-4 rad for KITTI's camera, ~0.85 degrees off the Velodyne).

Class names map to KITTI types by KITTI_TYPE_OF_CLASS (Cityscapes and COCO panoptic thing names).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from panoptic_perception.data.kitti import KittiCalibration
from panoptic_perception.errors import InputError
from panoptic_perception.text_files import parse_finite, read_text_file
from panoptic_perception.tracking.tracker import CONFIRMED, Track

KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
DONT_CARE = "DontCare"
MISC = "Misc"
# Class name -> KITTI type. KITTI's Cyclist is the person on the bike (its box takes in the bike):
# a Cityscapes rider is one, and the bicycle or motorcycle under it (a separate instance in
# Cityscapes) is Misc, as are parked ones. KITTI has no bus class (Misc) and calls rail vehicles
# Tram. Every other name (COCO's animals, unknown classes) is Misc.
KITTI_TYPE_OF_CLASS: Dict[str, str] = {
    "car": "Car",
    "truck": "Truck",
    "bus": MISC,
    "train": "Tram",
    "person": "Pedestrian",
    "rider": "Cyclist",
    "bicycle": MISC,
    "motorcycle": MISC,
}
# A camera footprint has no height, but KITTI boxes need one (for the 2D box; location is the bottom
# centre, so it does not move with the height): typical heights, KITTI's mean Car / Pedestrian /
# Cyclist heights (1.53, 1.76, 1.74 m) rounded, others from common vehicle specs.
TYPICAL_HEIGHT_M: Dict[str, float] = {
    "car": 1.5, "truck": 3.0, "bus": 3.2, "train": 3.8, "person": 1.75, "rider": 1.75, "bicycle": 1.1,
    "motorcycle": 1.2,
}
DEFAULT_HEIGHT_M = 1.5
NEAR_PLANE_M = 0.1  # box corners closer to the camera plane than this are cut off (the devkit skips them)
TRUNCATED_NONE, TRUNCATED_PARTLY = 0, 1
OCCLUDED_UNKNOWN = 3
_FIELDS = ("frame", "track id", "type", "truncated", "occluded", "alpha", "left", "top", "right", "bottom",
           "height", "width", "length", "x", "y", "z", "rotation_y", "score")


def kitti_type(class_name: str) -> str:
    """The KITTI type of a class name (Misc when it has none)."""
    return KITTI_TYPE_OF_CLASS.get(class_name, MISC)


def typical_height_m(class_name: str) -> float:
    return TYPICAL_HEIGHT_M.get(class_name, DEFAULT_HEIGHT_M)


def wrap_pi(angle_rad: float) -> float:
    """Angle in [-pi, pi)."""
    return (angle_rad + math.pi) % (2 * math.pi) - math.pi


@dataclass(frozen=True)
class TrackingLabel:
    """One line of a KITTI tracking file."""

    frame: int
    track_id: int  # -1 for DontCare
    type: str
    truncated: int  # 0, 1, 2 (-1 for DontCare)
    occluded: int  # 0, 1, 2, 3 = unknown (-1 for DontCare)
    alpha_rad: float
    bbox_ltrb_px: Tuple[float, float, float, float]
    dimensions_hwl_m: Tuple[float, float, float]  # height, width, length (KITTI's order)
    location_m: Tuple[float, float, float]  # bottom centre, rectified camera-0 frame
    rotation_y_rad: float
    score: Optional[float] = None  # results only

    def to_line(self) -> str:
        values = [str(self.frame), str(self.track_id), self.type, str(self.truncated), str(self.occluded),
                  f"{self.alpha_rad:.6f}"]
        values += [f"{v:.6f}" for v in (*self.bbox_ltrb_px, *self.dimensions_hwl_m, *self.location_m,
                                         self.rotation_y_rad)]
        if self.score is not None:
            values.append(f"{self.score:.6f}")
        return " ".join(values)


def _integer(token: str, name: str, where: str, allowed: Optional[Iterable[int]] = None) -> int:
    try:
        value = float(token)
    except ValueError:
        raise InputError(f"{where}: {name} is not a number: '{token}'") from None
    if not math.isfinite(value) or value != int(value):
        raise InputError(f"{where}: {name} must be an integer, got '{token}'")
    value = int(value)
    if allowed is not None and value not in allowed:
        raise InputError(f"{where}: {name} must be one of {sorted(allowed)}, got {value}")
    return value


def parse_label_line(text: str, where: str = "KITTI tracking line") -> TrackingLabel:
    """One line -> TrackingLabel; InputError naming `where` and the bad field otherwise."""
    tokens = text.split()
    if len(tokens) not in (17, 18):
        raise InputError(f"{where}: expected 17 values (labels) or 18 (results, with a score) in the KITTI "
                         f"tracking format, got {len(tokens)}")
    frame = _integer(tokens[0], "frame", where)
    if frame < 0:
        raise InputError(f"{where}: frame must be >= 0, got {frame}")
    kind = tokens[2]
    if kind not in KITTI_TYPES:
        raise InputError(f"{where}: type '{kind}' is not a KITTI type ({', '.join(KITTI_TYPES)})")
    track_id = _integer(tokens[1], "track id", where)
    dont_care = kind == DONT_CARE
    if track_id < (-1 if dont_care else 0):
        raise InputError(f"{where}: track id must be >= 0 (-1 only for DontCare), got {track_id}")
    truncated = _integer(tokens[3], "truncated", where, range(-1, 3))
    occluded = _integer(tokens[4], "occluded", where, range(-1, 4))
    numbers = [parse_finite(token, name, where) for name, token in zip(_FIELDS[5:], tokens[5:])]
    alpha, left, top, right, bottom, height, width, length, x, y, z, rotation_y = numbers[:12]
    if right < left or bottom < top:
        raise InputError(f"{where}: bbox ({left}, {top}, {right}, {bottom}) is not left top right bottom")
    if not dont_care and min(height, width, length) <= 0:
        raise InputError(f"{where}: a {kind} needs a 3D box with positive height, width, length; got "
                         f"{height} {width} {length}")
    return TrackingLabel(frame, track_id, kind, truncated, occluded, alpha, (left, top, right, bottom),
                         (height, width, length), (x, y, z), rotation_y, numbers[12] if len(numbers) > 12 else None)


def read_tracking_file(path: str | Path) -> List[TrackingLabel]:
    """Every line of a KITTI tracking file; InputError naming the file and line of a bad one, or a
    (frame, track id) given twice."""
    path = Path(path)
    text = read_text_file(path, "KITTI tracking file")
    labels: List[TrackingLabel] = []
    seen: Dict[Tuple[int, int], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label = parse_label_line(line, f"{path} line {number}")
        if label.track_id >= 0:
            key = (label.frame, label.track_id)
            if key in seen:
                raise InputError(f"{path} line {number}: track {label.track_id} is in frame {label.frame} "
                                 f"twice (first on line {seen[key]})")
            seen[key] = number
        labels.append(label)
    return labels


def write_tracking_file(path: str | Path, labels: Iterable[TrackingLabel]) -> None:
    """Lines in the given order (KITTI's files go by frame, then track id)."""
    Path(path).write_text("".join(label.to_line() + "\n" for label in labels))


# ---------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class VehicleBox:
    """A 3D box in the vehicle frame: centre (not the bottom), size, heading of the length axis."""

    center_m: Tuple[float, float, float]
    size_m: Tuple[float, float, float]  # length (along the heading), width, height
    yaw_rad: float


def _edges() -> List[Tuple[int, int]]:
    # corners k and k + 4 are the bottom and top of one vertical edge (the devkit's corner order)
    ring = [(0, 1), (1, 2), (2, 3), (3, 0)]
    return ring + [(a + 4, b + 4) for a, b in ring] + [(k, k + 4) for k in range(4)]


_EDGES = _edges()


def _r_rect_00(calibration: KittiCalibration) -> np.ndarray:
    value = calibration.cam_to_cam.get("R_rect_00")
    if not isinstance(value, np.ndarray) or value.size != 9:
        raise InputError(f"calibration {calibration.calib_dir}: R_rect_00 must be 9 numbers")
    return value.reshape(3, 3)


class KittiBoxConverter:
    """Vehicle-frame boxes <-> KITTI tracking labels for one drive's calibration and camera."""

    def __init__(self, calibration: KittiCalibration, camera: str = "02") -> None:
        self.calibration = calibration
        self.camera = camera
        # The devkit's x_rect = R0_rect * Tr_velo_to_cam * x_velo as it stands: KITTI prints R_rect_00 with 7
        # digits, so its transpose is not quite its inverse, and labels are made with R_rect_00 itself.
        rect0_from_cam0 = np.eye(4)
        rect0_from_cam0[:3, :3] = _r_rect_00(calibration)
        self.rect0_from_vehicle = rect0_from_cam0 @ calibration.velo_to_cam0() @ np.linalg.inv(
            calibration.vehicle_from_velo())
        self.vehicle_from_rect0 = np.linalg.inv(self.rect0_from_vehicle)
        self.projection = calibration.projection(camera)  # rectified camera 0 -> camera xx pixels
        intrinsics = calibration.intrinsics(camera)
        self.width_px, self.height_px = intrinsics.width, intrinsics.height

    # -- frames
    def to_rect0(self, points_vehicle: np.ndarray) -> np.ndarray:
        pts = np.asarray(points_vehicle, dtype=np.float64).reshape(-1, 3)
        return pts @ self.rect0_from_vehicle[:3, :3].T + self.rect0_from_vehicle[:3, 3]

    def to_vehicle(self, points_rect0: np.ndarray) -> np.ndarray:
        pts = np.asarray(points_rect0, dtype=np.float64).reshape(-1, 3)
        return pts @ self.vehicle_from_rect0[:3, :3].T + self.vehicle_from_rect0[:3, 3]

    def rotation_y(self, yaw_rad: float) -> float:
        """rotation_y of a box whose length axis has this yaw in the vehicle frame."""
        d = self.rect0_from_vehicle[:3, :3] @ np.array([math.cos(yaw_rad), math.sin(yaw_rad), 0.0])
        return wrap_pi(math.atan2(-d[2], d[0]))

    def yaw(self, rotation_y_rad: float) -> float:
        """Vehicle-frame yaw of a box's length axis given its rotation_y."""
        d = self.vehicle_from_rect0[:3, :3] @ np.array([math.cos(rotation_y_rad), 0.0, -math.sin(rotation_y_rad)])
        return wrap_pi(math.atan2(d[1], d[0]))

    # -- boxes
    def label(self, box: VehicleBox, frame: int, track_id: int, kind: str, score: Optional[float] = None,
              occluded: int = OCCLUDED_UNKNOWN) -> Optional[TrackingLabel]:
        """The box as a label, or None when no part of it projects into the image (behind the camera
        or beside the picture): KITTI describes what the camera sees."""
        length, width, height = (float(v) for v in box.size_m)
        center = self.to_rect0(np.array(box.center_m))[0]
        location = center + np.array([0.0, height / 2, 0.0])
        rotation_y = self.rotation_y(box.yaw_rad)
        projected = self.image_box(location, (height, width, length), rotation_y)
        if projected is None:
            return None
        bbox, truncated = projected
        alpha = wrap_pi(rotation_y - math.atan2(location[0], location[2]))
        return TrackingLabel(int(frame), int(track_id), kind, truncated, int(occluded), alpha, bbox,
                             (height, width, length), tuple(float(v) for v in location), rotation_y,
                             None if score is None else float(score))

    def box(self, label: TrackingLabel) -> VehicleBox:
        """The vehicle-frame box of a label (InputError for DontCare, which has none)."""
        if label.type == DONT_CARE:
            raise InputError(f"frame {label.frame}: a DontCare region has no 3D box")
        height, width, length = label.dimensions_hwl_m
        center = np.array(label.location_m) - np.array([0.0, height / 2, 0.0])
        x, y, z = self.to_vehicle(center)[0]
        return VehicleBox((float(x), float(y), float(z)), (length, width, height), self.yaw(label.rotation_y_rad))

    def corners_rect0(self, location_m: Sequence[float], dimensions_hwl_m: Sequence[float],
                      rotation_y_rad: float) -> np.ndarray:
        """(8, 3) corners as the devkit's computeBox3D builds them: bottom face, then top face."""
        height, width, length = dimensions_hwl_m
        c, s = math.cos(rotation_y_rad), math.sin(rotation_y_rad)
        rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
        x = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * length / 2
        y = np.array([0, 0, 0, 0, -1, -1, -1, -1]) * height
        z = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * width / 2
        return (rotation @ np.stack([x, y, z])).T + np.asarray(location_m, dtype=np.float64)

    def image_box(self, location_m: Sequence[float], dimensions_hwl_m: Sequence[float],
                  rotation_y: float) -> Optional[Tuple[Tuple[float, float, float, float], int]]:
        """(left, top, right, bottom) in camera xx's image, clipped to it, and the truncation (0 inside,
        1 cut by the border or the camera plane); None when the box is not in the picture."""
        corners = self.corners_rect0(location_m, dimensions_hwl_m, rotation_y)
        points = [p for p in corners if p[2] >= NEAR_PLANE_M]
        cut = len(points) < len(corners)
        for a, b in _EDGES:  # where an edge crosses the near plane
            za, zb = corners[a, 2] - NEAR_PLANE_M, corners[b, 2] - NEAR_PLANE_M
            if za * zb < 0:
                points.append(corners[a] + (corners[b] - corners[a]) * (za / (za - zb)))
        if not points:
            return None
        pts = np.array(points)
        pixels = np.c_[pts, np.ones(len(pts))] @ self.projection.T
        u, v = pixels[:, 0] / pixels[:, 2], pixels[:, 1] / pixels[:, 2]
        right_px, bottom_px = self.width_px - 1.0, self.height_px - 1.0
        left, top, right, bottom = u.min(), v.min(), u.max(), v.max()
        if right < 0 or bottom < 0 or left > right_px or top > bottom_px:
            return None
        inside = left >= 0 and top >= 0 and right <= right_px and bottom <= bottom_px
        bbox = (float(max(left, 0.0)), float(max(top, 0.0)), float(min(right, right_px)), float(min(bottom, bottom_px)))
        return bbox, TRUNCATED_NONE if inside and not cut else TRUNCATED_PARTLY


# ---------------------------------------------------------------------------- velocity side file
VELOCITY_FORMAT = "panoptic_perception track velocities v1"


@dataclass(frozen=True)
class TrackVelocities:
    """The side file `<drive>.velocity.json` next to `<drive>.txt`: what the KITTI format cannot hold.

    velocities_mps[(frame, track_id)] = (vx, vy) in the vehicle frame's axes at that frame (x forward,
    y left); over ground (over_ground True) when the tracker had ego poses, else relative to the ego.
    """

    drive: str
    num_frames: int  # frames the tracker ran over (0 .. num_frames - 1)
    over_ground: bool
    velocities_mps: Mapping[Tuple[int, int], Tuple[float, float]]
    class_names: Mapping[int, str]  # track id -> the tracker's class name (KITTI types merge some)

    def to_json(self) -> dict:
        return {
            "format": VELOCITY_FORMAT,
            "drive": self.drive,
            "num_frames": self.num_frames,
            "frame_id": "vehicle",
            "over_ground": self.over_ground,
            "note": "velocities [frame, track_id, vx_mps, vy_mps] of the tracks in <drive>.txt, in the vehicle "
                    "frame's axes (x forward, y left) at that frame; over ground when over_ground is true, "
                    "else relative to the moving ego",
            "class_names": {str(k): v for k, v in sorted(self.class_names.items())},
            "velocities": [[f, t, round(vx, 6), round(vy, 6)]
                           for (f, t), (vx, vy) in sorted(self.velocities_mps.items())],
        }


def velocity_file_path(tracks_path: str | Path) -> Path:
    """`<drive>.velocity.json` beside `<drive>.txt`."""
    path = Path(tracks_path)
    return path.with_name(path.stem + ".velocity.json")


def write_velocity_file(path: str | Path, velocities: TrackVelocities) -> None:
    Path(path).write_text(json.dumps(velocities.to_json(), indent=1))


def read_velocity_file(path: str | Path) -> TrackVelocities:
    """Strict reader of write_velocity_file's JSON (InputError naming the file and what is wrong)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"velocity file not found: {path}") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"velocity file {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != VELOCITY_FORMAT:
        raise InputError(f"velocity file {path}: 'format' must be '{VELOCITY_FORMAT}'")
    missing = [key for key in ("num_frames", "over_ground", "velocities") if key not in data]
    if missing:
        raise InputError(f"velocity file {path} lacks {', '.join(missing)}")
    try:
        num_frames, over_ground, rows = data["num_frames"], data["over_ground"], data["velocities"]
        names = data.get("class_names", {})
        if not isinstance(num_frames, int) or num_frames < 0 or not isinstance(over_ground, bool):
            raise ValueError("num_frames must be an integer >= 0 and over_ground true or false")
        velocities: Dict[Tuple[int, int], Tuple[float, float]] = {}
        for k, row in enumerate(rows):
            if (not isinstance(row, list) or len(row) != 4 or not all(isinstance(v, int) for v in row[:2])
                    or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in row[2:])):
                raise ValueError(f"velocities[{k}] must be [frame, track_id, vx_mps, vy_mps], got {row!r}")
            key = (row[0], row[1])
            if key in velocities:
                raise ValueError(f"velocities[{k}]: frame {row[0]} track {row[1]} is given twice")
            velocities[key] = (float(row[2]), float(row[3]))
        class_names = {int(k): str(v) for k, v in names.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"velocity file {path}: {exc}") from exc
    return TrackVelocities(str(data.get("drive", "")), num_frames, over_ground, velocities, class_names)


# ---------------------------------------------------------------------------- tracks
def track_box(track: Track) -> VehicleBox:
    """A track (in the vehicle frame) as a box standing on the ground with its class's typical height."""
    height = typical_height_m(track.class_name)
    return VehicleBox((track.x_m, track.y_m, height / 2), (track.length_m, track.width_m, height), track.heading_rad)


def track_labels(tracks: Sequence[Track], frame: int, converter: KittiBoxConverter,
                 vehicle_from_tracking: Optional[np.ndarray] = None) -> List[Tuple[TrackingLabel, Track]]:
    """Labels of the confirmed tracks (those matched in this frame) that the camera sees, each with its
    track in the vehicle frame. vehicle_from_tracking takes the tracks there (inv(odom_from_vehicle)
    for tracks in odom; None when they are already in the vehicle frame). Tentative tracks are not
    yet tracks and lost ones are guesses: neither is a result."""
    out = []
    for track in tracks:
        if track.status != CONFIRMED:
            continue
        if vehicle_from_tracking is not None:
            track = track.transformed(vehicle_from_tracking)
        label = converter.label(track_box(track), frame, track.track_id, kitti_type(track.class_name), track.score)
        if label is not None:
            out.append((label, track))
    return out
