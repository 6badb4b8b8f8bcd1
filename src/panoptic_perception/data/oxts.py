"""KITTI raw OXTS (GPS/IMU) folders: reader, writer and the devkit's packet -> pose conversion.

Layout of a drive's `oxts/` folder (KITTI raw, synced or extract):

    oxts/data/0000000000.txt ...  one line of 30 space-separated numbers per packet (OXTS_FIELDS)
    oxts/timestamps.txt           one KITTI timestamp per packet, same format as image timestamps
    oxts/dataformat.txt           the field list (written for people; the reader ignores it)

Poses follow the KITTI devkit (convertOxtsToPose.m, latlonToMercator.m): a Mercator projection
scaled by cos(latitude of the FIRST packet), t = (x, y, altitude), R = Rz(yaw) Ry(pitch) Rx(roll),
every pose relative to the first one (inv(T_0) T_k). Those are poses of the IMU. `vehicle_poses`
turns them into ROS REP 105 `odom -> vehicle` poses, odom being the vehicle frame at the first
packet, through the drive's calib_imu_to_velo.txt and the package's vehicle frame (data/kitti.py).
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from panoptic_perception.data.kitti import KittiCalibration, read_timestamps, write_timestamps
from panoptic_perception.errors import InputError
from panoptic_perception.text_files import parse_finite, read_text_file

EARTH_RADIUS_M = 6378137.0  # the devkit's (WGS84 equatorial radius)
OXTS_DIR = "oxts"
INTEGER_FIELDS = ("navstat", "numsats", "posmode", "velmode", "orimode")

# (name, description) in file order; dataformat.txt is written from this.
_FIELD_DOCS = (
    ("lat", "latitude of the oxts-unit (deg)"),
    ("lon", "longitude of the oxts-unit (deg)"),
    ("alt", "altitude of the oxts-unit (m)"),
    ("roll", "roll angle (rad), 0 = level, positive = left side up, range -pi .. +pi"),
    ("pitch", "pitch angle (rad), 0 = level, positive = front down, range -pi/2 .. +pi/2"),
    ("yaw", "heading (rad), 0 = east, positive = counter clockwise, range -pi .. +pi"),
    ("vn", "velocity towards north (m/s)"),
    ("ve", "velocity towards east (m/s)"),
    ("vf", "forward velocity, parallel to the earth's surface (m/s)"),
    ("vl", "leftward velocity, parallel to the earth's surface (m/s)"),
    ("vu", "upward velocity, perpendicular to the earth's surface (m/s)"),
    ("ax", "acceleration in x, the vehicle's front direction (m/s^2)"),
    ("ay", "acceleration in y, the vehicle's left direction (m/s^2)"),
    ("az", "acceleration in z, the vehicle's top direction (m/s^2)"),
    ("af", "forward acceleration (m/s^2)"),
    ("al", "leftward acceleration (m/s^2)"),
    ("au", "upward acceleration (m/s^2)"),
    ("wx", "angular rate around x (rad/s)"),
    ("wy", "angular rate around y (rad/s)"),
    ("wz", "angular rate around z (rad/s)"),
    ("wf", "angular rate around the forward axis (rad/s)"),
    ("wl", "angular rate around the leftward axis (rad/s)"),
    ("wu", "angular rate around the upward axis (rad/s)"),
    ("pos_accuracy", "position accuracy (north/east, m)"),
    ("vel_accuracy", "velocity accuracy (north/east, m/s)"),
    ("navstat", "navigation status"),
    ("numsats", "number of satellites tracked by the primary GPS receiver"),
    ("posmode", "position mode of the primary GPS receiver"),
    ("velmode", "velocity mode of the primary GPS receiver"),
    ("orimode", "orientation mode of the primary GPS receiver"),
)
OXTS_FIELDS = tuple(name for name, _ in _FIELD_DOCS)


@dataclass(frozen=True)
class OxtsPacket:
    """One OXTS RT3003 packet with KITTI's field names (dataformat.txt); units as listed in _FIELD_DOCS."""

    lat: float
    lon: float
    alt: float
    roll: float
    pitch: float
    yaw: float
    vn: float
    ve: float
    vf: float
    vl: float
    vu: float
    ax: float
    ay: float
    az: float
    af: float
    al: float
    au: float
    wx: float
    wy: float
    wz: float
    wf: float
    wl: float
    wu: float
    pos_accuracy: float
    vel_accuracy: float
    navstat: int
    numsats: int
    posmode: int
    velmode: int
    orimode: int

    def values(self) -> Tuple[float, ...]:
        return astuple(self)


