"""Issue 15 (robustness), the parts that need no ROS master: bounded caches, refused huge images,
bad calibration, start-up validation of the grid classes, health reporting and its throttle."""
from __future__ import annotations

import numpy as np
import pytest

from panoptic_perception.errors import InputError
from panoptic_perception.geometry.camera import Camera, Extrinsics, Intrinsics
from panoptic_perception.pipeline import Pipeline, PipelineConfig
from panoptic_perception.runtime.config import RuntimeConfig

DISTINCT_SIZES = 60


@pytest.fixture(scope="module")
def pipeline(tiny_model):
    return Pipeline(PipelineConfig(model_path=str(tiny_model),
                                   runtime=RuntimeConfig(backend="torch", device="cpu", warmup_frames=0)))


def _camera(width: int, height: int) -> Camera:
    return Camera(Intrinsics.kitti().scaled(width, height), Extrinsics(height_m=1.65))


# -- 1: memory bounded whatever the image sizes --------------------------------------------------


@pytest.mark.slow
def test_sixty_image_sizes_keep_the_per_size_caches_bounded(pipeline):
    from panoptic_perception.pipeline import INDEX_CACHE_SIZES

    rng = np.random.default_rng(0)
    for i in range(DISTINCT_SIZES):
        width, height = 64 + 3 * i, 32 + i
        result = pipeline.process(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), _camera(width, height))
        assert result.segment_map.shape == (height, width)
    assert len(pipeline._index_cache) <= INDEX_CACHE_SIZES


def test_sixty_lookup_sizes_keep_the_projector_tables_bounded(pipeline):
    from panoptic_perception.geometry.projection import LOOKUP_CACHE_SIZES, GroundProjector

    projector = GroundProjector(_camera(320, 96), pipeline.grid_config, pipeline.label_space)
    for i in range(DISTINCT_SIZES):
        projector.lookup(32 + 2 * i, 16 + i)
    assert len(projector._lookups) <= LOOKUP_CACHE_SIZES
    again = projector.lookup(32, 16)  # an evicted size is simply rebuilt
    assert again is projector.lookup(32, 16)


def test_lru_cache_keeps_the_most_recently_used():
    from panoptic_perception.lru import LruCache

    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the newest
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and len(cache) == 2
    assert cache.get_or_build("d", lambda: 4) == 4 and len(cache) == 2


def test_images_beyond_the_size_limit_are_refused_before_conversion():
    pytest.importorskip("rospy", reason="ROS Python packages not installed (run `make setup`)")
    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    from panoptic_perception.ros import conversions as conv
    from panoptic_perception.ros.params import load_node_params

    params = load_node_params({})
    assert (params.max_image_width, params.max_image_height) == (4096, 4096)
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    raw = Image(height=100, width=300, encoding="rgb8", step=900, data=pixels.tobytes())
    with pytest.raises(InputError, match="300x100 is larger than the 256x256 limit"):
        conv.image_message_to_rgb(raw, max_size=(256, 256))
    assert conv.image_message_to_rgb(raw, max_size=(300, 100)).shape == (100, 300, 3)
    jpeg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", pixels)[1].tobytes())
    with pytest.raises(InputError, match="larger than the 256x64 limit"):
        conv.image_message_to_rgb(jpeg, max_size=(256, 64))


# -- 3: non-finite calibration is refused like a zero focal length --------------------------------


@pytest.mark.parametrize("field, index", [("P", 0), ("P", 2), ("K", 4), ("D", 0), ("R", 8)])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_camera_info_is_refused(field, index, bad):
    pytest.importorskip("rospy", reason="ROS Python packages not installed (run `make setup`)")
    from panoptic_perception.ros import conversions as conv

    info = conv.intrinsics_to_camera_info(Intrinsics.kitti(), _std_header())
    values = list(getattr(info, field))
    values[index] = bad
    setattr(info, field, values)
    with pytest.raises(InputError, match=f"camera {field} has non-finite values"):
        conv.camera_info_to_intrinsics(info)


