"""`bench node`: the ROS node's throughput against the Pipeline's on the same machine and frames.

Real processes: a private roscore, `roslaunch panoptic_perception camera.launch`, and this process
as the camera (Image + CameraInfo published faster than the node can take them) and as the
consumer (subscribed to ~panoptic and ~grid, like a tracker; messages counted, not decoded, so the
consumer costs the node's CPU as little as possible). Node fps is the reciprocal of the median
interval between ~panoptic outputs; the Pipeline is timed first, in this process, on the same frames.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

from panoptic_perception.benchmarks.pipeline import synthetic_frames, time_frames
from panoptic_perception.errors import ConfigError, PerceptionError
from panoptic_perception.size_args import size_arg, with_input_size

HELP = "node throughput (real roscore + roslaunch, camera fed faster than it runs) vs the Pipeline's"
NODE = "/panoptic_perception"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="checkpoint (default: the shipped model)")
    parser.add_argument("--backend", choices=["auto", "torch", "onnxruntime", "tensorrt"], default="auto",
                        help="runtime backend of both the node and the Pipeline (default: auto)")
    parser.add_argument("--frames", type=int, default=30, help="node outputs to time (default: 30)")
    parser.add_argument("--warmup", type=int, default=3, help="node outputs ignored first (default: 3)")
    parser.add_argument("--rate-hz", type=float, default=15.0,
                        help="camera rate; above the node's throughput so it never waits (default: 15)")
    parser.add_argument("--image-size", type=size_arg, default="1242x375",
                        help="camera image WxH (default: KITTI 1242x375)")
    parser.add_argument("--input-size", type=size_arg, default=None, metavar="WxH",
                        help="network input WxH for both, e.g. 640x192 (default: the model's own)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="give up after this long")


class _Outputs:
    """Arrival times of the node's outputs, counted without deserialising them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.panoptic_s: List[float] = []
        self.grids = 0
        self.diagnostics: Dict[str, str] = {}

    def on_panoptic(self, _msg) -> None:
        with self.lock:
            self.panoptic_s.append(time.perf_counter())

    def on_grid(self, _msg) -> None:
        with self.lock:
            self.grids += 1

    def on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("panoptic_perception"):
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}