@dataclass(frozen=True)
class OxtsSequence:
    """A drive's packets with their timestamps (same length, file order)."""

    stamps_ns: Tuple[int, ...]
    packets: Tuple[OxtsPacket, ...]

    def __post_init__(self) -> None:
        if len(self.stamps_ns) != len(self.packets):
            raise InputError(f"{len(self.stamps_ns)} OXTS timestamps for {len(self.packets)} packets")

    def __len__(self) -> int:
        return len(self.packets)


# ---------------------------------------------------------------------------- one line
def parse_oxts_line(text: str, where: str = "OXTS line") -> OxtsPacket:
    """30 space-separated numbers -> OxtsPacket; InputError naming `where` and the bad field otherwise."""
    tokens = text.split()
    if len(tokens) != len(OXTS_FIELDS):
        raise InputError(f"{where}: expected {len(OXTS_FIELDS)} numbers (KITTI OXTS packet), got {len(tokens)}")
    values: List[float] = []
    for name, token in zip(OXTS_FIELDS, tokens):
        value = parse_finite(token, name, where)
        if name in INTEGER_FIELDS:
            if value != int(value):
                raise InputError(f"{where}: field '{name}' must be an integer, got '{token}'")
            value = int(value)
        values.append(value)
    return OxtsPacket(*values)


def format_oxts_line(packet: OxtsPacket) -> str:
    """One packet as a line; repr() of each float so that reading it back gives the same numbers."""
    return " ".join(
        str(int(v)) if name in INTEGER_FIELDS else repr(float(v)) for name, v in zip(OXTS_FIELDS, packet.values())
    )


# ---------------------------------------------------------------------------- folders
def read_oxts_packet(path: str | Path) -> OxtsPacket:
    path = Path(path)
    text = read_text_file(path, "OXTS file")
    lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(lines) != 1:
        raise InputError(f"OXTS file {path}: expected one packet line, got {len(lines)}")
    number, line = lines[0]
    return parse_oxts_line(line, f"OXTS file {path} line {number}")


def read_oxts(oxts_dir: str | Path) -> OxtsSequence:
    """Read `oxts/` (data/*.txt in name order + timestamps.txt); counts must match."""
    oxts_dir = Path(oxts_dir)
    data_dir = oxts_dir / "data"
    if not data_dir.is_dir():
        raise InputError(f"OXTS folder {oxts_dir} has no data/ folder")
    files = sorted(data_dir.glob("*.txt"))
    for expected, path in enumerate(files):
        if path.name != f"{expected:010d}.txt":
            raise InputError(f"OXTS folder {data_dir}: expected {expected:010d}.txt next, found {path.name}")
    stamps_file = oxts_dir / "timestamps.txt"
    stamps = read_timestamps(stamps_file)
    if len(stamps) != len(files):
        raise InputError(f"{stamps_file} has {len(stamps)} timestamps for {len(files)} packets in {data_dir}")
    if not files:
        raise InputError(f"OXTS folder {data_dir} has no packets")
    for k in range(1, len(stamps)):
        if stamps[k] <= stamps[k - 1]:
            raise InputError(f"{stamps_file} line {k + 1}: timestamp does not increase")
    return OxtsSequence(tuple(stamps), tuple(read_oxts_packet(p) for p in files))


def read_drive_oxts(drive_dir: str | Path) -> Optional[OxtsSequence]:
    """The drive's OXTS packets, or None when it has no oxts/ folder (other problems raise)."""
    oxts_dir = Path(drive_dir) / OXTS_DIR
    return read_oxts(oxts_dir) if oxts_dir.exists() else None


def write_dataformat(oxts_dir: str | Path) -> None:
    width = max(len(name) for name in OXTS_FIELDS) + 2
    text = "".join(f"{name + ':':<{width}}{doc}\n" for name, doc in _FIELD_DOCS)
    Path(oxts_dir).mkdir(parents=True, exist_ok=True)
    (Path(oxts_dir) / "dataformat.txt").write_text(text)


