"""KITTI raw drive (real or synthetic) -> a rosbag the node can replay (`kitti2bag`, `make demo`, tests).

Per frame of the chosen camera it writes, stamped with timestamps.txt:

    NS/camera_color_left/image_rect_color   sensor_msgs/Image (rgb8; mono8 for the grey cameras)
    NS/camera_color_left/camera_info        sensor_msgs/CameraInfo of the rectified camera

and once, latched (rosbag play re-latches it): /tf_static with vehicle frame -> camera optical
frame from the calibration (data/kitti.py: origin on the ground below the Velodyne).

When the drive has oxts/ (KITTI's GPS/IMU packets), also the ego motion the ROS way (REP 105), at
every OXTS stamp that the written images need:

    /tf   tf2_msgs/TFMessage: odom -> vehicle frame (data/oxts.py: odom = the vehicle at the first packet)

A drive without oxts/ is still converted, without /tf.

CameraInfo of a rectified KITTI image: P = P_rect_xx as KITTI gives it (its 4th column holds the
stereo baseline), K = P's left 3x3, D = zeros and R = identity: the pixels are already rectified,
so image_proc must not rectify them again (KITTI's R_rect_xx rotates the *unrectified* camera and
is already folded into the tf transform). Images that are truncated, unreadable or the wrong size
are skipped with a warning; the rest of the bag is still written.
"""
from __future__ import annotations

import bisect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.ros.conversions import image_msg, intrinsics_to_camera_info, quaternion_from_matrix

CAMERA_NAMES = {"00": "camera_gray_left", "01": "camera_gray_right", "02": "camera_color_left",
                "03": "camera_color_right"}
COMPRESSIONS = ("none", "bz2", "lz4")


@dataclass
class BagSummary:
    path: Path
    frames_written: int
    skipped: List[str] = field(default_factory=list)  # "file: reason"
    image_topic: str = ""
    info_topic: str = ""
    camera_frame: str = ""
    vehicle_frame: str = ""
    first_stamp_ns: int = 0
    last_stamp_ns: int = 0
    odom_frame: str = ""
    tf_written: int = 0  # /tf messages (odom -> vehicle); 0 when the drive has no oxts/


def normalise_camera(camera: str) -> str:
    value = str(camera).strip().zfill(2)
    if value not in CAMERA_NAMES:
        raise ConfigError(f"--camera must be one of {', '.join(CAMERA_NAMES)}, got '{camera}'")
    return value


def _read_png(path: Path) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) RGB; InputError for truncated / unreadable files."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"unreadable ({exc})") from exc
    # libpng reports a truncated file as an error and OpenCV then returns None.
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError("truncated or not a PNG image")
    if image.dtype != np.uint8:
        raise InputError(f"expected 8-bit pixels, got {image.dtype}")
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    return image


def _covering(stamps_ns: Sequence[int], last_needed_ns: int) -> int:
    """How many leading OXTS stamps to keep so that the last needed stamp is still bracketed."""
    count = bisect.bisect_right(stamps_ns, last_needed_ns)
    return min(len(stamps_ns), count + 1)


