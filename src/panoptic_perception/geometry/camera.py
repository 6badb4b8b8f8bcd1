"""Pinhole camera model and camera -> vehicle extrinsics.

Frames follow ROS REP 103/105: the camera's optical frame has z forward, x right, y down; the
vehicle frame has x forward, y left, z up, with its origin on the flat ground (z = 0) below the
vehicle reference point. Angles are intrinsic yaw-pitch-roll about the vehicle axes; a positive
pitch tilts the camera's view DOWN (right-hand rule about +y), as in ROS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np

from panoptic_perception.errors import InputError

# KITTI raw 2011_09_26, rectified camera 2 (P_rect_02): the project's default camera.
KITTI_WIDTH_PX = 1242
KITTI_HEIGHT_PX = 375
KITTI_FX = 721.5377
KITTI_CX = 609.5593
KITTI_CY = 172.854
KITTI_CAMERA_HEIGHT_M = 1.65

# Rotation taking optical-frame axes to vehicle-frame axes when all angles are zero.
_R_VEHICLE_FROM_OPTICAL_ZERO = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Intrinsics:
    """What CameraInfo carries: image size, K, distortion D, rectification R, projection P."""

    width: int
    height: int
    K: Tuple[float, ...]  # 9, row-major
    D: Tuple[float, ...] = ()
    R: Tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    P: Optional[Tuple[float, ...]] = None  # 12, row-major; None -> [K | 0]
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"camera size must be positive, got {self.width}x{self.height}")
        for name in ("K", "D", "R", "P"):
            values = getattr(self, name)
            # NaN / Inf would project every pixel to NaN: an all-unknown grid that looks healthy
            if values is not None and not all(math.isfinite(float(v)) for v in values):
                raise InputError(f"camera {name} has non-finite values (NaN or Inf): {tuple(values)}")
        if len(self.K) != 9 or self.K[0] <= 0 or self.K[4] <= 0:
            raise InputError(f"camera K must be 9 values with positive fx, fy; got {self.K}")
        if self.P is not None and (len(self.P) != 12 or self.P[0] <= 0):
            raise InputError(f"camera P must be 12 values with positive fx; got {self.P}")

    @classmethod
    def pinhole(cls, width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> Intrinsics:
        K = (fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0)
        return cls(width, height, K, D=(0.0,) * 5, P=(fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0))

    @classmethod
    def kitti(cls) -> Intrinsics:
        return cls.pinhole(KITTI_WIDTH_PX, KITTI_HEIGHT_PX, KITTI_FX, KITTI_FX, KITTI_CX, KITTI_CY)

    @property
    def is_rectified(self) -> bool:
        """True when pixels are already undistorted (D all zero), as KITTI's rectified images."""
        return not any(abs(d) > 0 for d in self.D)

    @property
    def camera_matrix(self) -> np.ndarray:
        """The 3x3 matrix that maps rays to the pixels of the image we are given.

        For a rectified image that is P's left 3x3 (what image_proc's rectified output uses);
        for a raw distorted image it is K, with D applied on top.
        """
        if self.is_rectified and self.P is not None:
            return np.array(self.P, dtype=np.float64).reshape(3, 4)[:, :3]
        return np.array(self.K, dtype=np.float64).reshape(3, 3)

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera seen at another image size (e.g. the network's input)."""
        sx, sy = width / self.width, height / self.height

        def scale_matrix(values: Sequence[float], cols: int) -> Tuple[float, ...]:
            m = np.array(values, dtype=np.float64).reshape(3, cols)
            m[0] *= sx
            m[1] *= sy
            return tuple(float(v) for v in m.ravel())

        P = scale_matrix(self.P, 4) if self.P is not None else None
        return Intrinsics(width, height, scale_matrix(self.K, 3), self.D, self.R, P, self.distortion_model)

    def pixel_rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Ray directions (N, 3) in the optical frame (z = 1) through pixel coordinates u, v."""
        u = np.asarray(u, dtype=np.float64).ravel()
        v = np.asarray(v, dtype=np.float64).ravel()
        if self.is_rectified:
            m = self.camera_matrix
            x = (u - m[0, 2]) / m[0, 0]
            y = (v - m[1, 2]) / m[1, 1]
            return np.stack([x, y, np.ones_like(x)], axis=1)
        import cv2

        pts = np.stack([u, v], axis=1).reshape(-1, 1, 2)
        und = cv2.undistortPoints(pts, self.camera_matrix, np.array(self.D, dtype=np.float64)).reshape(-1, 2)
        return np.concatenate([und, np.ones((len(und), 1))], axis=1)

    def project(self, points_optical: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Optical-frame points (N, 3) -> pixel coordinates (N, 2) and depth z (N,)."""
        pts = np.asarray(points_optical, dtype=np.float64).reshape(-1, 3)
        z = pts[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xn, yn = pts[:, 0] / z, pts[:, 1] / z
        if not self.is_rectified:
            import cv2

            uv, _ = cv2.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), self.camera_matrix,
                                      np.array(self.D, dtype=np.float64))
            return uv.reshape(-1, 2), z
        m = self.camera_matrix
        return np.stack([m[0, 0] * xn + m[0, 1] * yn + m[0, 2], m[1, 1] * yn + m[1, 2]], axis=1), z


