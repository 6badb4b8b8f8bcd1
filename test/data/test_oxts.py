"""KITTI OXTS: real packets against pykitti's poses, strict reading, and a synthetic drive read back exactly."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from repo_paths import FIXTURES

from panoptic_perception.data import kitti, oxts
from panoptic_perception.errors import InputError

FIXTURE = FIXTURES / "oxts" / "2011_09_26_two_packets"
KITTI_CALIB = FIXTURES / "kitti" / "2011_09_26"
REFERENCE = json.loads((FIXTURE / "pykitti_reference.json").read_text())


def _devkit_relative(t_w_imu: list) -> np.ndarray:
    """The devkit's poses inv(T_0) T_k from pykitti's T_w_imu (which subtracts the first position only)."""
    poses = np.array(t_w_imu)
    return np.stack([np.linalg.inv(poses[0]) @ p for p in poses])


def _rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


# ---------------------------------------------------------------------------- reading real packets
def test_real_packets_parse_into_typed_records():
    sequence = oxts.read_oxts(FIXTURE / "oxts")
    assert len(sequence) == 2
    a, b = sequence.packets
    assert (a.lat, a.lon, a.alt) == (49.015003823272, 8.4342971002335, 116.43032836914)
    assert (a.roll, a.pitch, a.yaw) == (0.035752, 0.00903, -2.6087069803847)
    assert (b.pitch, b.vel_accuracy) == (1e-05, 0.02)
    assert (a.navstat, a.numsats, a.posmode, a.velmode, a.orimode) == (4, 11, 6, 6, 6)
    assert all(isinstance(getattr(a, name), int) for name in oxts.INTEGER_FIELDS)
    assert tuple(f.name for f in fields(oxts.OxtsPacket)) == oxts.OXTS_FIELDS and len(oxts.OXTS_FIELDS) == 30
    assert sequence.stamps_ns[0] == kitti.parse_timestamp_ns("2011-09-26 13:02:25.964389445")


@pytest.mark.parametrize("order", ["AB", "BA"])
def test_imu_poses_equal_the_reference_implementation(order, tmp_path):
    packets = list(oxts.read_oxts(FIXTURE / "oxts").packets)
    if order == "BA":
        packets.reverse()  # the Mercator scale comes from the other packet's latitude now
    expected = _devkit_relative(REFERENCE[f"T_w_imu_{order}"])
    poses = oxts.imu_poses(packets)
    assert poses.shape == (2, 4, 4)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(poses[:, :3, :3], expected[:, :3, :3], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(poses[:, :3, 3], expected[:, :3, 3], rtol=1e-9, atol=1e-7)
    assert np.linalg.norm(poses[1, :3, 3]) > 900  # the packets are ~930 m apart: not a trivial case


def test_vehicle_poses_go_through_the_imu_calibration():
    packets = oxts.read_oxts(FIXTURE / "oxts").packets
    calibration = kitti.KittiCalibration.read(KITTI_CALIB)
    vehicle_from_velo = np.eye(4)
    vehicle_from_velo[2, 3] = kitti.VELODYNE_HEIGHT_M
    vehicle_from_imu = vehicle_from_velo @ np.array(REFERENCE["T_velo_imu"])
    np.testing.assert_allclose(calibration.vehicle_from_imu(), vehicle_from_imu, atol=1e-15)
    expected = [vehicle_from_imu @ p @ np.linalg.inv(vehicle_from_imu)
                for p in _devkit_relative(REFERENCE["T_w_imu_AB"])]
    poses = oxts.vehicle_poses(packets, calibration)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)  # odom is the vehicle at the first packet
    np.testing.assert_allclose(poses, np.stack(expected), rtol=1e-9, atol=1e-7)
    # The IMU sits ~1 m from the vehicle origin: turning 79 degrees moves the vehicle differently.
    assert np.linalg.norm(poses[1, :3, 3] - oxts.imu_poses(packets)[1, :3, 3]) > 0.5


def test_the_imu_of_kitti_sits_behind_left_and_above_the_ground_origin():
    v = kitti.KittiCalibration.read(KITTI_CALIB).vehicle_from_imu()
    np.testing.assert_allclose(v[:3, 3], [-0.81, 0.32, 0.93], atol=0.02)


# ---------------------------------------------------------------------------- conversions
def test_mercator_round_trip_and_rpy_round_trip():
    scale = oxts.mercator_scale(49.011)
    for lat, lon in [(49.011, 8.4236), (49.2, 8.1), (48.9, 8.9)]:
        x, y = oxts.latlon_to_mercator(lat, lon, scale)
        back = oxts.mercator_to_latlon(x, y, scale)
        assert back == pytest.approx((lat, lon), abs=1e-12)
    for rpy in [(0.0, 0.0, 0.0), (0.035752, 0.00903, -2.6087069803847), (-0.3, 1.2, 3.0)]:
        r = oxts.rotation_from_rpy(*rpy)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-15)
        assert oxts.rpy_from_rotation(r) == pytest.approx(rpy, abs=1e-12)
    # Heading 0 is east, counter-clockwise positive: yaw 90 degrees points the IMU's x north.
    np.testing.assert_allclose(oxts.rotation_from_rpy(0, 0, math.pi / 2) @ [1, 0, 0], [0, 1, 0], atol=1e-15)


def test_write_and_read_back_is_exact(tmp_path):
    sequence = oxts.read_oxts(FIXTURE / "oxts")
    third = replace(sequence.packets[1], lat=49.0 + 1 / 3, yaw=-math.pi / 7, numsats=9)
    again = oxts.OxtsSequence(sequence.stamps_ns + (sequence.stamps_ns[1] + 10_000_000,),
                              sequence.packets + (third,))
    oxts.write_oxts(tmp_path / "oxts", again)
    assert (tmp_path / "oxts" / "dataformat.txt").read_text().startswith("lat:")
    assert oxts.read_oxts(tmp_path / "oxts") == again
    assert oxts.read_drive_oxts(tmp_path) == again
    assert oxts.read_drive_oxts(tmp_path / "nothing_here") is None


# ---------------------------------------------------------------------------- bad input
def _copy_fixture(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE / "oxts", tmp_path / "oxts")
    return tmp_path / "oxts"


def _corrupt(path: Path, edit) -> None:
    tokens = path.read_text().split()
    path.write_text(" ".join(edit(tokens)) + "\n")


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t[:-1], "expected 30 numbers"),
    (lambda t: t[:17], "got 17"),
    (lambda t: t + ["0"], "got 31"),
    (lambda t: t[:3] + ["0.0357x"] + t[4:], "field 'roll' is not a number: '0.0357x'"),
    (lambda t: ["nan"] + t[1:], "field 'lat' is not finite"),
    (lambda t: t[:-5] + ["4.5"] + t[-4:], "field 'navstat' must be an integer"),
])
def test_bad_packet_lines_name_file_line_and_field(tmp_path, edit, needle):
    folder = _copy_fixture(tmp_path)
    bad = folder / "data" / "0000000001.txt"
    _corrupt(bad, edit)
    with pytest.raises(InputError, match=needle) as info:
        oxts.read_oxts(folder)
    assert f"{bad} line 1" in str(info.value)


def test_timestamp_count_must_match_the_packets(tmp_path):
    folder = _copy_fixture(tmp_path)
    stamps = folder / "timestamps.txt"
    stamps.write_text(stamps.read_text().splitlines()[0] + "\n")
    with pytest.raises(InputError, match="1 timestamps for 2 packets") as info:
        oxts.read_oxts(folder)
    assert str(stamps) in str(info.value)


@pytest.mark.parametrize("damage, needle", [
    (lambda f: (f / "data" / "0000000001.txt").rename(f / "data" / "0000000002.txt"),
     "expected 0000000001.txt next, found 0000000002.txt"),
    (lambda f: (f / "data" / "0000000000.txt").write_text("1 2\n\n3 4\n"), "expected one packet line, got 2"),
    (lambda f: (f / "timestamps.txt").unlink(), "timestamps file not found"),
    (lambda f: (f / "timestamps.txt").write_text("2011-09-26 13:02:26.0\n2011-09-26 13:02:25.0\n"),
     "line 2: timestamp does not increase"),
    (lambda f: (f / "timestamps.txt").write_text("2011-09-26 13:02:26.0\nyesterday\n"), "line 2"),
    (lambda f: shutil.rmtree(f / "data"), "has no data/ folder"),
])
def test_broken_folders_are_clear_errors(tmp_path, damage, needle):
    folder = _copy_fixture(tmp_path)
    damage(folder)
    with pytest.raises(InputError, match=needle):
        oxts.read_oxts(folder)


def test_empty_data_folder_and_empty_packet_list(tmp_path):
    (tmp_path / "oxts" / "data").mkdir(parents=True)
    (tmp_path / "oxts" / "timestamps.txt").write_text("")
    with pytest.raises(InputError, match="has no packets"):
        oxts.read_oxts(tmp_path / "oxts")
    with pytest.raises(InputError, match="no OXTS packets"):
        oxts.imu_poses([])


def test_vehicle_poses_need_the_imu_calibration(tmp_path):
    for name in (kitti.CAM_TO_CAM, kitti.VELO_TO_CAM):
        shutil.copy(KITTI_CALIB / name, tmp_path / name)
    calibration = kitti.KittiCalibration.read(tmp_path)
    with pytest.raises(InputError, match="no calib_imu_to_velo.txt"):
        oxts.vehicle_poses(oxts.read_oxts(FIXTURE / "oxts").packets, calibration)


# ---------------------------------------------------------------------------- synthetic drive
@pytest.fixture(scope="module")
def synth_drive(tmp_path_factory):
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter

    writer = DriveWriter(tmp_path_factory.mktemp("synth"), small_config(48, 16), seed=3)
    assert writer.write(5) == 5
    return writer


def test_synthetic_oxts_read_back_gives_the_worlds_ego_poses(synth_drive):
    world = synth_drive.world
    sequence = oxts.read_drive_oxts(synth_drive.drive)
    assert sequence is not None and len(sequence) == 5
    drive = kitti.read_drive(synth_drive.drive)
    assert list(sequence.stamps_ns) == drive.timestamps_ns["02"]  # one packet per image, same stamps
    poses = oxts.vehicle_poses(sequence.packets, drive.calibration)
    start = world.ego_pose(0)
    for k, pose in enumerate(poses):
        truth = np.linalg.inv(start) @ world.ego_pose(k)
        assert np.abs(pose[:3, 3] - truth[:3, 3]).max() < 1e-6  # within a micrometre (asked: 1 cm)
        assert _rotation_angle_deg(pose, truth) < 1e-6  # degrees (asked: 0.01)
    assert poses[-1][0, 3] == pytest.approx(world.config.speed_mps * 4 / world.config.frame_rate_hz, abs=1e-6)


def test_synthetic_packets_are_consistent_kitti_packets(synth_drive):
    from panoptic_perception.data.synth import ego

    sequence = oxts.read_drive_oxts(synth_drive.drive)
    speed = synth_drive.world.config.speed_mps
    first = sequence.packets[0]
    assert (first.lat, first.lon) == (ego.ORIGIN_LAT_DEG, ego.ORIGIN_LON_DEG)
    for p in sequence.packets:
        assert p.yaw == pytest.approx(ego.HEADING_RAD, abs=1e-12) and abs(p.roll) + abs(p.pitch) < 1e-12
        assert (p.vf, p.vl, p.vu) == pytest.approx((speed, 0.0, 0.0), abs=1e-9)
        assert math.hypot(p.vn, p.ve) == pytest.approx(speed) and math.atan2(p.vn, p.ve) == pytest.approx(p.yaw)
        assert (p.ax, p.ay, p.az) == pytest.approx((0.0, 0.0, ego.GRAVITY_MPS2), abs=1e-9)
        assert (p.wx, p.wy, p.wz) == (0.0, 0.0, 0.0)
    # Moving along the heading (0.6 rad north of east) raises both latitude and longitude.
    assert sequence.packets[-1].lat > first.lat and sequence.packets[-1].lon > first.lon
    assert (synth_drive.drive / "oxts" / "dataformat.txt").is_file()
    meta = json.loads((synth_drive.drive / "gt" / "meta.json").read_text())
    assert meta["oxts"]["origin_lat_deg"] == ego.ORIGIN_LAT_DEG
