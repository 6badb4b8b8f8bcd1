"""The node for real: roscore, roslaunch kitti.launch, rosbag play of a synthetic KITTI drive."""
from __future__ import annotations

import re
import threading
import time
from collections import defaultdict

import numpy as np
import pytest
from rosharness import DRIVE_FRAMES as FRAMES
from rosharness import DRIVE_HEIGHT as HEIGHT
from rosharness import DRIVE_WIDTH as WIDTH
from rosharness import launch_kitti, stop_process

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NODE = "/panoptic_perception"


class Collector:
    """Subscribes the test process to the node's outputs."""

    def __init__(self, rospy):
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import OccupancyGrid
        from sensor_msgs.msg import Image
        from visualization_msgs.msg import MarkerArray

        from panoptic_perception.msg import DetectedObjects, PanopticSegmentation, TrackedObjects

        self.messages = defaultdict(list)
        self.lock = threading.Lock()
        topics = {"panoptic": PanopticSegmentation, "semantic": Image, "overlay": Image,
                  "grid": OccupancyGrid, "class_grid": OccupancyGrid, "objects": DetectedObjects,
                  "tracks": TrackedObjects, "track_markers": MarkerArray, "fused_grid": OccupancyGrid}
        self.subs = [rospy.Subscriber(f"{NODE}/{name}", cls, self._keep(name), queue_size=50)
                     for name, cls in topics.items()]
        self.subs.append(rospy.Subscriber("/diagnostics", DiagnosticArray, self._keep("diagnostics"),
                                          queue_size=50))

    def _keep(self, name):
        def callback(msg):
            with self.lock:
                self.messages[name].append(msg)
        return callback

    def wait_for(self, name, count, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages[name]) >= count:
                    return True
            time.sleep(0.1)
        return False

    def close(self):
        for sub in self.subs:
            sub.unregister()


def _diagnostic_values(msg):
    return {kv.key: kv.value for status in msg.status for kv in status.values
            if status.name.startswith("panoptic_perception")}


def _bag_stamps(bag):
    import rosbag

    with rosbag.Bag(str(bag)) as reader:
        return {msg.header.stamp.to_nsec(): msg.header.frame_id
                for _, msg, _ in reader.read_messages(topics=["/kitti/camera_color_left/image_rect_color"])}


def _loop_starts(messages) -> set:
    """Indices of messages whose stamp is earlier than the one before: the bag started a new pass."""
    stamps = [msg.header.stamp.to_nsec() for msg in messages]
    return {i for i in range(1, len(stamps)) if stamps[i] < stamps[i - 1]}


@pytest.fixture(scope="module")
def node_run(ros_master, rospy_node, drive_bag, tiny_model):
    """One replay of the drive at real rate with every output subscribed."""
    drive, bag = drive_bag
    collector = Collector(rospy_node)
    # Looping: the node may still be loading its model when the first pass starts.
    launch = launch_kitti(ros_master, bag, tiny_model, "rate:=0.5", "loop:=true")
    try:
        collector.wait_for("grid", FRAMES, timeout_s=240)
        collector.wait_for("diagnostics", 2, timeout_s=30)
    finally:
        stop_process(launch)
        collector.close()
    log = (ros_master.home / "roslaunch_kitti.launch.log").read_text(errors="replace")
    return collector.messages, log


def test_every_output_carries_an_input_stamp_and_the_right_frame(node_run, drive_bag):
    messages, log = node_run
    stamps = _bag_stamps(drive_bag[1])
    for name in ("panoptic", "semantic", "overlay", "grid", "class_grid", "objects"):
        assert messages[name], f"nothing on ~{name}; launch log:\n{log[-3000:]}"
        for msg in messages[name]:
            assert msg.header.stamp.to_nsec() in stamps, f"~{name} stamp is not an input stamp"
            expected = "base_link" if name in ("grid", "class_grid", "objects") else \
                stamps[msg.header.stamp.to_nsec()]
            assert msg.header.frame_id == expected, name
    assert messages["overlay"][0].encoding == "rgb8"
    assert messages["semantic"][0].encoding == "mono8"


