"""The ROS test harness itself: a real master, messages through it, nothing left behind."""
from __future__ import annotations

import numpy as np
import pytest
from rosharness import RosMaster, pid_alive, processes_with_arg, round_trip

pytestmark = pytest.mark.ros


def test_own_roscore_starts_and_stops_leaving_nothing(tmp_path):
    master = RosMaster(tmp_path / "home").start()
    pids = dict(master.pids)
    assert set(pids) == {"roscore", "rosmaster", "rosout"}
    assert all(pid_alive(p) for p in pids.values())
    master.stop()
    assert not [name for name, pid in pids.items() if pid_alive(pid)]
    # Nothing else listening on that master's port either.
    assert processes_with_arg(f"--core -p {master.port}") == []
    assert processes_with_arg(f"__master:={master.uri}") == []


def _make_frame():
    import rospy
    from cv_bridge import CvBridge
    from sensor_msgs.msg import RegionOfInterest

    from panoptic_perception.msg import PanopticSegmentation, Segment

    ids = np.zeros((37, 53), dtype=np.int32)
    ids[5:20, 10:30] = 7
    ids[25:, :] = 2**20 + 3  # large ids must survive (no 16-bit truncation)
    msg = PanopticSegmentation()
    msg.header.stamp = rospy.Time(1317384513, 123456789)
    msg.header.frame_id = "camera_color_left"
    msg.label_space = "cityscapes"
    msg.panoptic = CvBridge().cv2_to_imgmsg(ids, encoding="32SC1")
    msg.panoptic.header = msg.header
    msg.segments = [
        Segment(id=7, category_id=13, category_name="car", is_thing=True, score=0.93, area=300,
                bbox=RegionOfInterest(x_offset=10, y_offset=5, width=20, height=15)),
        Segment(id=2**20 + 3, category_id=0, category_name="road", is_thing=False, score=1.0,
                area=12 * 53, bbox=RegionOfInterest(x_offset=0, y_offset=25, width=53, height=12)),
    ]
    return msg, ids


def test_panoptic_message_round_trips_through_master(rospy_node):
    from cv_bridge import CvBridge

    from panoptic_perception.msg import PanopticSegmentation

    sent, ids = _make_frame()
    got = round_trip(rospy_node, "/harness/panoptic", PanopticSegmentation, sent)
    assert got is not None, "no PanopticSegmentation came back through the master"
    assert got.header.stamp == sent.header.stamp
    assert got.header.frame_id == "camera_color_left"
    assert got.panoptic.encoding == "32SC1"
    back = CvBridge().imgmsg_to_cv2(got.panoptic)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, ids)
    assert [(s.id, s.category_name, s.is_thing) for s in got.segments] == [
        (7, "car", True), (2**20 + 3, "road", False)]
    assert got.segments[0].bbox.width == 20
    assert abs(got.segments[0].score - 0.93) < 1e-6


def test_rostopic_sees_message_type(ros_master, tmp_path):
    """`rosmsg show` and a real `rostopic pub` work against our master and our messages."""
    import subprocess

    shown = subprocess.run(["rosmsg", "show", "panoptic_perception/PanopticSegmentation"],
                           env=ros_master.env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "sensor_msgs/Image panoptic" in shown.stdout
    assert "panoptic_perception/Segment[] segments" in shown.stdout


def test_a_taken_port_moves_roscore_to_another_free_one(tmp_path, monkeypatch):
    """Between finding a free port and roscore binding it another process may take it (an outgoing
    connection given it as its ephemeral port: bound, not listening)."""
    import socket

    from panoptic_perception.ros import processes

    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken_port = taken.getsockname()[1]
    ports = iter([taken_port])
    real_free_port = processes.free_port
    monkeypatch.setattr(processes, "free_port", lambda: next(ports, None) or real_free_port())
    master = RosMaster(tmp_path / "home")
    assert master.port == taken_port
    try:
        master.start()
        assert master.port != taken_port and master.uri.endswith(f":{master.port}")
    finally:
        master.stop()
        taken.close()
