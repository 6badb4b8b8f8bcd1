import math

import numpy as np
import pytest

from panoptic_perception.errors import InputError
from panoptic_perception.geometry.camera import Camera, Extrinsics, Intrinsics


def test_principal_point_row_below_horizon_hits_ground_at_hand_computed_range():
    cam = Camera(Intrinsics.kitti(), Extrinsics(height_m=1.65))
    fy, cy = 721.5377, 172.854
    v = cy + 50.0  # 50 px below the horizon: range = h * fy / 50
    xy, hit = cam.ground_points(np.array([609.5593]), np.array([v]))
    assert hit[0]
    assert xy[0, 0] == pytest.approx(1.65 * fy / 50.0, rel=1e-9)
    assert xy[0, 1] == pytest.approx(0.0, abs=1e-9)
    _, hit_sky = cam.ground_points(np.array([600.0]), np.array([cy - 10]))
    assert not hit_sky[0]


def test_pitch_down_brings_ground_closer_by_the_expected_amount():
    fy, cy = 721.5377, 172.854
    v = np.array([cy + 30.0])
    base = Camera(extrinsics=Extrinsics(height_m=1.65)).ground_points(np.array([609.5593]), v)[0][0, 0]
    pitched = Camera(extrinsics=Extrinsics(height_m=1.65, pitch_deg=1.0)).ground_points(
        np.array([609.5593]), v)[0][0, 0]
    depression = math.atan(30.0 / fy) + math.radians(1.0)
    assert pitched == pytest.approx(1.65 / math.tan(depression), rel=1e-9)
    assert pitched < base


def test_project_and_ground_points_are_inverse():
    cam = Camera(extrinsics=Extrinsics(x_m=1.2, y_m=-0.3, height_m=1.5, roll_deg=1.0, pitch_deg=2.0,
                                       yaw_deg=-3.0))
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(5, 50, 100), rng.uniform(-10, 10, 100), np.zeros(100)])
    uv, depth = cam.project_vehicle_points(pts)
    assert (depth > 0).all()
    xy, hit = cam.ground_points(uv[:, 0], uv[:, 1])
    assert hit.all()
    np.testing.assert_allclose(xy, pts[:, :2], atol=1e-8)


def test_extrinsics_matrix_round_trip():
    ext = Extrinsics(x_m=0.27, y_m=0.06, height_m=1.65, roll_deg=-0.5, pitch_deg=1.5, yaw_deg=2.0)
    back = Extrinsics.from_matrix(ext.matrix())
    for name in ("x_m", "y_m", "height_m", "roll_deg", "pitch_deg", "yaw_deg"):
        assert getattr(back, name) == pytest.approx(getattr(ext, name), abs=1e-9)


def test_distorted_camera_round_trip_through_opencv():
    intr = Intrinsics(640, 480, (500.0, 0, 320.0, 0, 500.0, 240.0, 0, 0, 1), D=(-0.2, 0.05, 0.001, 0.0, 0.0))
    assert not intr.is_rectified
    pts = np.array([[0.3, 0.2, 4.0], [-0.5, 0.4, 3.0]])
    uv, _ = intr.project(pts)
    rays = intr.pixel_rays(uv[:, 0], uv[:, 1])
    np.testing.assert_allclose(rays[:, :2], pts[:, :2] / pts[:, 2:], atol=1e-5)


def test_scaled_intrinsics_keep_rays():
    full = Intrinsics.kitti()
    half = full.scaled(621, 187)
    ray_full = full.pixel_rays(np.array([1000.0]), np.array([300.0]))
    ray_half = half.pixel_rays(np.array([1000.0 * 621 / 1242]), np.array([300.0 * 187 / 375]))
    np.testing.assert_allclose(ray_full, ray_half, atol=1e-9)


@pytest.mark.parametrize("kwargs", [dict(width=0, height=10, K=(1, 0, 0, 0, 1, 0, 0, 0, 1)),
                                    dict(width=10, height=10, K=(0, 0, 0, 0, 1, 0, 0, 0, 1))])
def test_bad_intrinsics_are_named(kwargs):
    with pytest.raises(InputError, match="camera"):
        Intrinsics(**kwargs)
