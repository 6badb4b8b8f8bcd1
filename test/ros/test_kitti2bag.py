"""kitti2bag on a tiny KITTI raw drive written here with KITTI's real 2011_09_26 calibration."""
# ruff: noqa: E501  (the calibration files below are KITTI's, verbatim, one long line per key)
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from repo_paths import FIXTURES

pytest.importorskip("rosbag", reason="ROS Python packages not installed (run `make setup`)")

import cv2  # noqa: E402

from panoptic_perception.data.kitti import KittiCalibration, parse_timestamp_ns  # noqa: E402
from panoptic_perception.errors import ConfigError, InputError  # noqa: E402
from panoptic_perception.ros import bag as kitti2bag  # noqa: E402
from panoptic_perception.ros.conversions import quaternion_from_matrix  # noqa: E402

# KITTI raw 2011_09_26 calibration, verbatim (cameras 00 and 02 only; 01/03 are not used here).
CAM_TO_CAM = """calib_time: 09-Jan-2012 13:57:47
corner_dist: 9.950000e-02
S_00: 1.392000e+03 5.120000e+02
K_00: 9.842439e+02 0.000000e+00 6.900000e+02 0.000000e+00 9.808141e+02 2.331966e+02 0.000000e+00 0.000000e+00 1.000000e+00
D_00: -3.728755e-01 2.037299e-01 2.219027e-03 1.383707e-03 -7.233722e-02
R_00: 1.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00
T_00: 2.573699e-16 -1.059758e-16 1.614870e-16
S_rect_00: 1.242000e+03 3.750000e+02
R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
P_rect_00: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
S_02: 1.392000e+03 5.120000e+02
K_02: 9.597910e+02 0.000000e+00 6.960217e+02 0.000000e+00 9.569251e+02 2.241806e+02 0.000000e+00 0.000000e+00 1.000000e+00
D_02: -3.691481e-01 1.968681e-01 1.353473e-03 5.677587e-04 -6.770705e-02
R_02: 9.999758e-01 -5.267463e-03 -4.552439e-03 5.251945e-03 9.999804e-01 -3.413835e-03 4.570332e-03 3.389843e-03 9.999838e-01
T_02: 5.956621e-02 2.900141e-04 2.577209e-03
S_rect_02: 1.242000e+03 3.750000e+02
R_rect_02: 9.998817e-01 1.511453e-02 -2.841595e-03 -1.511724e-02 9.998853e-01 -9.338510e-04 2.827154e-03 9.766976e-04 9.999955e-01
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
"""
VELO_TO_CAM = """calib_time: 15-Mar-2012 11:37:16
R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 9.998621e-01 7.523790e-03 1.480755e-02
T: -4.069766e-03 -7.631618e-02 -2.717806e-01
delta_f: 0.000000e+00 0.000000e+00
delta_c: 0.000000e+00 0.000000e+00
"""
IMU_TO_VELO = """calib_time: 25-May-2012 16:47:16
R: 9.999976e-01 7.553071e-04 -2.035826e-03 -7.854027e-04 9.998898e-01 -1.482298e-02 2.024406e-03 1.482454e-02 9.998881e-01
T: -8.086759e-01 3.195559e-01 -7.997231e-01
"""
TIMESTAMPS = ["2011-09-26 13:02:25.964389445", "2011-09-26 13:02:26.068750267",
              "2011-09-26 13:02:26.172746089", "2011-09-26 13:02:26.276680840"]
W, H = 1242, 375


