"""KITTI raw drives: reader and calibration writer, for real drives and synthetic ones alike.

Layout (what the KITTI raw downloads unpack to):

    DATE/calib_cam_to_cam.txt  calib_velo_to_cam.txt  calib_imu_to_velo.txt
    DATE/DATE_drive_XXXX_sync/image_0N/data/0000000000.png ...   image_0N/timestamps.txt

Vehicle frame for KITTI (this package's definition, REP-103 axes): origin on the flat ground
directly below the Velodyne, axes parallel to the Velodyne's (x forward, y left, z up). The
Velodyne is mounted 1.73 m above the ground (KITTI setup), so

    vehicle <- camera_xx = vehicle<-velo (z + 1.73) . velo<-cam0 (inverse calib_velo_to_cam)
                           . cam0<-rect0 (R_rect_00^T) . rect0<-camxx (minus P_rect_xx's offset)

and a rectified camera's intrinsics are P_rect_xx's left 3x3 with no distortion. The synthetic
world writes its calibration through `write_calibration`, so `camera_from_calibration` gives its
camera back exactly.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from panoptic_perception.errors import InputError
from panoptic_perception.geometry.camera import Camera, Extrinsics, Intrinsics
from panoptic_perception.text_files import read_text_file

VELODYNE_HEIGHT_M = 1.73
CAMERAS = ("00", "01", "02", "03")
CAM_TO_CAM = "calib_cam_to_cam.txt"
VELO_TO_CAM = "calib_velo_to_cam.txt"
IMU_TO_VELO = "calib_imu_to_velo.txt"
# Rectified offsets of the KITTI rig relative to rectified camera 0 (P_rect_xx[0,3] / fx, metres):
# gray right, colour left, colour right. Used for the synthetic rig's cameras 01..03.
RIG_BASELINES_M = {"00": 0.0, "01": -0.537, "02": 0.06, "03": -0.47}


# ---------------------------------------------------------------------------- timestamps
def parse_timestamp_ns(text: str, where: str = "timestamp") -> int:
    """'2011-09-26 13:02:25.964389445' -> nanoseconds since the epoch (KITTI times read as UTC)."""
    date_part, _, frac = text.strip().partition(".")
    try:
        base = datetime.datetime.strptime(date_part, "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=datetime.timezone.utc
        )
    except ValueError as exc:
        raise InputError(f"{where}: '{text.strip()}' is not 'YYYY-MM-DD HH:MM:SS.fffffffff'") from exc
    if frac and (not frac.isdigit() or len(frac) > 9):
        raise InputError(f"{where}: '{text.strip()}' has a bad fractional second")
    return int(base.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])


def format_timestamp_ns(ns: int) -> str:
    """Inverse of parse_timestamp_ns, always with 9 fractional digits as KITTI writes them."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    base = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return f"{base:%Y-%m-%d %H:%M:%S}.{nanos:09d}"


def read_timestamps(path: str | Path) -> List[int]:
    lines = read_text_file(path, "timestamps file").splitlines()
    return [parse_timestamp_ns(line, f"{path} line {i + 1}") for i, line in enumerate(lines) if line.strip()]


def write_timestamps(path: str | Path, stamps_ns: Sequence[int]) -> None:
    Path(path).write_text("".join(format_timestamp_ns(s) + "\n" for s in stamps_ns))


# ---------------------------------------------------------------------------- calibration files
def read_calib_file(path: str | Path) -> Dict[str, object]:
    """'key: v1 v2 ...' lines -> {key: float array}; non-numeric values (calib_time) stay strings."""
    path = Path(path)
    text = read_text_file(path, "calibration file")
    out: Dict[str, object] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise InputError(f"calibration file {path} line {number}: expected 'key: values', got '{line}'")
        try:
            out[key.strip()] = np.array([float(v) for v in value.split()], dtype=np.float64)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def _matrix(calib: Dict[str, object], key: str, shape: tuple, path: Path) -> np.ndarray:
    value = calib.get(key)
    if value is None:
        raise InputError(f"calibration file {path} has no '{key}'")
    if not isinstance(value, np.ndarray) or value.size != int(np.prod(shape)):
        raise InputError(f"calibration file {path}: '{key}' must have {int(np.prod(shape))} numbers")
    return value.reshape(shape)


