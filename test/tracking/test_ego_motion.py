"""Pose at an image stamp between OXTS stamps: exact at samples, slerp + linear between, nothing outside."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from panoptic_perception.tracking.ego_motion import PoseInterpolator

T0 = 1_317_042_145_964_389_445  # a KITTI-era stamp: float seconds since the epoch would lose the ns here


def _pose(yaw_deg: float, x: float, y: float, z: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("ZYX", [yaw_deg, 0.0, roll_deg], degrees=True).as_matrix()
    pose[:3, 3] = (x, y, z)
    return pose


@pytest.fixture
def turn():
    """A quarter turn to the left on a 10 m radius, sampled every 100 ms (10 Hz, like OXTS)."""
    yaws = [0.0, 30.0, 60.0, 90.0]
    poses = [_pose(a, 10 * math.sin(math.radians(a)), 10 * (1 - math.cos(math.radians(a)))) for a in yaws]
    stamps = [T0 + k * 100_000_000 for k in range(4)]
    return stamps, np.stack(poses)


def test_exact_at_every_sample(turn):
    stamps, poses = turn
    track = PoseInterpolator(stamps, poses)
    for s, p in zip(stamps, poses):
        np.testing.assert_array_equal(track.pose_at(s), p)
    assert (track.first_stamp_ns, track.last_stamp_ns) == (stamps[0], stamps[-1])


def test_midpoint_of_a_turn(turn):
    stamps, poses = turn
    track = PoseInterpolator(stamps, poses)
    mid = track.pose_at(stamps[1] + 50_000_000)
    # Rotation half way from 30 to 60 degrees of yaw; translation the chord's midpoint (linear).
    np.testing.assert_allclose(mid[:3, :3], _pose(45.0, 0, 0)[:3, :3], atol=1e-12)
    np.testing.assert_allclose(mid[:3, 3], (poses[1, :3, 3] + poses[2, :3, 3]) / 2, atol=1e-12)
    np.testing.assert_allclose(mid[3], [0, 0, 0, 1])
    # A quarter of the way: 37.5 degrees, uneven fractions use the stamps, not sample counts.
    quarter = track.pose_at(stamps[1] + 25_000_000)
    assert Rotation.from_matrix(quarter[:3, :3]).as_euler("ZYX", degrees=True)[0] == pytest.approx(37.5)


def test_slerp_takes_the_short_way_and_mixes_axes():
    a, b = _pose(170.0, 0, 0, roll_deg=10.0), _pose(-170.0, 2, 0, roll_deg=-10.0)
    track = PoseInterpolator([T0, T0 + 100], np.stack([a, b]))
    mid = track.pose_at(T0 + 50)
    yaw, _, roll = Rotation.from_matrix(mid[:3, :3]).as_euler("ZYX", degrees=True)
    assert abs(abs(yaw) - 180.0) < 1e-9 and roll == pytest.approx(0.0, abs=1e-9)  # not through yaw 0
    assert mid[0, 3] == pytest.approx(1.0)


def test_outside_the_covered_range_is_refused(turn):
    stamps, poses = turn
    track = PoseInterpolator(stamps, poses)
    assert track.pose_at(stamps[0] - 1) is None
    assert track.pose_at(stamps[-1] + 1) is None
    assert not track.covers(stamps[-1] + 1) and track.covers(stamps[-1])
    assert track.motion(stamps[0], stamps[-1] + 1) is None


def test_single_pose_answers_only_its_own_stamp():
    track = PoseInterpolator([T0], _pose(10.0, 1, 2)[None])
    np.testing.assert_array_equal(track.pose_at(T0), _pose(10.0, 1, 2))
    assert track.pose_at(T0 + 1) is None and track.pose_at(T0 - 1) is None


def test_motion_between_two_stamps(turn):
    stamps, poses = turn
    track = PoseInterpolator(stamps, poses)
    motion = track.motion(stamps[0], stamps[3])
    # A point 5 m ahead of the vehicle at the start, seen from the vehicle after the quarter turn.
    point = motion @ np.array([5.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(point[:3], np.linalg.solve(poses[3], poses[0] @ [5.0, 0, 0, 1])[:3])
    np.testing.assert_allclose(point[:3], [-10.0, 5.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(track.motion(stamps[2], stamps[2]), np.eye(4), atol=1e-12)


@pytest.mark.parametrize("stamps, poses, needle", [
    ([T0, T0], np.stack([np.eye(4)] * 2), "increase strictly"),
    ([T0 + 1, T0], np.stack([np.eye(4)] * 2), "increase strictly"),
    ([T0], np.stack([np.eye(4)] * 2), "1 stamps for 2 poses"),
    ([], np.zeros((0, 4, 4)), "no poses"),
    ([T0], np.eye(4), r"\(N, 4, 4\)"),
    ([T0], np.full((1, 4, 4), np.nan), "NaN"),
])
def test_bad_input_is_a_clear_error(stamps, poses, needle):
    with pytest.raises(ValueError, match=needle):
        PoseInterpolator(stamps, poses)