def test_panoptic_images_match_their_segments(node_run):
    from panoptic_perception.ros.conversions import panoptic_msg_to_numpy

    messages, _ = node_run
    for msg in messages["panoptic"]:
        ids, segments = panoptic_msg_to_numpy(msg)
        assert ids.shape == (HEIGHT, WIDTH)
        present = {int(i): int(c) for i, c in zip(*np.unique(ids, return_counts=True)) if i != 0}
        assert {s.id: s.area_px for s in segments} == present


def test_grid_matches_the_offline_pipeline(node_run, drive_bag, tiny_model):
    from panoptic_perception.data.datasets import read_rgb
    from panoptic_perception.data.kitti import read_drive
    from panoptic_perception.pipeline import Pipeline, PipelineConfig
    from panoptic_perception.ros.conversions import occupancy_msg_to_numpy
    from panoptic_perception.runtime.config import RuntimeConfig

    messages, _ = node_run
    drive_dir, _ = drive_bag
    drive = read_drive(drive_dir)
    camera = drive.camera("02")
    pipeline = Pipeline(PipelineConfig(model_path=str(tiny_model),
                                       runtime=RuntimeConfig(backend="torch", device="cpu", warmup_frames=0)))
    expected_geometry = pipeline.grid_config.grid.geometry()
    by_stamp = {m.header.stamp.to_nsec(): m for m in messages["grid"]}
    checked = 0
    for path, stamp_ns in zip(drive.images["02"], drive.timestamps_ns["02"]):
        if stamp_ns not in by_stamp:
            continue
        grid, geometry = occupancy_msg_to_numpy(by_stamp[stamp_ns])
        assert (geometry.width, geometry.height) == (expected_geometry.width, expected_geometry.height)
        assert geometry.resolution_m == pytest.approx(expected_geometry.resolution_m)
        offline = pipeline.process(read_rgb(path), camera).grid.occupancy
        assert np.mean(grid == offline) > 0.999
        checked += 1
    assert checked >= FRAMES // 2


def test_tracks_and_fused_grid_are_in_odom_from_the_bags_oxts_tf(node_run, drive_bag):
    """The bag carries /tf odom -> base_link from the drive's oxts/: the node tracks over ground."""
    messages, log = node_run
    stamps = _bag_stamps(drive_bag[1])
    assert messages["tracks"] and messages["fused_grid"], f"no ~tracks / ~fused_grid; launch log:\n{log[-3000:]}"
    # The replay loops: when /clock jumps back, tf2's listener clears its buffer, so the first frame of a
    # new pass may find no odometry yet. The node then tracks that one frame in base_link and says so.
    loop_starts = _loop_starts(messages["tracks"])
    in_odom = [msg for i, msg in enumerate(messages["tracks"]) if i not in loop_starts]
    assert in_odom
    for msg in in_odom + messages["fused_grid"]:
        assert msg.header.stamp.to_nsec() in stamps and msg.header.frame_id == "odom"
    assert all(msg.ego_motion_known for msg in in_odom)
    assert "ego motion from tf odom -> base_link" in log
    # the panoptic output names exactly the confirmed tracks matched in the same frame
    tracks_at = {m.header.stamp.to_nsec(): m for m in messages["tracks"]}
    checked = 0
    for msg in messages["panoptic"]:
        tracks = tracks_at.get(msg.header.stamp.to_nsec())
        if tracks is None:
            continue
        confirmed = {(t.segment_id, t.track_id) for t in tracks.tracks
                     if t.status == t.CONFIRMED and t.segment_id}
        assert {(s.id, s.track_id) for s in msg.segments if s.track_id} == confirmed
        checked += 1
    assert checked >= FRAMES // 2
    assert "tf" in {_diagnostic_values(msg).get("ego_motion_source") for msg in messages["diagnostics"]}