@dataclass(frozen=True)
class Extrinsics:
    """Pose of the camera's optical frame in the vehicle frame (metres, degrees)."""

    x_m: float = 0.0
    y_m: float = 0.0
    height_m: float = KITTI_CAMERA_HEIGHT_M
    roll_deg: float = 0.0
    pitch_deg: float = 0.0
    yaw_deg: float = 0.0

    def rotation(self) -> np.ndarray:
        """R such that p_vehicle = R @ p_optical + t."""
        r, p, y = (math.radians(a) for a in (self.roll_deg, self.pitch_deg, self.yaw_deg))
        rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
        ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
        rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
        return rz @ ry @ rx @ _R_VEHICLE_FROM_OPTICAL_ZERO

    def translation(self) -> np.ndarray:
        return np.array([self.x_m, self.y_m, self.height_m], dtype=np.float64)

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous transform vehicle <- optical."""
        t = np.eye(4)
        t[:3, :3] = self.rotation()
        t[:3, 3] = self.translation()
        return t

    @classmethod
    def from_matrix(cls, vehicle_from_optical: np.ndarray) -> Extrinsics:
        """Recover the parameters from a 4x4 transform (e.g. looked up in tf)."""
        t = np.asarray(vehicle_from_optical, dtype=np.float64)
        r = t[:3, :3] @ _R_VEHICLE_FROM_OPTICAL_ZERO.T  # = Rz Ry Rx
        pitch = math.asin(max(-1.0, min(1.0, -r[2, 0])))
        roll = math.atan2(r[2, 1], r[2, 2])
        yaw = math.atan2(r[1, 0], r[0, 0])
        return cls(float(t[0, 3]), float(t[1, 3]), float(t[2, 3]),
                   math.degrees(roll), math.degrees(pitch), math.degrees(yaw))


@dataclass(frozen=True)
class Camera:
    """Intrinsics plus where the camera sits on the vehicle."""

    intrinsics: Intrinsics = field(default_factory=Intrinsics.kitti)
    extrinsics: Extrinsics = field(default_factory=Extrinsics)

    @property
    def width(self) -> int:
        return self.intrinsics.width

    @property
    def height(self) -> int:
        return self.intrinsics.height

    def project_vehicle_points(self, points_vehicle: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Vehicle-frame points (N, 3) -> pixels (N, 2) and optical depth (N,)."""
        pts = np.asarray(points_vehicle, dtype=np.float64).reshape(-1, 3)
        optical = (pts - self.extrinsics.translation()) @ self.extrinsics.rotation()
        return self.intrinsics.project(optical)

    def ground_points(self, u: np.ndarray, v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Where the rays through pixels (u, v) meet the ground z = 0.

        Returns (N, 2) vehicle-frame x, y in metres and a bool mask of rays that hit the ground
        in front of the camera (pixels at or above the horizon do not).
        """
        rays = self.intrinsics.pixel_rays(u, v) @ self.extrinsics.rotation().T
        origin = self.extrinsics.translation()
        with np.errstate(divide="ignore", invalid="ignore"):
            s = -origin[2] / rays[:, 2]
        hit = np.isfinite(s) & (s > 0)
        xy = origin[:2] + rays[:, :2] * np.where(hit, s, np.nan)[:, None]
        return xy, hit