def write_kitti_bag(drive_dir: Path, out_path: Path, camera: str = "02", frame_id: Optional[str] = None,
                    vehicle_frame: str = "base_link", namespace: str = "/kitti",
                    max_frames: Optional[int] = None, compression: str = "none", odom_frame: str = "odom",
                    warn: Callable[[str], None] = lambda text: print(f"warning: {text}", file=sys.stderr),
                    ) -> BagSummary:
    """Write the bag; returns what was written. Raises InputError / ConfigError for unusable input."""
    import genpy
    import rosbag
    from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    from panoptic_perception.data import oxts
    from panoptic_perception.data.kitti import read_drive
    from panoptic_perception.geometry.camera import Intrinsics

    camera = normalise_camera(camera)
    if compression not in COMPRESSIONS:
        raise ConfigError(f"--compression must be one of {', '.join(COMPRESSIONS)}, got '{compression}'")
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {max_frames}")
    if not vehicle_frame or vehicle_frame.startswith("/"):
        raise ConfigError(f"--vehicle-frame must be a tf frame id without a leading '/', "
                          f"got '{vehicle_frame}'")
    if not odom_frame or odom_frame.startswith("/") or odom_frame == vehicle_frame:
        raise ConfigError(f"--odom-frame must be a tf frame id without a leading '/' that differs from the "
                          f"vehicle frame, got '{odom_frame}'")
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    drive = read_drive(drive_dir)
    if camera not in drive.images:
        raise InputError(f"drive {drive_dir} has no image_{camera}/ (cameras present: "
                         f"{', '.join(drive.cameras)})")
    calibration = drive.calibration
    frames = drive.images[camera]
    stamps_ns = drive.timestamps_ns[camera]
    if max_frames is not None:
        frames, stamps_ns = frames[:max_frames], stamps_ns[:max_frames]
    if not frames:
        raise InputError(f"drive {drive_dir}: image_{camera}/data has no PNG images")
    ego = oxts.read_drive_oxts(drive_dir)
    if ego is not None:
        if calibration.imu_to_velo is None:
            raise InputError(f"drive {drive_dir} has oxts/ but {calibration.calib_dir} has no "
                             f"calib_imu_to_velo.txt to place the IMU on the vehicle")
        # Poses from every packet (odom = the vehicle at the drive's first packet), written up to
        # the first one past the last image so that every image stamp lies between two of them.
        odom_poses = oxts.vehicle_poses(ego.packets, calibration)
        keep = _covering(ego.stamps_ns, stamps_ns[-1]) if max_frames is not None else len(ego)
        ego_stamps_ns, odom_poses = ego.stamps_ns[:keep], odom_poses[:keep]

    name = CAMERA_NAMES[camera]
    camera_frame = frame_id or name
    if camera_frame.startswith("/") or camera_frame in (vehicle_frame, odom_frame):
        raise ConfigError(f"--frame-id must differ from the vehicle and odom frames and have no leading '/', "
                          f"got '{camera_frame}'")
    grey = camera in ("00", "01")
    image_topic = f"{namespace}/{name}/{'image_rect' if grey else 'image_rect_color'}"
    info_topic = f"{namespace}/{name}/camera_info"

    projection = calibration.projection(camera)
    size = calibration.intrinsics(camera)
    k = projection[:, :3]
    intrinsics = Intrinsics(width=size.width, height=size.height, K=tuple(float(v) for v in k.ravel()),
                            D=(0.0,) * 5, P=tuple(float(v) for v in projection.ravel()))
    vehicle_from_camera = calibration.vehicle_from_camera(camera)

    def stamp_of(ns: int) -> genpy.Time:
        secs, nsecs = divmod(int(ns), 1_000_000_000)
        return genpy.Time(secs, nsecs)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    summary = BagSummary(out_path, 0, image_topic=image_topic, info_topic=info_topic,
                         camera_frame=camera_frame, vehicle_frame=vehicle_frame, odom_frame=odom_frame)
    tmp_path = out_path.with_name(out_path.name + ".partial")
    with rosbag.Bag(str(tmp_path), "w", compression=compression) as bag:
        def transform(stamp: genpy.Time, parent: str, child: str, matrix: np.ndarray) -> TransformStamped:
            q = quaternion_from_matrix(matrix[:3, :3])
            return TransformStamped(header=Header(stamp=stamp, frame_id=parent), child_frame_id=child,
                                    transform=Transform(translation=Vector3(*map(float, matrix[:3, 3])),
                                                        rotation=Quaternion(*map(float, q))))

        first = stamp_of(stamps_ns[0])
        tf_msg = TFMessage(transforms=[transform(first, vehicle_frame, camera_frame, vehicle_from_camera)])
        # rosbag play re-publishes a connection marked latching as latched, which /tf_static needs.
        bag.write("/tf_static", tf_msg, first, connection_header={
            "topic": "/tf_static", "type": tf_msg._type, "md5sum": tf_msg._md5sum,
            "message_definition": tf_msg._full_text, "latching": "1", "callerid": "/kitti2bag"})
        if ego is not None:
            for ns, pose in zip(ego_stamps_ns, odom_poses):
                stamp = stamp_of(ns)
                bag.write("/tf", TFMessage(transforms=[transform(stamp, odom_frame, vehicle_frame, pose)]), stamp)
                summary.tf_written += 1
        for seq, (path, ns) in enumerate(zip(frames, stamps_ns)):
            try:
                pixels = _read_png(path)
            except InputError as exc:
                summary.skipped.append(f"{path.name}: {exc}")
                warn(f"skipping {path}: {exc}")
                continue
            if pixels.shape[:2] != (intrinsics.height, intrinsics.width):
                reason = (f"image is {pixels.shape[1]}x{pixels.shape[0]} but the calibration "
                          f"(S_rect_{camera}) says {intrinsics.width}x{intrinsics.height}")
                summary.skipped.append(f"{path.name}: {reason}")
                warn(f"skipping {path}: {reason}")
                continue
            stamp = stamp_of(ns)
            header = Header(seq=seq, stamp=stamp, frame_id=camera_frame)
            bag.write(image_topic, image_msg(pixels, "mono8" if pixels.ndim == 2 else "rgb8", header), stamp)
            bag.write(info_topic, intrinsics_to_camera_info(intrinsics, header), stamp)
            summary.frames_written += 1
            summary.first_stamp_ns = summary.first_stamp_ns or int(ns)
            summary.last_stamp_ns = int(ns)
    if summary.frames_written == 0:
        tmp_path.unlink(missing_ok=True)
        raise InputError(f"drive {drive_dir}: none of the {len(frames)} images of camera {camera} "
                         f"could be used")
    tmp_path.replace(out_path)  # a crash never leaves a half-written bag under the real name
    return summary