def test_diagnostics_report_backend_and_counts(node_run):
    messages, _ = node_run
    values = _diagnostic_values(messages["diagnostics"][-1])
    assert values["backend"] == "torch"
    assert int(values["frames_processed"]) >= 1
    # each loop of the bag is a clock jump that empties the timing window, so the last message may hold none
    timed = [v for v in map(_diagnostic_values, messages["diagnostics"]) if "network_ms_median" in v]
    assert timed and all("latency_ms_p99" in v for v in timed)


def test_ten_times_the_bag_rate_drops_frames_but_latency_stays_bounded(ros_master, rospy_node, drive_bag,
                                                                         tiny_model):
    _, bag = drive_bag
    collector = Collector(rospy_node)
    rate = 10.0
    launch = launch_kitti(ros_master, bag, tiny_model, f"rate:={rate}", "loop:=true")
    try:
        assert collector.wait_for("diagnostics", 6, timeout_s=240)
        time.sleep(6.0)  # several loops of the bag at 10x
        assert launch.poll() is None, "the launch died"
    finally:
        stop_process(launch)
        collector.close()
    values = _diagnostic_values(collector.messages["diagnostics"][-1])
    assert int(values["frames_dropped"]) > 0
    # Latency is wall clock from arrival to published. With a one-frame slot a frame waits at most for
    # the one in flight, so it stays within a few processing times; a queue would grow without bound
    # over the loops instead. Every loop of the bag is a clock jump that empties the latency window,
    # so a diagnostics message may hold none: every message that has one is checked.
    with_latency = [v for v in map(_diagnostic_values, collector.messages["diagnostics"]) if "latency_ms_p99" in v]
    assert with_latency, "no diagnostics message carried a latency"
    for values in with_latency:
        latency_ms = float(values["latency_ms_p99"])
        processing_ms = float(values["total_ms_p99"]) + float(values["publish_ms_p99"])
        assert 0 < latency_ms < 3 * processing_ms + 500, values


def test_bad_frames_are_logged_and_skipped(ros_master, rospy_node, drive_bag, tiny_model, tmp_path):
    import rosbag

    _, bag = drive_bag
    bad_bag = tmp_path / "bad.bag"
    with rosbag.Bag(str(bag)) as reader, rosbag.Bag(str(bad_bag), "w") as writer:
        images = 0  # image messages so far: the bag interleaves CameraInfo and /tf with them
        for topic, msg, t in reader.read_messages():
            if topic == "/tf":
                continue  # and no odometry: the node must say so, track in base_link and fuse nothing
            if topic.endswith("image_rect_color"):
                if images % 4 == 1:
                    msg.encoding = "16UC1"  # wrong encoding
                elif images % 4 == 3:
                    msg.height, msg.width, msg.step, msg.data = 0, 0, 0, b""  # empty image
                images += 1
            writer.write(topic, msg, t, connection_header=getattr(msg, "_connection_header", None))
    collector = Collector(rospy_node)
    launch = launch_kitti(ros_master, bad_bag, tiny_model, "rate:=0.5", "loop:=true")
    try:
        collector.wait_for("panoptic", 3, timeout_s=240)
        collector.wait_for("diagnostics", 2, timeout_s=30)
        time.sleep(2.0)
        assert launch.poll() is None, "the launch died on bad frames"
    finally:
        stop_process(launch)
        collector.close()
    log = (ros_master.home / "roslaunch_kitti.launch.log").read_text(errors="replace")
    assert re.search(r"skipped frame: .*16UC1", log), log[-3000:]
    assert re.search(r"skipped frame: .*empty", log), log[-3000:]
    assert collector.messages["panoptic"], "no good frame was processed after the bad ones"
    assert len(re.findall(r"no odometry in tf \(odom -> base_link", log)) == 1, log[-3000:]
    assert collector.messages["tracks"] and not collector.messages["fused_grid"]
    assert all(m.header.frame_id == "base_link" and not m.ego_motion_known for m in collector.messages["tracks"])
    assert _diagnostic_values(collector.messages["diagnostics"][-1])["ego_motion_source"] == "unknown"
