"""KITTI raw reader on a fixture with KITTI's real 2011_09_26 calibration, and calibration round trips."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from repo_paths import FIXTURES

from panoptic_perception.data import kitti
from panoptic_perception.errors import InputError
from panoptic_perception.geometry.camera import Camera, Extrinsics, Intrinsics

FIXTURE = FIXTURES / "kitti" / "2011_09_26"
DRIVE = FIXTURE / "2011_09_26_drive_0001_sync"


def test_fixture_drive_parses():
    drive = kitti.read_drive(DRIVE)
    assert (drive.date, drive.drive, drive.cameras) == ("2011_09_26", 1, ["02"])
    assert [p.name for p in drive.images["02"]] == ["0000000000.png", "0000000001.png"]
    stamps = drive.timestamps_ns["02"]
    assert kitti.format_timestamp_ns(stamps[0]) == "2011-09-26 13:02:25.964389445"
    assert 0.09e9 < stamps[1] - stamps[0] < 0.11e9  # 10 Hz


def test_fixture_camera_is_kittis_rectified_camera_2():
    cam = kitti.camera_from_calibration(FIXTURE, "02")
    assert (cam.width, cam.height) == (1242, 375)
    np.testing.assert_allclose(
        cam.intrinsics.camera_matrix, [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]]
    )
    # KITTI's setup: colour cameras 1.65 m above the road, ~0.27 m ahead of the Velodyne.
    assert cam.extrinsics.height_m == pytest.approx(1.65, abs=0.02)
    assert cam.extrinsics.x_m == pytest.approx(0.27, abs=0.01)
    assert abs(cam.extrinsics.pitch_deg) < 2 and abs(cam.extrinsics.roll_deg) < 2


def test_camera_model_projects_velodyne_points_like_kittis_own_chain():
    calib = kitti.KittiCalibration.read(FIXTURE)
    cam = calib.camera("02")
    rng = np.random.default_rng(0)
    velo = np.c_[rng.uniform(5, 60, 50), rng.uniform(-10, 10, 50), rng.uniform(-1.5, 2, 50)]
    p = calib.projection("02")
    r_rect = np.eye(4)
    r_rect[:3, :3] = calib.cam_to_cam["R_rect_00"].reshape(3, 3)
    homog = p @ r_rect @ calib.velo_to_cam0() @ np.c_[velo, np.ones(len(velo))].T  # KITTI devkit chain
    expected = (homog[:2] / homog[2]).T
    uv, depth = cam.project_vehicle_points(velo + [0.0, 0.0, kitti.VELODYNE_HEIGHT_M])
    assert (depth > 0).all()
    # KITTI's 7-digit rotations are orthonormal to ~1e-7 only, hence ~1e-4 px, not exact equality.
    np.testing.assert_allclose(uv, expected, atol=1e-3)


@pytest.mark.parametrize("camera_id", ["00", "02", "03"])
def test_written_calibration_round_trips_to_the_same_camera(tmp_path, camera_id):
    intr = Intrinsics.pinhole(640, 200, 400.5, 401.25, 321.0, 99.5)
    camera = Camera(
        intr, Extrinsics(x_m=0.3, y_m=-0.1, height_m=1.7, roll_deg=-1.2, pitch_deg=3.5, yaw_deg=0.4)
    )
    kitti.write_calibration(tmp_path, camera, camera_id)
    back = kitti.camera_from_calibration(tmp_path, camera_id)
    assert back.intrinsics == intr
    np.testing.assert_allclose(back.extrinsics.matrix(), camera.extrinsics.matrix(), atol=1e-9)
    keys = kitti.read_calib_file(tmp_path / kitti.CAM_TO_CAM)
    for c in kitti.CAMERAS:
        for k in ("S", "K", "D", "R", "T", "S_rect", "R_rect", "P_rect"):
            assert f"{k}_{c}" in keys
    assert set(kitti.read_calib_file(tmp_path / kitti.VELO_TO_CAM)) == {
        "calib_time",
        "R",
        "T",
        "delta_f",
        "delta_c",
    }


def test_timestamps_round_trip_with_nanoseconds(tmp_path):
    stamps = [1317042145964389445, 1317042146068074609, 1317042146000000001]
    kitti.write_timestamps(tmp_path / "t.txt", stamps)
    assert kitti.read_timestamps(tmp_path / "t.txt") == stamps


def test_missing_calibration_names_the_file(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "2011_09_26")
    (tmp_path / "2011_09_26" / kitti.VELO_TO_CAM).unlink()
    with pytest.raises(InputError, match="calib_velo_to_cam.txt"):
        kitti.read_drive(tmp_path / "2011_09_26" / DRIVE.name)


def test_corrupt_projection_names_file_and_key(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "d")
    path = tmp_path / "d" / kitti.CAM_TO_CAM
    text = path.read_text().replace("P_rect_02: 7.215377e+02 0.000000e+00", "P_rect_02: 7.215377e+02")
    path.write_text(text)
    with pytest.raises(InputError, match="P_rect_02.*12 numbers"):
        kitti.camera_from_calibration(tmp_path / "d", "02")


def test_bad_timestamp_names_file_and_line(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "2011_09_26")
    stamps = tmp_path / "2011_09_26" / DRIVE.name / "image_02" / "timestamps.txt"
    stamps.write_text("2011-09-26 13:02:25.964389445\n2011-09-26 25:99:00.1\n")
    with pytest.raises(InputError, match="timestamps.txt line 2"):
        kitti.read_drive(tmp_path / "2011_09_26" / DRIVE.name)


def test_unknown_camera_is_rejected():
    with pytest.raises(InputError, match="camera must be one of"):
        kitti.camera_from_calibration(FIXTURE, "07")
