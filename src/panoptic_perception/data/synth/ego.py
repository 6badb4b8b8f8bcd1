"""The synthetic ego's exact trajectory as KITTI OXTS packets (what a real drive's GPS/IMU records).

The street frame is placed on the map with its origin near Karlsruhe (where KITTI drove) and its +x
axis HEADING_RAD counter-clockwise from east. Positions go through the inverse of the devkit's
Mercator mapping with the scale of the first packet's latitude, so that data/oxts.py reads back
the world's ego poses exactly (up to float rounding), whatever the devkit's approximation of the
earth. The IMU sits where the drive's calib_imu_to_velo.txt says, so the packets describe the IMU,
as KITTI's do.
"""

from __future__ import annotations

import numpy as np

from panoptic_perception.data.oxts import (
    OxtsPacket,
    latlon_to_mercator,
    mercator_scale,
    mercator_to_latlon,
    rotation_from_rpy,
    rpy_from_rotation,
)
from panoptic_perception.data.synth.world import StreetWorld

ORIGIN_LAT_DEG = 49.011  # the first packet's IMU position: Karlsruhe
ORIGIN_LON_DEG = 8.4236
ORIGIN_ALT_M = 112.0
HEADING_RAD = 0.6  # the street's +x, counter-clockwise from east (not 0, so a mixed-up axis shows)
GRAVITY_MPS2 = 9.80665
# What KITTI's RTK-corrected drives report: navstat 4, 10 satellites, RTK integer modes.
_STATUS = (4, 10, 6, 6, 6)
_ACCURACY = (0.01, 0.01)  # nominal (m, m/s): the truth is exact, but consumers may divide by these


class EgoOxts:
    """Packets for frames of `world`, with the IMU at `vehicle_from_imu` (4x4) in the vehicle frame."""

    def __init__(self, world: StreetWorld, vehicle_from_imu: np.ndarray) -> None:
        self.world = world
        self.vehicle_from_imu = np.asarray(vehicle_from_imu, dtype=np.float64)
        self.scale = mercator_scale(ORIGIN_LAT_DEG)
        x0_m, y0_m = latlon_to_mercator(ORIGIN_LAT_DEG, ORIGIN_LON_DEG, self.scale)
        street_imu0 = world.ego_pose(0) @ self.vehicle_from_imu
        self.nav_from_street = np.eye(4)
        self.nav_from_street[:3, :3] = rotation_from_rpy(0.0, 0.0, HEADING_RAD)
        self.nav_from_street[:3, 3] = np.array([x0_m, y0_m, ORIGIN_ALT_M]) - (
            self.nav_from_street[:3, :3] @ street_imu0[:3, 3]
        )

    def imu_pose(self, frame_index: int) -> np.ndarray:
        """4x4 IMU -> navigation frame (Mercator east, north, altitude) at a frame."""
        return self.nav_from_street @ self.world.ego_pose(frame_index) @ self.vehicle_from_imu

    def packet(self, frame_index: int) -> OxtsPacket:
        pose = self.imu_pose(frame_index)
        lat, lon = mercator_to_latlon(pose[0, 3], pose[1, 3], self.scale)
        if frame_index == 0:
            lat, lon = ORIGIN_LAT_DEG, ORIGIN_LON_DEG  # exactly, so the reader's Mercator scale is ours
        roll, pitch, yaw = rpy_from_rotation(pose[:3, :3])
        imu_to_nav = pose[:3, :3]
        # Constant speed along the street's +x: velocity without acceleration; the accelerometers
        # measure only gravity's reaction (specific force, up).
        velocity_nav = self.nav_from_street[:3, :3] @ np.array([self.world.config.speed_mps, 0.0, 0.0])
        level = rotation_from_rpy(0.0, 0.0, yaw)  # forward/left/up axes: level, along the heading
        vf, vl, vu = level.T @ velocity_nav
        up_force = np.array([0.0, 0.0, GRAVITY_MPS2])
        ax, ay, az = imu_to_nav.T @ up_force
        af, al, au = level.T @ up_force
        return OxtsPacket(
            lat, lon, float(pose[2, 3]), roll, pitch, yaw,
            float(velocity_nav[1]), float(velocity_nav[0]), float(vf), float(vl), float(vu),
            float(ax), float(ay), float(az), float(af), float(al), float(au),
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            *_ACCURACY, *_STATUS,
        )  # fmt: skip
