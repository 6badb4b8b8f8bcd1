"""The panoptic node: Image + CameraInfo in, panoptic segmentation, grid and objects out.

ROS adapter only: parameters -> Pipeline, messages -> numpy -> Pipeline.process -> messages.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Dict, Optional, Tuple

import rosgraph
import rospy

from panoptic_perception.errors import ConfigError, PerceptionError
from panoptic_perception.geometry.camera import Camera, Extrinsics, Intrinsics
from panoptic_perception.ros.frame_slot import NewestFrameSlot
from panoptic_perception.ros.health import FrameHealth, KindThrottle, MasterWatch, TimeJumpDetector
from panoptic_perception.ros.params import NodeParams, load_node_params
from panoptic_perception.ros.stats import RollingStats
from panoptic_perception.ros.tf_lookup import TfLookup

THROTTLE_S = 5.0
MASTER_POLL_S = 1.0
MASTER_RESTARTED_EXIT_CODE = 3  # the master was replaced: respawn me (launch files set respawn)


def pipeline_config_from_params(params: NodeParams):
    """The PipelineConfig the node runs: ~pipeline_config (config/pipeline.yaml) loaded as every entry
    point loads it, then the node's parameters applied (model, runtime, grid file, fusion, input size)."""
    from panoptic_perception.pipeline import load_pipeline_config

    base = load_pipeline_config(params.pipeline_config or None, params.runtime_config or None)
    return dataclasses.replace(
        base,
        model_path=params.model_file or base.model_path,
        runtime=params.runtime_config_with_overrides(base.runtime),
        grid_config_path=params.grid_config or base.grid_config_path,
        grid_overrides={**base.grid_overrides, **params.grid_overrides()},
        track=params.track,
        tracker_config=params.tracker_config or base.tracker_config,
        fused_grid_config=params.fused_grid_config or base.fused_grid_config,
        input_width=params.input_width or base.input_width,
        input_height=params.input_height or base.input_height,
        # fusion is in the compiled graph: applied before building
        fusion_overrides={**base.fusion_overrides, **params.fusion.overrides()},
    )


def build_pipeline(params: NodeParams):
    """The node's Pipeline; an invalid grid override is reported as the node parameter that set it."""
    from panoptic_perception.geometry.projection import GridOverrideError
    from panoptic_perception.pipeline import Pipeline

    config = pipeline_config_from_params(params)
    try:
        return Pipeline(config)
    except GridOverrideError as exc:
        where = ", ".join(f"~{key}" for key in exc.key.split(", "))
        raise ConfigError(f"bad node parameter: {where}: {exc.detail}") from exc