def write_oxts_packet(oxts_dir: str | Path, index: int, packet: OxtsPacket) -> None:
    data_dir = Path(oxts_dir) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / f"{index:010d}.txt").write_text(format_oxts_line(packet) + "\n")


def write_oxts(oxts_dir: str | Path, sequence: OxtsSequence) -> None:
    """Write a complete oxts/ folder (data/, timestamps.txt, dataformat.txt)."""
    write_dataformat(oxts_dir)
    for index, packet in enumerate(sequence.packets):
        write_oxts_packet(oxts_dir, index, packet)
    write_timestamps(Path(oxts_dir) / "timestamps.txt", sequence.stamps_ns)


# ---------------------------------------------------------------------------- poses
def mercator_scale(lat0_deg: float) -> float:
    """The devkit's Mercator scale: cos of the first packet's latitude."""
    return math.cos(math.radians(lat0_deg))


def latlon_to_mercator(lat_deg: float, lon_deg: float, scale: float) -> Tuple[float, float]:
    """(x east, y north) in metres, as the devkit's latlonToMercator."""
    x_m = scale * lon_deg * math.pi * EARTH_RADIUS_M / 180.0
    y_m = scale * EARTH_RADIUS_M * math.log(math.tan((90.0 + lat_deg) * math.pi / 360.0))
    return x_m, y_m


def mercator_to_latlon(x_m: float, y_m: float, scale: float) -> Tuple[float, float]:
    """Inverse of latlon_to_mercator (same scale)."""
    lon_deg = x_m * 180.0 / (scale * math.pi * EARTH_RADIUS_M)
    lat_deg = 360.0 / math.pi * math.atan(math.exp(y_m / (scale * EARTH_RADIUS_M))) - 90.0
    return lat_deg, lon_deg


def rotation_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll): IMU axes -> navigation (east, north, up) axes."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def rpy_from_rotation(rotation: np.ndarray) -> Tuple[float, float, float]:
    """(roll, pitch, yaw) with rotation_from_rpy(*result) == rotation; pitch within [-pi/2, pi/2]."""
    r = np.asarray(rotation, dtype=np.float64)
    pitch = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    roll = math.atan2(r[2, 1], r[2, 2])
    yaw = math.atan2(r[1, 0], r[0, 0])
    return roll, pitch, yaw


def _navigation_pose(packet: OxtsPacket, scale: float) -> np.ndarray:
    """IMU -> Mercator/altitude frame (absolute, huge translation)."""
    x_m, y_m = latlon_to_mercator(packet.lat, packet.lon, scale)
    pose = np.eye(4)
    pose[:3, :3] = rotation_from_rpy(packet.roll, packet.pitch, packet.yaw)
    pose[:3, 3] = (x_m, y_m, packet.alt)
    return pose


def _rigid_inverse(pose: np.ndarray) -> np.ndarray:
    inverse = np.eye(4)
    inverse[:3, :3] = pose[:3, :3].T
    inverse[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return inverse


def imu_poses(packets: Sequence[OxtsPacket]) -> np.ndarray:
    """(N, 4, 4) IMU poses relative to the first packet's IMU (the devkit's convertOxtsToPose)."""
    if not packets:
        raise InputError("no OXTS packets to convert to poses")
    scale = mercator_scale(packets[0].lat)
    absolute = [_navigation_pose(p, scale) for p in packets]
    first_inverse = _rigid_inverse(absolute[0])
    return np.stack([first_inverse @ pose for pose in absolute])


def vehicle_poses(packets: Sequence[OxtsPacket], calibration: KittiCalibration) -> np.ndarray:
    """(N, 4, 4) `odom -> vehicle` poses; odom is the vehicle frame at the first packet (REP 105)."""
    vehicle_imu = calibration.vehicle_from_imu()
    # KITTI prints R with 7 digits: not exactly orthonormal, so a true inverse keeps pose 0 the identity.
    imu_vehicle = np.linalg.inv(vehicle_imu)
    return np.stack([vehicle_imu @ pose @ imu_vehicle for pose in imu_poses(packets)])
