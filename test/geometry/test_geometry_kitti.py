"""A real KITTI calibration (raw 2011_09_26, test/fixtures/kitti): ground pixels land where a hand
calculation through KITTI's own matrix chain puts them."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from repo_paths import FIXTURES

from panoptic_perception.geometry.camera import Camera, Extrinsics, Intrinsics
from panoptic_perception.geometry.grid import load_grid_config
from panoptic_perception.geometry.projection import GroundProjector
from panoptic_perception.labels import load_label_space

CALIB = FIXTURES / "kitti" / "2011_09_26"
VELODYNE_HEIGHT_M = 1.73  # KITTI setup: the Velodyne sits 1.73 m above the ground


def _read(name: str) -> dict:
    values = {}
    for line in (CALIB / name).read_text().splitlines():
        key, _, rest = line.partition(":")
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()])
        except ValueError:
            continue  # calib_time
    return values


@pytest.fixture(scope="module")
def kitti():
    if not CALIB.is_dir():
        pytest.skip(f"KITTI calibration fixture missing: {CALIB}")
    cam = _read("calib_cam_to_cam.txt")
    velo = _read("calib_velo_to_cam.txt")
    P = cam["P_rect_02"].reshape(3, 4)
    R_rect = cam["R_rect_00"].reshape(3, 3)
    # cam2 (rectified) <- velodyne: x_cam2 = R_rect (R x_velo + T) + K^-1 P[:, 3]
    cam2_from_velo = np.eye(4)
    cam2_from_velo[:3, :3] = R_rect @ velo["R"].reshape(3, 3)
    cam2_from_velo[:3, 3] = R_rect @ velo["T"] + np.linalg.solve(P[:, :3], P[:, 3])
    vehicle_from_velo = np.eye(4)
    vehicle_from_velo[2, 3] = VELODYNE_HEIGHT_M  # vehicle frame: velodyne axes, origin on the ground
    vehicle_from_cam2 = vehicle_from_velo @ np.linalg.inv(cam2_from_velo)
    intrinsics = Intrinsics(1242, 375, tuple(P[:, :3].ravel()), D=(0.0,) * 5, P=tuple(P.ravel()))
    return P, vehicle_from_cam2, Camera(intrinsics, Extrinsics.from_matrix(vehicle_from_cam2))


def _hand_ground_point(P: np.ndarray, vehicle_from_cam2: np.ndarray, u: float, v: float) -> np.ndarray:
    ray_cam = np.linalg.solve(P[:, :3], np.array([u, v, 1.0]))
    ray = vehicle_from_cam2[:3, :3] @ ray_cam
    origin = vehicle_from_cam2[:3, 3]
    s = -origin[2] / ray[2]
    return origin[:2] + s * ray[:2]


def test_kitti_extrinsics_put_the_camera_where_the_setup_says(kitti):
    _, _, camera = kitti
    ext = camera.extrinsics
    assert ext.height_m == pytest.approx(1.65, abs=0.02)  # KITTI's documented camera height
    assert abs(ext.pitch_deg) < 2.0 and abs(ext.roll_deg) < 2.0 and abs(ext.yaw_deg) < 2.0
    assert ext.x_m == pytest.approx(0.27, abs=0.02)  # camera 0.27 m ahead of the Velodyne
    np.testing.assert_allclose(camera.extrinsics.matrix(), kitti[1], atol=1e-9)


@pytest.mark.parametrize("u, v", [(609.5593, 222.854), (300.0, 260.0), (1000.0, 330.0)])
def test_ground_pixel_projects_to_the_hand_computed_point(kitti, u, v):
    P, vehicle_from_cam2, camera = kitti
    expected = _hand_ground_point(P, vehicle_from_cam2, u, v)
    xy, hit = camera.ground_points(np.array([u]), np.array([v]))
    assert hit[0]
    np.testing.assert_allclose(xy[0], expected, atol=1e-6)
    if u == 609.5593:
        # 50 px below the principal point: h / tan(depression), the depression being the pixel's
        # angle below the optical axis plus the camera's own pitch (KITTI's is slightly upwards)
        ext = camera.extrinsics
        depression = np.arctan(50.0 / 721.5377) + np.radians(ext.pitch_deg)
        assert expected[0] - ext.x_m == pytest.approx(ext.height_m / np.tan(depression), rel=0.01)


def test_car_bottom_edge_on_a_kitti_frame_lands_at_the_hand_computed_range(kitti):
    P, vehicle_from_cam2, camera = kitti
    labels = load_label_space("cityscapes")
    config = replace(load_grid_config(), surface_height_m={})
    road, car = labels.id_of("road"), labels.id_of("car")
    bottom_row, u0, u1 = 240, 580, 640  # 1.7 m wide at 20 m: a car's mask ending at row 240, road below it
    seg = np.zeros((375, 1242), dtype=np.int32)
    seg[180:, :] = 1  # road everywhere below the horizon
    seg[200:bottom_row + 1, u0:u1] = 2
    outputs = {"segment_map": torch.from_numpy(seg), "segment_category": torch.tensor([road, car]),
               "segment_is_thing": torch.tensor([False, True]), "segment_score": torch.tensor([1.0, 0.8]),
               "segment_valid": torch.tensor([True, True])}
    obj = GroundProjector(camera, config, labels).project(outputs).objects[0]
    # the contact is the bottom edge of the lowest pixel: row + 0.5, centre column
    near = _hand_ground_point(P, vehicle_from_cam2, (u0 + u1 - 1) / 2, bottom_row + 0.5)
    fp = obj.footprint
    d = near - np.array([fp.x_m, fp.y_m])
    along = d @ np.array([np.cos(fp.heading_rad), np.sin(fp.heading_rad)])
    across = d @ np.array([-np.sin(fp.heading_rad), np.cos(fp.heading_rad)])
    # the hand-computed contact lies on the footprint's near face, midway along it
    assert along == pytest.approx(-fp.length_m / 2, abs=0.05)
    assert abs(across) < 0.1  # the 1.8 m width prior widens the 1.7 m seen face to one side
    assert near[0] == pytest.approx(20.19, abs=0.01)  # the hand chain itself, as a number
    assert obj.score == pytest.approx(0.8)
