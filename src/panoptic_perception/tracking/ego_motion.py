"""The vehicle's pose at any stamp between two known ones (e.g. `odom -> vehicle` from OXTS at an image stamp).

Translation is interpolated linearly, rotation by slerp. Outside the covered time range there is
no answer (None): extrapolating ego motion would silently smear a fused grid or a track.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from panoptic_perception.errors import InputError

_POSE_TOLERANCE = 1e-3  # rotation orthonormality: float32 poses from tf and composed transforms drift ~1e-6


def check_pose(pose, what: str = "odom_from_vehicle") -> np.ndarray:
    """A 4x4 rigid transform as float64, or InputError saying what is wrong with it."""
    try:
        m = np.asarray(pose, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a 4x4 matrix of numbers: {exc}") from exc
    if m.shape != (4, 4):
        raise InputError(f"{what} must be a 4x4 matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise InputError(f"{what} has non-finite entries")
    rows = m.tolist()  # a 4x4 in Python floats: a dozen numpy calls on it would cost more than the arithmetic
    if max(abs(v - w) for v, w in zip(rows[3], (0.0, 0.0, 0.0, 1.0))) > 1e-6:
        raise InputError(f"{what} last row must be (0, 0, 0, 1), got {rows[3]}")
    (a, b, c), (d, e, f), (g, h, i) = (row[:3] for row in rows[:3])
    columns = ((a, d, g), (b, e, h), (c, f, i))
    error = max(abs(sum(p * q for p, q in zip(columns[j], columns[k])) - (j == k)) for j in range(3) for k in range(3))
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if error > _POSE_TOLERANCE or det <= 0:
        raise InputError(f"{what} rotation is not a rotation: not orthonormal or a reflection "
                         f"(|R^T R - I| = {error:.2e}, det = {det:.3f})")
    return m


class PoseInterpolator:
    """Poses (N, 4, 4) at strictly increasing stamps (ns); `pose_at(stamp_ns)` answers within their span."""

    def __init__(self, stamps_ns: Sequence[int], poses: np.ndarray) -> None:
        stamps = [int(s) for s in stamps_ns]
        poses = np.asarray(poses, dtype=np.float64)
        if poses.ndim != 3 or poses.shape[1:] != (4, 4):
            raise ValueError(f"poses must be (N, 4, 4), got {poses.shape}")
        if len(stamps) != poses.shape[0]:
            raise ValueError(f"{len(stamps)} stamps for {poses.shape[0]} poses")
        if not stamps:
            raise ValueError("no poses to interpolate")
        if any(b <= a for a, b in zip(stamps, stamps[1:])):
            raise ValueError("pose stamps must increase strictly")
        if not np.isfinite(poses).all():
            raise ValueError("poses hold NaN or Inf")
        self._stamps_ns = np.array(stamps, dtype=np.int64)
        self._poses = poses.copy()
        # Seconds since the first stamp: float64 keeps nanoseconds exact over days this way.
        self._times_s = (self._stamps_ns - self._stamps_ns[0]) / 1e9
        self._slerp = Slerp(self._times_s, Rotation.from_matrix(poses[:, :3, :3])) if len(stamps) > 1 else None

    @property
    def first_stamp_ns(self) -> int:
        return int(self._stamps_ns[0])

    @property
    def last_stamp_ns(self) -> int:
        return int(self._stamps_ns[-1])

    def covers(self, stamp_ns: int) -> bool:
        return self.first_stamp_ns <= int(stamp_ns) <= self.last_stamp_ns

    def pose_at(self, stamp_ns: int) -> Optional[np.ndarray]:
        """4x4 pose at stamp_ns, or None outside [first_stamp_ns, last_stamp_ns]."""
        stamp_ns = int(stamp_ns)
        if not self.covers(stamp_ns):
            return None
        k = int(np.searchsorted(self._stamps_ns, stamp_ns))
        if self._stamps_ns[k] == stamp_ns:
            return self._poses[k].copy()  # exactly a sample: no round trip through quaternions
        a, b = self._poses[k - 1], self._poses[k]
        fraction = (stamp_ns - int(self._stamps_ns[k - 1])) / (int(self._stamps_ns[k]) - int(self._stamps_ns[k - 1]))
        pose = np.eye(4)
        pose[:3, :3] = self._slerp([(stamp_ns - self.first_stamp_ns) / 1e9]).as_matrix()[0]
        pose[:3, 3] = (1.0 - fraction) * a[:3, 3] + fraction * b[:3, 3]
        return pose

    def motion(self, from_stamp_ns: int, to_stamp_ns: int) -> Optional[np.ndarray]:
        """4x4 taking points in the vehicle frame at from_stamp_ns into the vehicle frame at to_stamp_ns
        (inv(pose(to)) @ pose(from)); None if either stamp is outside the covered range."""
        pose_from, pose_to = self.pose_at(from_stamp_ns), self.pose_at(to_stamp_ns)
        if pose_from is None or pose_to is None:
            return None
        return np.linalg.solve(pose_to, pose_from)