def _std_header():
    from std_msgs.msg import Header

    return Header(frame_id="camera")


# -- 2: grid class names checked at start-up; a grid problem never loses the panoptic output ------


@pytest.mark.slow
def test_unknown_grid_class_is_refused_at_start_up_naming_key_name_and_valid_names():
    from panoptic_perception.errors import ConfigError
    from panoptic_perception.ros.node import build_pipeline
    from panoptic_perception.ros.params import load_node_params

    params = load_node_params({"free_classes": ["road", "roadd"]})
    with pytest.raises(ConfigError, match=r"~free_classes: no class named 'roadd' .*valid names: road, sidewalk"):
        build_pipeline(params)
    params = load_node_params({"obstacle_classes": ["wall", "tree"]})
    with pytest.raises(ConfigError, match=r"~obstacle_classes: no class named 'tree'"):
        build_pipeline(params)
    # an extent contradicting the file names the ~grid namespace
    with pytest.raises(ConfigError, match=r"bad node parameter: ~grid: grid extent is empty: x \[0.0, -5.0\]"):
        build_pipeline(load_node_params({"grid": {"x_max_m": -5.0}}))
    assert build_pipeline(load_node_params({"free_classes": ["road"]})).grid_config.free_classes == ("road",)


def test_unknown_class_in_the_grid_file_names_the_file_key(tmp_path):
    from panoptic_perception.errors import ConfigError
    from panoptic_perception.ros.node import build_pipeline
    from panoptic_perception.ros.params import load_node_params

    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("thing_priors: {lorry: {length_m: 9.0, width_m: 2.5}}\n")
    params = load_node_params({"grid_config": str(grid_file)})
    with pytest.raises(ConfigError, match=rf"thing_priors of grid config \({grid_file}\): no class named 'lorry'"):
        build_pipeline(params)


def test_a_grid_problem_keeps_the_panoptic_result(pipeline):
    import dataclasses

    good = pipeline.grid_config
    pipeline.grid_config = dataclasses.replace(good, free_classes=("road", "roadd"))
    pipeline._projector = None
    try:
        result = pipeline.process(np.zeros((96, 320, 3), dtype=np.uint8), _camera(320, 96))
    finally:
        pipeline.grid_config, pipeline._projector = good, None
    assert result.segment_map.shape == (96, 320)
    assert result.grid is None and "roadd" in result.grid_error


# -- 4, 5, 6: health bookkeeping (ROS-free, fake clock) ------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_images_without_camera_info_are_counted_and_the_topic_named_after_the_grace():
    from panoptic_perception.ros.health import CAMERA_INFO_GRACE_S, OK, WARN, FrameHealth

    clock = FakeClock()
    health = FrameHealth(clock=clock)
    for _ in range(10):  # 10 Hz for a second: within the grace nothing is said
        health.image_arrived()
        clock.t += 0.1
    assert health.camera_info_missing_s() is None and health.status("/cam/camera_info")[0] == OK
    clock.t += CAMERA_INFO_GRACE_S
    health.image_arrived()
    level, message = health.status("/cam/camera_info")
    assert level == WARN and "no CameraInfo on /cam/camera_info" in message and "11 images waiting" in message
    assert health.images_received == 11 and health.waiting_for_camera_info == 11
    health.camera_info_arrived()
    health.image_arrived()
    assert health.camera_info_missing_s() is None and health.status("/cam/camera_info")[0] == OK