def _frame(i: int) -> np.ndarray:
    """A recognisable RGB frame: gradient plus a frame-specific block (channels distinguishable)."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
    rgb[..., 1] = np.linspace(0, 255, H, dtype=np.uint8)[:, None]
    rgb[20:60, 40 * i:40 * i + 40, 2] = 200
    return rgb


def _write_drive(root: Path, truncate: int | None = None, camera: str = "02") -> Path:
    date = root / "2011_09_26"
    drive = date / "2011_09_26_drive_0005_sync"
    data = drive / f"image_{camera}" / "data"
    data.mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM)
    (date / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
    (date / "calib_imu_to_velo.txt").write_text(IMU_TO_VELO)
    for i in range(len(TIMESTAMPS)):
        ok, png = cv2.imencode(".png", _frame(i)[..., ::-1])
        assert ok
        payload = png.tobytes()
        if i == truncate:
            payload = payload[: len(payload) // 3]
        (data / f"{i:010d}.png").write_bytes(payload)
    (drive / f"image_{camera}" / "timestamps.txt").write_text("\n".join(TIMESTAMPS) + "\n")
    return drive


@pytest.fixture(scope="module")
def drive_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti")
    drive = _write_drive(root)
    out = root / "out" / "drive.bag"
    summary = kitti2bag.write_kitti_bag(drive, out)
    return drive, out, summary


def _messages(bag_path: Path):
    import rosbag

    with rosbag.Bag(str(bag_path)) as bag:
        return [(topic, msg, t) for topic, msg, t in bag.read_messages()]


def test_bag_has_every_frame_stamped_from_timestamps(drive_bag):
    _, out, summary = drive_bag
    assert summary.frames_written == 4 and not summary.skipped
    assert summary.tf_written == 0  # this drive has no oxts/: converted all the same, without /tf
    assert not out.with_name(out.name + ".partial").exists()
    messages = _messages(out)
    images = [m for topic, m, _ in messages if topic == "/kitti/camera_color_left/image_rect_color"]
    infos = [m for topic, m, _ in messages if topic == "/kitti/camera_color_left/camera_info"]
    assert len(images) == len(infos) == 4
    expected_ns = [parse_timestamp_ns(t) for t in TIMESTAMPS]
    assert [m.header.stamp.to_nsec() for m in images] == expected_ns
    assert [m.header.stamp.to_nsec() for m in infos] == expected_ns  # exact sync works
    bag_times = [t.to_nsec() for topic, _, t in messages if topic.endswith("image_rect_color")]
    assert bag_times == expected_ns
    for i, img in enumerate(images):
        assert img.encoding == "rgb8" and img.header.frame_id == "camera_color_left"
        assert (img.width, img.height, img.step) == (W, H, 3 * W)
        np.testing.assert_array_equal(np.frombuffer(img.data, np.uint8).reshape(H, W, 3), _frame(i))


def test_camera_info_is_the_rectified_calibration(drive_bag):
    _, out, _ = drive_bag
    info = next(m for topic, m, _ in _messages(out) if topic.endswith("camera_info"))
    p_rect_02 = [7.215377e+02, 0.0, 6.095593e+02, 4.485728e+01, 0.0, 7.215377e+02, 1.728540e+02,
                 2.163791e-01, 0.0, 0.0, 1.0, 2.745884e-03]
    np.testing.assert_allclose(info.P, p_rect_02, rtol=1e-9)
    np.testing.assert_allclose(np.array(info.K).reshape(3, 3), np.array(p_rect_02).reshape(3, 4)[:, :3])
    assert list(info.D) == [0.0] * 5 and info.distortion_model == "plumb_bob"
    np.testing.assert_allclose(info.R, np.eye(3).ravel())
    assert (info.width, info.height) == (W, H)
    assert info.header.frame_id == "camera_color_left"
    from panoptic_perception.ros.conversions import camera_info_to_intrinsics

    intrinsics = camera_info_to_intrinsics(info)
    assert intrinsics.is_rectified
    assert intrinsics.camera_matrix[0, 0] == pytest.approx(721.5377)


def test_tf_static_is_latched_and_matches_the_calibration(drive_bag):
    import rosbag

    drive, out, _ = drive_bag
    with rosbag.Bag(str(out)) as bag:
        records = list(bag.read_messages(topics=["/tf_static"], return_connection_header=True))
    (topic, msg, t, header), = records
    assert header.get("latching") in ("1", b"1")
    (tf,) = msg.transforms
    assert (tf.header.frame_id, tf.child_frame_id) == ("base_link", "camera_color_left")
    assert tf.header.stamp.to_nsec() == parse_timestamp_ns(TIMESTAMPS[0])
    expected = KittiCalibration.read(drive.parent).vehicle_from_camera("02")
    tr = tf.transform.translation
    np.testing.assert_allclose([tr.x, tr.y, tr.z], expected[:3, 3], atol=1e-9)
    # Physically: KITTI's colour camera is ~1.65 m up and ~0.27 m ahead of the Velodyne.
    assert tr.z == pytest.approx(1.65, abs=0.03) and tr.x == pytest.approx(0.27, abs=0.03)
    q = tf.transform.rotation
    x, y, z, w = q.x, q.y, q.z, q.w
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    # KITTI's rotations carry 7 digits; the tf holds the nearest exact rotation.
    np.testing.assert_allclose(rotation, expected[:3, :3], atol=1e-6)
    # The optical axis (+z) looks along the vehicle's +x.
    assert rotation[:, 2] @ np.array([1.0, 0.0, 0.0]) > 0.99


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (3.0, 0.5, -2.0), (179.0, 10.0, 90.0),
                                    (-90.0, 45.0, 180.0)])
def test_quaternion_from_matrix_round_trips(angles):
    from panoptic_perception.geometry.camera import Extrinsics

    rotation = Extrinsics(yaw_deg=angles[0], pitch_deg=angles[1], roll_deg=angles[2]).rotation()
    x, y, z, w = quaternion_from_matrix(rotation)
    back = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    np.testing.assert_allclose(back, rotation, atol=1e-12)


def test_truncated_image_is_skipped_and_the_rest_written(tmp_path):
    drive = _write_drive(tmp_path, truncate=2)
    warnings = []
    out = tmp_path / "t.bag"
    summary = kitti2bag.write_kitti_bag(drive, out, warn=warnings.append)
    assert summary.frames_written == 3
    assert len(summary.skipped) == 1 and summary.skipped[0].startswith("0000000002.png")
    assert any("0000000002.png" in w and "truncated" in w for w in warnings)
    stamps = [m.header.stamp.to_nsec() for topic, m, _ in _messages(out)
              if topic.endswith("image_rect_color")]
    assert stamps == [parse_timestamp_ns(TIMESTAMPS[i]) for i in (0, 1, 3)]


def test_options_camera_frame_namespace_and_max_frames(tmp_path):
    drive = _write_drive(tmp_path)
    out = tmp_path / "o.bag"
    summary = kitti2bag.write_kitti_bag(drive, out, camera="2", frame_id="cam_front_optical",
                                        vehicle_frame="ego", namespace="sensors", max_frames=2,
                                        compression="lz4")
    assert summary.frames_written == 2
    messages = _messages(out)
    topics = {topic for topic, _, _ in messages}
    assert topics == {"/tf_static", "/sensors/camera_color_left/image_rect_color",
                      "/sensors/camera_color_left/camera_info"}
    tf = next(m for topic, m, _ in messages if topic == "/tf_static").transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == ("ego", "cam_front_optical")


@pytest.mark.parametrize("kwargs, error, needle", [
    ({"camera": "05"}, ConfigError, "--camera must be one of"),
    ({"camera": "03"}, InputError, "has no image_03/"),
    ({"max_frames": 0}, ConfigError, "--max-frames must be >= 1"),
    ({"vehicle_frame": "/base_link"}, ConfigError, "--vehicle-frame"),
    ({"frame_id": "base_link"}, ConfigError, "--frame-id must differ"),
])
def test_bad_options_are_clear_errors(tmp_path, kwargs, error, needle):
    drive = _write_drive(tmp_path)
    with pytest.raises(error, match=needle):
        kitti2bag.write_kitti_bag(drive, tmp_path / "x.bag", **kwargs)
    assert not (tmp_path / "x.bag").exists()


def test_all_images_unusable_is_an_error_and_leaves_no_bag(tmp_path):
    drive = _write_drive(tmp_path)
    for png in (drive / "image_02" / "data").glob("*.png"):
        png.write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match="none of the 4 images"):
        kitti2bag.write_kitti_bag(drive, tmp_path / "x.bag", warn=lambda _: None)
    assert not list(tmp_path.glob("x.bag*"))


# ---------------------------------------------------------------------------- ego motion (/tf from oxts/)
OXTS_FIXTURE = FIXTURES / "oxts" / "2011_09_26_two_packets" / "oxts"


@pytest.fixture(scope="module")
def synth_bag(tmp_path_factory):
    """A tiny synthetic drive (exact ego trajectory in oxts/) and its bag."""
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter

    root = tmp_path_factory.mktemp("synth")
    writer = DriveWriter(root, small_config(48, 16), seed=11)
    assert writer.write(6) == 6
    out = root / "synth.bag"
    return writer, out, kitti2bag.write_kitti_bag(writer.drive, out)


def _tf_messages(bag_path: Path):
    return [(msg, t) for topic, msg, t in _messages(bag_path) if topic == "/tf"]


def test_tf_has_odom_to_vehicle_at_every_oxts_stamp(synth_bag):
    from panoptic_perception.data import oxts
    from panoptic_perception.data.kitti import KittiCalibration
    from panoptic_perception.ros.conversions import transform_to_matrix

    writer, out, summary = synth_bag
    sequence = oxts.read_drive_oxts(writer.drive)
    expected = oxts.vehicle_poses(sequence.packets, KittiCalibration.read(writer.drive.parent))
    records = _tf_messages(out)
    assert summary.tf_written == len(records) == len(sequence) == 6
    world = writer.world
    for k, ((msg, t), stamp_ns, pose) in enumerate(zip(records, sequence.stamps_ns, expected)):
        (tf,) = msg.transforms
        assert (tf.header.frame_id, tf.child_frame_id) == ("odom", "base_link")
        assert tf.header.stamp.to_nsec() == t.to_nsec() == stamp_ns
        matrix = transform_to_matrix(tf.transform)
        np.testing.assert_allclose(matrix, pose, atol=1e-9)
        # ... which is the synthetic world's own ego motion since frame 0 (straight along x).
        truth = np.linalg.inv(world.ego_pose(0)) @ world.ego_pose(k)
        np.testing.assert_allclose(matrix, truth, atol=1e-6)
    # The image stamps are the OXTS stamps here, so every image has its pose.
    image_stamps = [m.header.stamp.to_nsec() for topic, m, _ in _messages(out) if topic.endswith("image_rect_color")]
    assert image_stamps == list(sequence.stamps_ns)


def test_max_frames_keeps_the_oxts_stamps_that_cover_the_images(synth_bag, tmp_path):
    writer, _, _ = synth_bag
    out = tmp_path / "short.bag"
    summary = kitti2bag.write_kitti_bag(writer.drive, out, max_frames=2, odom_frame="map_odom",
                                        vehicle_frame="ego")
    records = _tf_messages(out)
    # Images at stamps 0 and 1; OXTS up to the first stamp past the last image (here: 2).
    assert summary.frames_written == 2 and summary.tf_written == len(records) == 3
    assert {(r.transforms[0].header.frame_id, r.transforms[0].child_frame_id) for r, _ in records} == {
        ("map_odom", "ego")}


def test_oxts_needs_the_imu_calibration_and_odom_frame_must_be_valid(tmp_path):
    drive = _write_drive(tmp_path)
    shutil.copytree(OXTS_FIXTURE, drive / "oxts")
    with pytest.raises(ConfigError, match="--odom-frame"):
        kitti2bag.write_kitti_bag(drive, tmp_path / "x.bag", odom_frame="base_link")
    with pytest.raises(ConfigError, match="--frame-id must differ"):
        kitti2bag.write_kitti_bag(drive, tmp_path / "x.bag", frame_id="odom")
    (drive.parent / "calib_imu_to_velo.txt").unlink()
    with pytest.raises(InputError, match="has oxts/ but .* no calib_imu_to_velo.txt"):
        kitti2bag.write_kitti_bag(drive, tmp_path / "x.bag")
    assert not list(tmp_path.glob("x.bag*"))


def test_real_kitti_packets_give_tf_in_the_bag(tmp_path):
    from panoptic_perception.data import oxts
    from panoptic_perception.ros.conversions import transform_to_matrix

    drive = _write_drive(tmp_path)
    shutil.copytree(OXTS_FIXTURE, drive / "oxts")
    out = tmp_path / "real.bag"
    summary = kitti2bag.write_kitti_bag(drive, out)
    records = _tf_messages(out)
    assert summary.tf_written == len(records) == 2
    expected = oxts.vehicle_poses(oxts.read_oxts(OXTS_FIXTURE).packets, KittiCalibration.read(drive.parent))
    for (msg, _), pose in zip(records, expected):
        # KITTI's calib R has 7 digits: the tf carries the nearest exact rotation.
        np.testing.assert_allclose(transform_to_matrix(msg.transforms[0].transform), pose, atol=1e-6)


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "panoptic_perception", "kitti2bag", *argv],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_writes_a_bag_and_reports_clear_errors(tmp_path):
    drive = _write_drive(tmp_path)
    out = tmp_path / "cli.bag"
    done = _cli("--drive", str(drive), "--out", str(out), "--camera", "02")
    assert done.returncode == 0, done.stderr
    assert "wrote 4 frames" in done.stdout and out.is_file()
    assert "no oxts/" in done.stdout and "no /tf (odom -> base_link) written" in done.stdout
    shutil.copytree(OXTS_FIXTURE, drive / "oxts")
    with_tf = _cli("--drive", str(drive), "--out", str(out), "--overwrite", "--odom-frame", "world")
    assert with_tf.returncode == 0, with_tf.stderr
    assert "/tf (world -> base_link) at 2 OXTS stamps" in with_tf.stdout
    again = _cli("--drive", str(drive), "--out", str(out))
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr
    missing = _cli("--drive", str(tmp_path / "nope_drive_0001_sync"), "--out", str(tmp_path / "m.bag"))
    assert missing.returncode == 2 and "KITTI drive folder not found" in missing.stderr
    no_calib = tmp_path / "other" / "2011_09_26_drive_0001_sync"
    (no_calib / "image_02" / "data").mkdir(parents=True)
    (no_calib / "image_02" / "timestamps.txt").write_text("")
    nocal = _cli("--drive", str(no_calib), "--out", str(tmp_path / "n.bag"))
    assert nocal.returncode == 2 and "calib_cam_to_cam.txt" in nocal.stderr
    usage = _cli("--out", str(tmp_path / "u.bag"))
    assert usage.returncode == 2 and "--drive" in usage.stderr


@pytest.mark.ros
def test_rosbag_play_delivers_images_and_latched_tf(drive_bag, ros_master, rospy_node):
    """The bag replays through a real master: all frames arrive with their stamps, /tf_static too."""
    from rosharness import stop_process
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage

    rospy = rospy_node
    _, out, _ = drive_bag
    images, tfs = [], []
    got_all = threading.Event()

    def on_image(msg):
        images.append(msg.header.stamp.to_nsec())
        if len(images) == len(TIMESTAMPS):
            got_all.set()

    subs = [rospy.Subscriber("/kitti/camera_color_left/image_rect_color", Image, on_image, queue_size=10,
                             buff_size=2**24),
            rospy.Subscriber("/tf_static", TFMessage, tfs.append, queue_size=10)]
    play = ros_master.rosbag_play(out, "-d", "2", "-r", "2")
    try:
        assert got_all.wait(60), f"only {len(images)} images arrived"
        deadline = time.monotonic() + 10
        while not tfs and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_process(play)
        for sub in subs:
            sub.unregister()
    assert images == [parse_timestamp_ns(t) for t in TIMESTAMPS]
    assert tfs and tfs[0].transforms[0].child_frame_id == "camera_color_left"


@pytest.mark.ros
def test_rosbag_play_gives_tf2_odom_to_camera_at_image_stamps(synth_bag, ros_master, rospy_node):
    """Replayed, /tf (odom -> base_link) and /tf_static (base_link -> camera) join in tf2 at every image."""
    import tf2_ros
    from rosharness import stop_process
    from sensor_msgs.msg import Image

    from panoptic_perception.data.kitti import KittiCalibration
    from panoptic_perception.ros.conversions import transform_to_matrix

    rospy = rospy_node
    writer, out, _ = synth_bag
    buffer = tf2_ros.Buffer(cache_time=rospy.Duration(60.0))
    listener = tf2_ros.TransformListener(buffer)
    stamps = []
    got_all = threading.Event()

    def on_image(msg):
        stamps.append(msg.header.stamp)
        if len(stamps) == 6:
            got_all.set()

    sub = rospy.Subscriber("/kitti/camera_color_left/image_rect_color", Image, on_image, queue_size=10)
    play = ros_master.rosbag_play(out, "-d", "2")
    try:
        assert got_all.wait(60), f"only {len(stamps)} images arrived"
        time.sleep(0.5)  # the last /tf shares the last image's stamp: let the listener take it
    finally:
        stop_process(play)
        sub.unregister()
        listener.unregister()
    world = writer.world
    camera = KittiCalibration.read(writer.drive.parent).vehicle_from_camera("02")
    for k, stamp in enumerate(stamps):
        tf = buffer.lookup_transform("odom", "camera_color_left", stamp, rospy.Duration(1.0))
        expected = np.linalg.inv(world.ego_pose(0)) @ world.ego_pose(k) @ camera
        np.testing.assert_allclose(transform_to_matrix(tf.transform), expected, atol=1e-6)