def _rigid(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rotation
    t[:3, 3] = translation
    return t


@dataclass(frozen=True)
class KittiCalibration:
    calib_dir: Path
    cam_to_cam: Dict[str, object]
    velo_to_cam: Dict[str, object]
    imu_to_velo: Optional[Dict[str, object]] = None
    velodyne_height_m: float = VELODYNE_HEIGHT_M

    @classmethod
    def read(cls, calib_dir: str | Path, velodyne_height_m: float = VELODYNE_HEIGHT_M) -> KittiCalibration:
        calib_dir = Path(calib_dir)
        imu = calib_dir / IMU_TO_VELO
        return cls(
            calib_dir,
            read_calib_file(calib_dir / CAM_TO_CAM),
            read_calib_file(calib_dir / VELO_TO_CAM),
            read_calib_file(imu) if imu.is_file() else None,
            velodyne_height_m,
        )

    def projection(self, camera: str = "02") -> np.ndarray:
        """P_rect_xx (3, 4): rectified camera-0 coordinates -> pixels of camera xx."""
        return _matrix(self.cam_to_cam, f"P_rect_{_cam(camera)}", (3, 4), self.calib_dir / CAM_TO_CAM)

    def velo_to_cam0(self) -> np.ndarray:
        """4x4 transform Velodyne -> unrectified camera 0."""
        path = self.calib_dir / VELO_TO_CAM
        return _rigid(
            _matrix(self.velo_to_cam, "R", (3, 3), path), _matrix(self.velo_to_cam, "T", (3,), path)
        )

    def imu_to_velo_matrix(self) -> np.ndarray:
        if self.imu_to_velo is None:
            raise InputError(f"no {IMU_TO_VELO} in {self.calib_dir}")
        path = self.calib_dir / IMU_TO_VELO
        return _rigid(
            _matrix(self.imu_to_velo, "R", (3, 3), path), _matrix(self.imu_to_velo, "T", (3,), path)
        )

    def vehicle_from_velo(self) -> np.ndarray:
        """4x4 transform Velodyne -> vehicle frame (same axes, origin velodyne_height_m below it)."""
        return _rigid(np.eye(3), np.array([0.0, 0.0, self.velodyne_height_m]))

    def vehicle_from_imu(self) -> np.ndarray:
        """4x4 transform IMU (OXTS) -> vehicle frame, through calib_imu_to_velo.txt."""
        return self.vehicle_from_velo() @ self.imu_to_velo_matrix()

    def intrinsics(self, camera: str = "02") -> Intrinsics:
        camera = _cam(camera)
        p = self.projection(camera)
        size = _matrix(self.cam_to_cam, f"S_rect_{camera}", (2,), self.calib_dir / CAM_TO_CAM)
        if p[0, 0] <= 0 or p[1, 1] <= 0 or abs(p[2, 2] - 1.0) > 1e-9:
            raise InputError(
                f"calibration {self.calib_dir / CAM_TO_CAM}: P_rect_{camera} is not a projection "
                f"matrix with positive focal lengths"
            )
        return Intrinsics.pinhole(
            int(round(size[0])),
            int(round(size[1])),
            float(p[0, 0]),
            float(p[1, 1]),
            float(p[0, 2]),
            float(p[1, 2]),
        )

    def vehicle_from_camera(self, camera: str = "02") -> np.ndarray:
        """4x4 transform: rectified optical frame of camera xx -> vehicle frame (see module doc)."""
        camera = _cam(camera)
        p = self.projection(camera)
        r_rect = _matrix(self.cam_to_cam, "R_rect_00", (3, 3), self.calib_dir / CAM_TO_CAM)
        offset = np.linalg.solve(p[:, :3], p[:, 3])  # camera xx = rectified camera 0 + offset
        return (
            self.vehicle_from_velo()
            @ np.linalg.inv(self.velo_to_cam0())
            @ _rigid(r_rect.T, np.zeros(3))
            @ _rigid(np.eye(3), -offset)
        )

    def camera(self, camera: str = "02") -> Camera:
        return Camera(self.intrinsics(camera), Extrinsics.from_matrix(self.vehicle_from_camera(camera)))


def _cam(camera: str) -> str:
    camera = str(camera).zfill(2)
    if camera not in CAMERAS:
        raise InputError(f"KITTI camera must be one of {', '.join(CAMERAS)}, got '{camera}'")
    return camera


def camera_from_calibration(
    calib_dir: str | Path, camera: str = "02", velodyne_height_m: float = VELODYNE_HEIGHT_M
) -> Camera:
    """The rectified camera xx of a KITTI date folder (real or synthetic) as a Camera."""
    return KittiCalibration.read(calib_dir, velodyne_height_m).camera(camera)


def _fmt(values: np.ndarray) -> str:
    # 12 significant digits so a written camera reads back to ~1e-12 (KITTI itself writes 7).
    return " ".join(f"{float(v):.12e}" for v in np.asarray(values, dtype=np.float64).ravel())


def write_calibration(
    date_dir: str | Path,
    camera: Camera,
    camera_id: str = "02",
    velodyne_height_m: float = VELODYNE_HEIGHT_M,
    calib_time: str = "09-Jan-2012 13:57:47",
) -> None:
    """Write calib_cam_to_cam / velo_to_cam / imu_to_velo for a rectified rig around `camera`.

    The rig is KITTI's (four cameras side by side, rectified, identical intrinsics) placed so that
    camera `camera_id` is exactly `camera`; the Velodyne sits at (0, 0, velodyne_height_m) in the
    vehicle frame with the vehicle's axes, the IMU where KITTI's is relative to the Velodyne.
    """
    camera_id = _cam(camera_id)
    date_dir = Path(date_dir)
    date_dir.mkdir(parents=True, exist_ok=True)
    if not camera.intrinsics.is_rectified:
        raise InputError("write_calibration writes a rectified rig; the camera has lens distortion")
    k = camera.intrinsics.camera_matrix
    w, h = camera.width, camera.height
    offsets = {c: np.array([b - RIG_BASELINES_M[camera_id], 0.0, 0.0]) for c, b in RIG_BASELINES_M.items()}
    # Rectified camera 0 is camera 0 itself (R_rect_00 = I); offsets are relative to camera 0.
    base = offsets["00"]
    offsets = {c: o - base for c, o in offsets.items()}
    vehicle_from_rect0 = camera.extrinsics.matrix() @ _rigid(np.eye(3), offsets[camera_id])
    vehicle_from_velo = _rigid(np.eye(3), np.array([0.0, 0.0, velodyne_height_m]))
    cam0_from_velo = np.linalg.inv(vehicle_from_rect0) @ vehicle_from_velo
    lines = [f"calib_time: {calib_time}", f"corner_dist: {_fmt([0.0995])}"]
    for c in CAMERAS:
        p = np.concatenate([k, (k @ offsets[c])[:, None]], axis=1)
        lines += [
            f"S_{c}: {_fmt([w, h])}",
            f"K_{c}: {_fmt(k)}",
            f"D_{c}: {_fmt(np.zeros(5))}",
            f"R_{c}: {_fmt(np.eye(3))}",
            f"T_{c}: {_fmt(offsets[c])}",
            f"S_rect_{c}: {_fmt([w, h])}",
            f"R_rect_{c}: {_fmt(np.eye(3))}",
            f"P_rect_{c}: {_fmt(p)}",
        ]
    (date_dir / CAM_TO_CAM).write_text("\n".join(lines) + "\n")
    (date_dir / VELO_TO_CAM).write_text(
        "\n".join(
            [
                f"calib_time: {calib_time}",
                f"R: {_fmt(cam0_from_velo[:3, :3])}",
                f"T: {_fmt(cam0_from_velo[:3, 3])}",
                f"delta_f: {_fmt([0.0, 0.0])}",
                f"delta_c: {_fmt([0.0, 0.0])}",
            ]
        )
        + "\n"
    )
    # KITTI's IMU (OXTS) sits behind, left of and below the Velodyne.
    (date_dir / IMU_TO_VELO).write_text(
        "\n".join(
            [
                f"calib_time: {calib_time}",
                f"R: {_fmt(np.eye(3))}",
                f"T: {_fmt([-0.8086759, 0.3195559, -0.7997231])}",
            ]
        )
        + "\n"
    )


# ---------------------------------------------------------------------------- drives
@dataclass
class KittiDrive:
    path: Path
    date: str
    drive: int
    images: Dict[str, List[Path]] = field(default_factory=dict)  # camera "02" -> frame paths in order
    timestamps_ns: Dict[str, List[int]] = field(default_factory=dict)
    calibration: Optional[KittiCalibration] = None

    @property
    def cameras(self) -> List[str]:
        return sorted(self.images)

    def num_frames(self, camera: str = "02") -> int:
        return len(self.images.get(_cam(camera), []))

    def camera(self, camera: str = "02") -> Camera:
        if self.calibration is None:
            raise InputError(f"drive {self.path} has no calibration in {self.path.parent}")
        return self.calibration.camera(camera)


def read_drive(drive_dir: str | Path, require_calibration: bool = True) -> KittiDrive:
    """Index a KITTI raw drive folder (DATE_drive_XXXX_sync): images and timestamps per camera,
    calibration from the date folder above it."""
    drive_dir = Path(drive_dir)
    if not drive_dir.is_dir():
        raise InputError(f"KITTI drive folder not found: {drive_dir}")
    name = drive_dir.name
    parts = name.split("_drive_")
    if len(parts) != 2:
        raise InputError(f"KITTI drive folder name '{name}' is not DATE_drive_XXXX_sync")
    date = parts[0]
    try:
        drive = int(parts[1].split("_")[0])
    except ValueError as exc:
        raise InputError(f"KITTI drive folder name '{name}' has no drive number") from exc
    out = KittiDrive(drive_dir, date, drive)
    for c in CAMERAS:
        cam_dir = drive_dir / f"image_{c}"
        if not cam_dir.is_dir():
            continue
        frames = sorted((cam_dir / "data").glob("*.png"))
        stamps = read_timestamps(cam_dir / "timestamps.txt")
        if len(stamps) < len(frames):
            raise InputError(
                f"{cam_dir / 'timestamps.txt'} has {len(stamps)} timestamps for {len(frames)} images"
            )
        out.images[c] = frames
        out.timestamps_ns[c] = stamps[: len(frames)]
    if not out.images:
        raise InputError(f"KITTI drive {drive_dir} has no image_0N/ folders")
    calib_dir = drive_dir.parent
    if (calib_dir / CAM_TO_CAM).is_file() or require_calibration:
        out.calibration = KittiCalibration.read(calib_dir)
        out.calibration.projection("02")  # fail now, naming the file, rather than at first use
    return out


def find_drives(root: str | Path, camera: str = "02") -> List[Path]:
    """KITTI drive folders with image_<camera>/ at root or up to two levels below it (what `synth --out`
    and a KITTI raw download hold: DATE/DATE_drive_XXXX_sync), sorted."""
    pattern = f"image_{camera}"
    return sorted({p.parent for depth in ("", "*/", "*/*/") for p in Path(root).glob(depth + pattern) if p.is_dir()})