def test_one_skipped_frame_warns_only_while_it_is_in_the_recent_window():
    from panoptic_perception.ros.health import OK, WARN, WINDOW_S, FrameHealth

    clock = FakeClock()
    health = FrameHealth(clock=clock)
    health.camera_info_arrived()
    health.frame_skipped("image (frame 'cam', stamp 1.000000000): unsupported encoding '16UC1'")
    health.frame_processed()
    level, message = health.status("/cam/camera_info")
    assert level == WARN and "skipped 1 of 2 frames" in message and "16UC1" in message
    for _ in range(int(WINDOW_S) + 2):  # frames flow again for longer than the window
        clock.t += 1.0
        health.frame_processed()
    assert health.status("/cam/camera_info") == (OK, "")
    assert health.skipped == 1 and health.skip_rate() == (0, int(WINDOW_S) + 1)


def test_forty_frame_ids_of_one_problem_log_one_line():
    pytest.importorskip("rospy", reason="ROS Python packages not installed (run `make setup`)")
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from panoptic_perception.ros import conversions as conv
    from panoptic_perception.ros.node import KindThrottle  # what the node throttles with

    clock = FakeClock()
    throttle = KindThrottle(5.0, clock=clock)
    lines = {"encoding": 0, "size": 0}
    for i in range(40):
        header = Header(frame_id=f"camera_{chr(97 + i % 26)}{i}")
        header.stamp.secs, header.stamp.nsecs = 100 + i, 1000 * i
        bad = [Image(header=header, height=4, width=6, encoding=f"bayer_{i}", step=6, data=b"\0" * 24),
               Image(header=header, height=4, width=6 + i, encoding="rgb8", step=18 + 3 * i, data=b"\0" * 5)]
        for kind, msg in zip(lines, bad):
            with pytest.raises(InputError) as caught:
                conv.image_message_to_rgb(msg)
            lines[kind] += throttle.should_log(f"skipped frame: {caught.value}")
        clock.t += 0.3  # 40 frames in 12 s
    assert lines == {"encoding": 3, "size": 3}  # once per kind every 5 s: at 0, 5.1 and 10.2 s


def test_time_jump_back_is_reported_once_per_jump():
    from panoptic_perception.ros.health import TimeJumpDetector

    detector = TimeJumpDetector()
    stamps = [10.0, 10.1, 10.2, 5.0, 5.1, 10.3, 1.0]
    assert [detector.jumped_back(t) for t in stamps] == [False, False, False, True, False, False, True]
    assert detector.jumps == 2


# -- master restart: what the node's watch concludes (fake master over real XML-RPC) ---------------


class FakeMaster:
    def __init__(self, pid: int, port: int = 0) -> None:
        import threading
        from xmlrpc.server import SimpleXMLRPCServer

        self.pid = pid
        self.nodes = {"/panoptic_perception"}
        self.server = SimpleXMLRPCServer(("127.0.0.1", port), logRequests=False, allow_none=True)
        self.server.register_function(lambda caller: (1, "", self.pid), "getPid")
        self.server.register_function(
            lambda caller, name: (1, "", "http://x") if name in self.nodes else (-1, "unknown", ""), "lookupNode")
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_master_watch_tells_down_from_restarted():
    from panoptic_perception.ros.health import MasterWatch

    master = FakeMaster(pid=100)
    watch = MasterWatch(f"http://127.0.0.1:{master.port}", "/panoptic_perception", timeout_s=1.0)
    assert watch.poll() == MasterWatch.UP
    master.stop()
    assert watch.poll() == MasterWatch.DOWN  # gone: keep working over existing connections
    master = FakeMaster(pid=100, port=master.port)
    assert watch.poll() == MasterWatch.UP  # the same master back (a network blip)
    master.nodes.clear()  # same pid, but it has never heard of us
    assert watch.poll() == MasterWatch.RESTARTED and "restarted (pid 100 -> 100)" in watch.reason
    master.stop()
    master = FakeMaster(pid=200, port=master.port)
    watch = MasterWatch(f"http://127.0.0.1:{master.port}", "/panoptic_perception", timeout_s=1.0)
    master.pid = 201
    assert watch.poll() == MasterWatch.RESTARTED and "pid 200 -> 201" in watch.reason
    assert watch.poll() == MasterWatch.RESTARTED  # final
    master.stop()