class PanopticNode:
    def __init__(self) -> None:
        import message_filters
        import tf2_ros
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import OccupancyGrid
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from visualization_msgs.msg import MarkerArray

        from panoptic_perception.msg import DetectedObjects, PanopticSegmentation, TrackedObjects

        # kept to hand back to a restarted master (see MasterWatch), with the global clock setting
        self._private_params = rospy.get_param("~", {})
        self._use_sim_time = rospy.get_param("/use_sim_time", None)
        self.params = load_node_params(self._private_params)
        self.exit_code = 0
        self.pipeline = build_pipeline(self.params)
        self.label_space = self.pipeline.label_space
        rospy.loginfo("panoptic_perception: %s", self.pipeline.describe())
        self._publish_class_metadata()

        self.pub_panoptic = rospy.Publisher("~panoptic", PanopticSegmentation, queue_size=1)
        self.pub_semantic = rospy.Publisher("~semantic", Image, queue_size=1)
        self.pub_overlay = rospy.Publisher("~overlay", Image, queue_size=1)
        self.pub_grid = rospy.Publisher("~grid", OccupancyGrid, queue_size=1)
        self.pub_class_grid = rospy.Publisher("~class_grid", OccupancyGrid, queue_size=1)
        self.pub_objects = rospy.Publisher("~objects", DetectedObjects, queue_size=1)
        self.pub_markers = rospy.Publisher("~markers", MarkerArray, queue_size=1)
        self.pub_tracks = rospy.Publisher("~tracks", TrackedObjects, queue_size=1)
        self.pub_track_markers = rospy.Publisher("~track_markers", MarkerArray, queue_size=1)
        self.pub_fused_grid = rospy.Publisher("~fused_grid", OccupancyGrid, queue_size=1)
        self.pub_diagnostics = rospy.Publisher("/diagnostics", DiagnosticArray, queue_size=1)

        self.tf_buffer = tf2_ros.Buffer(cache_time=rospy.Duration(30.0))
        self.tf_listener = tf2_ros.TransformListener(self.tf_buffer) if self.params.use_tf else None
        self.tf_lookup = TfLookup(self.tf_buffer, self.params.tf_timeout_s, rospy.Duration)
        self._fallback_extrinsics = self.params.extrinsics.to_extrinsics()
        self._intrinsics_key: Optional[Tuple] = None
        self._intrinsics: Optional[Intrinsics] = None
        self._extrinsics_source = "parameters"
        self._ego_motion_source = "none yet"  # "tf": odom -> vehicle found at the last stamp

        self.slot = NewestFrameSlot()
        self.stats = RollingStats()
        self.health = FrameHealth()
        self._throttle = KindThrottle(THROTTLE_S)
        self._time_jump = TimeJumpDetector()
        self._max_image_size = (self.params.max_image_width, self.params.max_image_height)
        self._stop = threading.Event()

        image_topic = rospy.resolve_name("image")
        image_type = Image
        if self.params.compressed:
            # ROS1 remaps whole names: resolve the base first, then add the transport suffix.
            image_topic = image_topic + "/compressed"
            image_type = CompressedImage
        buff = self.params.buff_size_bytes
        image_sub = message_filters.Subscriber(image_topic, image_type, queue_size=self.params.queue_size,
                                               buff_size=buff, tcp_nodelay=True)
        self.camera_info_topic = rospy.resolve_name("camera_info")
        info_sub = message_filters.Subscriber(self.camera_info_topic, CameraInfo,
                                              queue_size=self.params.queue_size)
        # Counted before the synchroniser: images whose CameraInfo never comes are seen too.
        image_sub.registerCallback(self._on_image)
        info_sub.registerCallback(lambda _info: self.health.camera_info_arrived())
        if self.params.approximate_sync:
            self.sync = message_filters.ApproximateTimeSynchronizer(
                [image_sub, info_sub], self.params.sync_queue_size, self.params.sync_slop_s)
        else:
            self.sync = message_filters.TimeSynchronizer([image_sub, info_sub], self.params.sync_queue_size)
        self.sync.registerCallback(self._on_frame)
        self.worker = threading.Thread(target=self._work, name="panoptic_worker", daemon=True)
        self.worker.start()
        # A wall-clock thread, not rospy.Timer: a looping bag moves sim time backwards, which kills
        # rospy timers, and the node's health is a wall-clock matter anyway.
        self.diag_thread = threading.Thread(target=self._diagnostics_loop, name="panoptic_diagnostics",
                                            daemon=True)
        self.diag_thread.start()
        self._master = MasterWatch(rosgraph.get_master_uri(), rospy.get_name())
        self.master_thread = threading.Thread(target=self._watch_master, name="panoptic_master_watch",
                                              daemon=True)
        self.master_thread.start()
        rospy.on_shutdown(self.shutdown)
        rospy.loginfo("panoptic_perception: listening to %s + %s", image_topic,
                      rospy.resolve_name("camera_info"))

    # -- plumbing -----------------------------------------------------------------------------

    def _publish_class_metadata(self) -> None:
        """Class ids, names, colours and is_thing on the parameter server for any consumer."""
        rospy.set_param("~label_space_name", self.label_space.name)
        rospy.set_param("~classes", [{"id": c.id, "name": c.name, "is_thing": c.is_thing,
                                      "color": list(c.color)} for c in self.label_space.categories])

    def _on_image(self, _image_msg: Any) -> None:
        self.health.image_arrived()
        missing_s = self.health.camera_info_missing_s()
        if missing_s is not None:
            self._warn(f"no CameraInfo on {self.camera_info_topic} for {missing_s:.0f} s: "
                       f"{self.health.waiting_for_camera_info} images waiting for it, none processed")

    def _on_frame(self, image_msg: Any, info_msg: Any) -> None:
        # Latency is measured from here (wall clock) to the end of publishing: one clock, meaningful
        # under sim time and a looping bag alike, where stamp-to-now mixes two clocks.
        arrival = time.monotonic()
        now = rospy.Time.now()
        if not now.is_zero() and self._time_jump.jumped_back(now.to_sec()):
            self._reset_on_time_jump()
        self.slot.put((image_msg, info_msg, arrival))

    def _reset_on_time_jump(self) -> None:
        """The clock went backwards (a bag loop): drop what belongs to the old timeline. tf2 clears its
        own buffer; the latency window, the skip window and the camera caches are ours."""
        self.stats.reset()
        self.health.reset_window()
        self._intrinsics_key = None
        self._extrinsics_source = "parameters"
        self.tf_lookup.forget()
        self.pipeline.reset_tracking()
        rospy.loginfo(f"panoptic_perception: time jumped back (jump {self._time_jump.jumps}); latency "
                      f"statistics, skip window, camera cache, tracks and fused grid reset")

    def _warn(self, text: str, log=None) -> None:
        if self._throttle.should_log(text):
            (log or rospy.logwarn)(f"panoptic_perception: {text}")

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout_s=0.5)
            if item is None:
                continue
            try:
                self.process(*item)
            except PerceptionError as exc:  # bad frame: say why, keep going
                self.health.frame_skipped(str(exc))
                self._warn(f"skipped frame: {exc}")
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything one frame does
                self.health.frame_skipped(f"{type(exc).__name__}: {exc}")
                self._warn(f"frame failed: {type(exc).__name__}: {exc}", rospy.logerr)

    def _watch_master(self) -> None:
        while not self._stop.wait(MASTER_POLL_S):
            state = self._master.poll()
            if state == MasterWatch.DOWN:
                self._warn(f"ROS master {self._master.master_uri} unreachable; still processing over the "
                           f"existing connections")
            elif state == MasterWatch.RESTARTED:
                self._hand_over_to_respawn()
                return

    def _hand_over_to_respawn(self) -> None:
        """rospy cannot re-register with a new master: give it back this node's parameters (roslaunch
        set them on the old one), so that the node respawned by roslaunch starts as configured, and exit."""
        try:
            rospy.set_param("~", self._private_params)
            if self._use_sim_time is not None:
                rospy.set_param("/use_sim_time", self._use_sim_time)
            restored = "parameters restored"
        except Exception as exc:  # noqa: BLE001 - exiting is right whatever the new master does
            restored = f"parameters NOT restored ({type(exc).__name__}: {exc})"
        rospy.logfatal(f"panoptic_perception: {self._master.reason}; {restored}; exiting with code "
                       f"{MASTER_RESTARTED_EXIT_CODE} so that roslaunch respawns it against the new master")
        self.exit_code = MASTER_RESTARTED_EXIT_CODE
        rospy.signal_shutdown("ROS master restarted")

    def shutdown(self) -> None:
        self._stop.set()
        self.slot.close()

    # -- camera geometry ----------------------------------------------------------------------

    def _camera(self, image_msg: Any, info_msg: Any) -> Camera:
        from panoptic_perception.ros.conversions import camera_info_to_intrinsics

        key = (info_msg.width, info_msg.height, tuple(info_msg.K), tuple(info_msg.D), tuple(info_msg.R),
               tuple(info_msg.P))
        if key != self._intrinsics_key:  # CameraInfo rarely changes: convert only when it does
            self._intrinsics = camera_info_to_intrinsics(info_msg)
            self._intrinsics_key = key
        return Camera(self._intrinsics, self._extrinsics(image_msg.header))

    def _extrinsics(self, header: Any) -> Extrinsics:
        if self.tf_listener is None or not header.frame_id:
            return self._fallback_extrinsics
        matrix, _ = self.tf_lookup.matrix(self.params.vehicle_frame, header.frame_id, header.stamp)
        if matrix is None:
            if self._extrinsics_source != "parameters":
                rospy.logwarn_throttle(THROTTLE_S, f"panoptic_perception: no tf {header.frame_id} -> "
                                                   f"{self.params.vehicle_frame}; using ~extrinsics")
            self._extrinsics_source = "parameters"
            return self._fallback_extrinsics
        self._extrinsics_source = "tf"
        return Extrinsics.from_matrix(matrix)

    def _ego_pose(self, header: Any) -> Optional[Any]:
        """odom -> vehicle (4x4) at the image stamp from tf, or None: tracking then runs in the vehicle
        frame (said once in the log, and in /diagnostics), never on a guessed motion."""
        if self.tf_listener is None:
            return None
        odom, vehicle = self.params.odom_frame, self.params.vehicle_frame
        matrix, why = self.tf_lookup.matrix(odom, vehicle, header.stamp)
        if matrix is None:
            if self._ego_motion_source != "unknown":
                rospy.logwarn(f"panoptic_perception: no odometry in tf ({odom} -> {vehicle}: {why}); tracks in "
                              f"{vehicle} with velocities relative to the vehicle, no fused grid, until it appears")
            self._ego_motion_source = "unknown"
            return None
        if self._ego_motion_source != "tf":
            rospy.loginfo(f"panoptic_perception: ego motion from tf {odom} -> {vehicle}")
        self._ego_motion_source = "tf"
        return matrix

    # -- one frame ----------------------------------------------------------------------------

    def process(self, image_msg: Any, info_msg: Any, arrival: Optional[float] = None) -> None:
        from panoptic_perception.ros import conversions as conv
        from panoptic_perception.ros.visualization import draw_overlay, objects_to_markers, tracks_to_markers

        arrival = time.monotonic() if arrival is None else arrival
        rgb = conv.image_message_to_rgb(image_msg, self._max_image_size)
        conv.check_image_matches_camera_info(rgb, info_msg)
        camera = self._camera(image_msg, info_msg)
        header = image_msg.header
        # Tracking needs every frame's objects, whoever listens: a frame left out is a miss to the tracker.
        wants_grid = self.params.track or any(p.get_num_connections() > 0 for p in
                                              (self.pub_grid, self.pub_class_grid, self.pub_objects, self.pub_markers))
        stamp_ns = header.stamp.to_nsec() if self.params.track else None
        pose = self._ego_pose(header) if self.params.track else None
        result = self.pipeline.process(rgb, camera if wants_grid else None, stamp_ns, pose)
        start = time.perf_counter()
        if self.pub_panoptic.get_num_connections():
            self.pub_panoptic.publish(conv.panoptic_to_msg(result.segment_map, result.segments, header,
                                                           self.label_space))
        if self.pub_semantic.get_num_connections():
            self.pub_semantic.publish(conv.category_map_to_mono8_msg(result.category_map, header))
        if self.pub_overlay.get_num_connections():
            overlay = draw_overlay(rgb, result.category_map, result.segment_map, result.segments,
                                   self.label_space, alpha=self.params.overlay_alpha)
            self.pub_overlay.publish(conv.rgb_to_image_msg(overlay, header))
        grid = result.grid
        frame = self.params.vehicle_frame
        if result.grid_error:
            self.health.grid_failed(result.grid_error)
            self._warn(f"no grid for this frame (panoptic published): {result.grid_error}")
        if grid is not None:
            if self.pub_grid.get_num_connections():
                self.pub_grid.publish(conv.occupancy_to_msg(grid.occupancy, grid.geometry, header, frame))
            if self.pub_class_grid.get_num_connections():
                self.pub_class_grid.publish(
                    conv.class_grid_to_msg(grid.class_grid, grid.geometry, header, frame))
            if self.pub_objects.get_num_connections():
                self.pub_objects.publish(conv.objects_to_msg(grid.objects, header, frame))
            if self.pub_markers.get_num_connections():
                self.pub_markers.publish(objects_to_markers(grid.objects, header, frame, self.label_space))
        if result.tracking_reset:
            rospy.loginfo(f"panoptic_perception: tracks restarted: {result.tracking_reset}")
        if result.tracking_frame is not None:
            track_frame = self.params.odom_frame if result.tracking_frame == "odom" else frame
            if self.pub_tracks.get_num_connections():
                self.pub_tracks.publish(conv.tracks_to_msg(result.tracks, header, track_frame,
                                                           result.tracking_frame == "odom"))
            if self.pub_track_markers.get_num_connections():
                self.pub_track_markers.publish(tracks_to_markers(result.tracks, header, track_frame,
                                                                 self.label_space))
        fused = result.fused_grid
        if fused is not None and self.pub_fused_grid.get_num_connections():
            # the known part only: the whole 160 m window is 640k cells (~16 ms to convert and send)
            cells, geometry = fused.known_part()
            self.pub_fused_grid.publish(conv.occupancy_to_msg(cells, geometry, header, self.params.odom_frame))
        timings = dict(result.timings_ms)
        timings["publish_ms"] = (time.perf_counter() - start) * 1e3
        timings["latency_ms"] = (time.monotonic() - arrival) * 1e3  # arrival to published, wall clock
        self.stats.add(timings)
        self.health.frame_processed()

    def _diagnostics_loop(self) -> None:
        while not self._stop.wait(self.params.diagnostics_period_s):
            try:
                self._publish_diagnostics()
            except Exception as exc:  # noqa: BLE001 - never let reporting kill the reporter
                rospy.logwarn_throttle(THROTTLE_S, f"panoptic_perception: diagnostics failed: {exc}")

    def _publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        summary = self.stats.summary()
        status = DiagnosticStatus(name="panoptic_perception: pipeline", hardware_id=str(self.pipeline.device))
        level, problems = self.health.status(self.camera_info_topic)
        status.level = level
        status.message = f"{summary.get('fps', 0.0):.1f} fps" + (f"; {problems}" if problems else "")
        skipped_recent, frames_recent = self.health.skip_rate()
        health = self.health
        values: Dict[str, Any] = {
            "backend": self.pipeline.backend.name,
            "backend_reason": self.pipeline.backend.reason,
            "model": str(self.pipeline.model_path),
            "network_input": "{}x{}".format(*self.pipeline.input_size),
            "extrinsics_source": self._extrinsics_source,
            "ego_motion_source": self._ego_motion_source if self.params.track else "tracking off",
            "frames_received": health.images_received,
            "camera_infos_received": health.camera_infos_received,
            "frames_waiting_for_camera_info": health.waiting_for_camera_info,
            "frames_synchronized": self.slot.received,
            "frames_processed": self.stats.processed,
            "frames_dropped": self.slot.dropped,
            "frames_skipped": health.skipped,
            f"frames_skipped_last_{health.window_s:.0f}s": f"{skipped_recent}/{frames_recent}",
            "grids_skipped": health.grid_skipped,
            "time_jumps_back": self._time_jump.jumps,
        }
        values.update({k: round(v, 3) for k, v in summary.items()})
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = rospy.Time.now()
        self.pub_diagnostics.publish(array)


def main() -> int:
    rospy.init_node("panoptic_perception")
    try:
        node = PanopticNode()
    except PerceptionError as exc:
        rospy.logfatal(f"panoptic_perception: cannot start: {exc}")
        return 1
    rospy.spin()
    node.shutdown()
    return node.exit_code