def _node_log_tail(home: Path, lines: int = 15) -> str:
    logs = sorted(home.glob("log/**/panoptic_perception*.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return f"no node log under {home}/log"
    return f"{logs[-1]}:\n" + "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])


def _time_node(args: argparse.Namespace, frames: list, home: Path) -> Dict[str, object]:
    import numpy as np
    import rospy
    from diagnostic_msgs.msg import DiagnosticArray
    from rospy.msg import AnyMsg
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from panoptic_perception.ros.conversions import intrinsics_to_camera_info, rgb_to_image_msg
    from panoptic_perception.ros.processes import RosMaster, stop_process

    master = RosMaster(home).start()
    os.environ.update({k: v for k, v in master.env.items() if k.startswith("ROS")})
    launch = None
    outputs = _Outputs()
    try:
        rospy.init_node("panoptic_bench", anonymous=True, disable_signals=True)
        image_pub = rospy.Publisher("/bench_camera/image_rect_color", Image, queue_size=1)
        info_pub = rospy.Publisher("/bench_camera/camera_info", CameraInfo, queue_size=1)
        subs = [rospy.Subscriber(f"{NODE}/panoptic", AnyMsg, outputs.on_panoptic, queue_size=1),
                rospy.Subscriber(f"{NODE}/grid", AnyMsg, outputs.on_grid, queue_size=1),
                rospy.Subscriber("/diagnostics", DiagnosticArray, outputs.on_diagnostics, queue_size=1)]
        launch_args = ["camera:=/bench_camera", "use_tf:=false", "output:=log", f"backend:={args.backend}"]
        if args.model:
            launch_args.append(f"model:={Path(args.model).resolve()}")
        if args.input_size:
            params = home / "bench_params.yaml"
            params.write_text(f"input_width: {args.input_size[0]}\ninput_height: {args.input_size[1]}\n")
            launch_args.append(f"params:={params}")
        launch = master.roslaunch("panoptic_perception", "camera.launch", *launch_args)
        deadline = time.monotonic() + args.timeout_s
        while image_pub.get_num_connections() == 0 or info_pub.get_num_connections() == 0:
            if launch.poll() is not None or time.monotonic() > deadline:
                raise PerceptionError(f"bench node: the node did not subscribe; {_node_log_tail(home)}")
            time.sleep(0.2)
        # Pre-built messages: only the stamp changes per publish, so the camera costs almost nothing.
        messages = [(rgb_to_image_msg(f.rgb, Header(frame_id="camera")),
                     intrinsics_to_camera_info(f.camera.intrinsics, Header(frame_id="camera"))) for f in frames]
        period_s = 1.0 / args.rate_hz
        index = 0
        needed = args.warmup + args.frames + 1
        while True:
            with outputs.lock:
                done = len(outputs.panoptic_s) >= needed
            if done:
                break
            if launch.poll() is not None or time.monotonic() > deadline:
                raise PerceptionError(f"bench node: {len(outputs.panoptic_s)} of {needed} outputs before "
                                      f"the node stopped or the timeout; {_node_log_tail(home)}")
            image, info = messages[index % len(messages)]
            stamp = rospy.Time.now()
            image.header.stamp = info.header.stamp = stamp
            image_pub.publish(image)
            info_pub.publish(info)
            index += 1
            time.sleep(period_s)
        time.sleep(2.5)  # one more diagnostics period
        for sub in subs:
            sub.unregister()
        with outputs.lock:
            arrivals = np.array(outputs.panoptic_s[args.warmup:needed])
            diagnostics = dict(outputs.diagnostics)
            grids = outputs.grids
        intervals_ms = np.diff(arrivals) * 1e3
        return {"published": index, "outputs": len(arrivals), "grids": grids,
                "interval_median_ms": float(np.median(intervals_ms)),
                "fps": 1e3 / float(np.median(intervals_ms)), "diagnostics": diagnostics}
    finally:
        if launch is not None:
            stop_process(launch)
        rospy.signal_shutdown("bench done")
        master.stop()


def _time_pipeline(args: argparse.Namespace, frames: list) -> Dict[str, float]:

    import numpy as np

    from panoptic_perception.pipeline import Pipeline, load_pipeline_config

    config = load_pipeline_config()
    config = dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, backend=args.backend))
    if args.model:
        config = dataclasses.replace(config, model_path=args.model)
    pipeline = Pipeline(with_input_size(config, args.input_size))
    samples, _ = time_frames(pipeline, frames, args.warmup, args.frames)
    totals_ms = samples["total_ms"]
    median_ms = float(np.median(totals_ms))
    return {"total_median_ms": median_ms, "fps": 1e3 / median_ms, "backend": pipeline.backend.name,
            "input": f"{pipeline.input_size[0]}x{pipeline.input_size[1]}"}


def run(args: argparse.Namespace) -> Dict[str, object]:

    if args.frames < 2 or args.warmup < 0 or args.rate_hz <= 0:
        raise ConfigError("--frames must be >= 2, --warmup >= 0 and --rate-hz > 0")
    image_w, image_h = args.image_size
    frames = synthetic_frames(image_w, image_h)
    # The Pipeline first: after rospy has run in this process its threads linger and slow torch down.
    pipeline = _time_pipeline(args, frames)
    home = Path(tempfile.mkdtemp(prefix="bench_node_"))
    node = _time_node(args, frames, home)  # on failure its logs stay in `home` for the error message
    shutil.rmtree(home, ignore_errors=True)
    diagnostics = node["diagnostics"]
    row = {
        "backend": diagnostics.get("backend", "?"), "image": f"{image_w}x{image_h}",
        "input": diagnostics.get("network_input", "?"), "pipeline_input": pipeline["input"],
        "camera_hz": args.rate_hz, "node_fps": node["fps"], "pipeline_fps": pipeline["fps"],
        "node_vs_pipeline_pct": 100.0 * node["fps"] / pipeline["fps"],
        "node_interval_median_ms": node["interval_median_ms"],
        "pipeline_total_median_ms": pipeline["total_median_ms"],
        "node_total_median_ms": float(diagnostics.get("total_ms_median", "nan")),
        "node_publish_median_ms": float(diagnostics.get("publish_ms_median", "nan")),
        "frames_dropped": diagnostics.get("frames_dropped", "?"),
    }
    print(f"bench node: node {row['node_fps']:.2f} fps, pipeline {row['pipeline_fps']:.2f} fps "
          f"({row['node_vs_pipeline_pct']:.0f} %)", flush=True)
    return {"title": "node: throughput vs the Pipeline", "rows": [row],
            "notes": f"{node['outputs']} timed ~panoptic outputs ({node['grids']} grids) of {node['published']} "
                     f"frames published; consumer subscribed to ~panoptic and ~grid (counted, not decoded); "
                     f"pipeline timed first, in the bench process, on the same 5 synthetic frames"}
