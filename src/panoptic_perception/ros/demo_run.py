"""`make demo`: synthesise a drive, bag it, replay it through kitti.launch headless, report.

Everything runs for real (roscore, roslaunch, rosbag play / record, the node); this module only
orchestrates them and summarises what came out.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from panoptic_perception.errors import PerceptionError
from panoptic_perception.paths import SHARE_ROOT
from panoptic_perception.ros.processes import RosMaster, free_port, stop_process

NODE = "/panoptic_perception"


@dataclass
class DemoOutputs:
    panoptic: Dict[int, object] = field(default_factory=dict)  # stamp ns -> PanopticSegmentation
    overlay: Dict[int, object] = field(default_factory=dict)
    grid: Dict[int, object] = field(default_factory=dict)
    class_grid: Dict[int, object] = field(default_factory=dict)
    diagnostics: List[Dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def ensure_drive(out_dir: Path, frames: int, seed: int) -> Path:
    """The synthetic drive under out_dir (rendered once; reused while it has enough frames)."""
    from panoptic_perception.data.kitti import read_drive
    from panoptic_perception.data.synth import SynthConfig
    from panoptic_perception.data.synth.writer import DriveWriter, drive_dir

    config = SynthConfig()
    drive = drive_dir(out_dir, config)
    try:
        if read_drive(drive).num_frames("02") >= frames and (drive / "gt" / "panoptic.json").is_file():
            return drive
    except PerceptionError:
        pass
    print(f"demo: rendering {frames} synthetic frames (seed {seed})", flush=True)
    DriveWriter(out_dir, config, seed).write(frames)
    return drive


def ensure_bag(drive: Path, bag: Path, frames: int) -> Path:
    from panoptic_perception.ros.bag import write_kitti_bag

    if not bag.is_file() or bag.stat().st_mtime < (drive / "gt" / "panoptic.json").stat().st_mtime:
        print(f"demo: writing {bag}", flush=True)
        write_kitti_bag(drive, bag, max_frames=frames)
    return bag


def _subscribe(rospy, outputs: DemoOutputs) -> list:
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import OccupancyGrid
    from sensor_msgs.msg import Image

    from panoptic_perception.msg import PanopticSegmentation

    def keep(store: dict):
        def callback(msg):
            with outputs.lock:
                store[msg.header.stamp.to_nsec()] = msg
        return callback

    def keep_diagnostics(msg):
        for status in msg.status:
            if status.name.startswith("panoptic_perception"):
                with outputs.lock:
                    outputs.diagnostics.append({kv.key: kv.value for kv in status.values})

    return [
        rospy.Subscriber(f"{NODE}/panoptic", PanopticSegmentation, keep(outputs.panoptic), queue_size=20),
        rospy.Subscriber(f"{NODE}/overlay", Image, keep(outputs.overlay), queue_size=20),
        rospy.Subscriber(f"{NODE}/grid", OccupancyGrid, keep(outputs.grid), queue_size=20),
        rospy.Subscriber(f"{NODE}/class_grid", OccupancyGrid, keep(outputs.class_grid), queue_size=20),
        rospy.Subscriber("/diagnostics", DiagnosticArray, keep_diagnostics, queue_size=20),
    ]


def _start_rviz(master: RosMaster, out_dir: Path) -> Optional[tuple]:
    """rviz with the package's config on a private Xvfb display; None when either is missing."""
    if shutil.which("Xvfb") is None or shutil.which("rviz") is None:
        print("demo: no Xvfb or rviz installed; skipping the rviz screenshot")
        return None
    display = f":{free_port() % 500 + 100}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    rviz = master.run(["rviz", "-d", str(SHARE_ROOT / "rviz" / "panoptic.rviz")], "rviz.log",
                      extra_env={"DISPLAY": display, "LIBGL_ALWAYS_SOFTWARE": "1"})
    return xvfb, rviz, display


def _screenshot(display: str, path: Path) -> bool:
    try:
        from PIL import ImageGrab

        ImageGrab.grab(xdisplay=display).save(path)
        return True
    except Exception as exc:  # noqa: BLE001 - a screenshot is a nice-to-have, never a failure
        print(f"demo: rviz screenshot failed: {exc}")
        return False


def run_demo(out_dir: Path, model: str, frames: int, seed: int, rate: float, rviz_screenshot: bool,
             timeout_s: float) -> int:
    import rospy

    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    drive = ensure_drive(out_dir / "synth", frames, seed)
    bag = ensure_bag(drive, out_dir / "drive.bag", frames)
    master = RosMaster(out_dir / "ros_home").start()
    os.environ.update({k: v for k, v in master.env.items() if k.startswith("ROS")})
    outputs = DemoOutputs()
    launch = rviz = None
    screenshot = out_dir / "rviz.png"
    try:
        rospy.init_node("panoptic_demo", anonymous=True, disable_signals=True)
        subs = _subscribe(rospy, outputs)
        args = [f"bag:={bag}", "rviz:=false", f"rate:={rate}", "output:=log"]
        if model:
            args.append(f"model:={Path(model).resolve()}")
        print(f"demo: roslaunch panoptic_perception kitti.launch {' '.join(args)}", flush=True)
        launch = master.roslaunch("panoptic_perception", "kitti.launch", *args)
        rviz = _start_rviz(master, out_dir) if rviz_screenshot else None
        shot_taken = False
        deadline = time.monotonic() + timeout_s
        last_change, last_count = time.monotonic(), -1
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if launch.poll() is not None:
                break
            with outputs.lock:
                count = len(outputs.panoptic)
            if count != last_count:
                last_change, last_count = time.monotonic(), count
            if rviz and not shot_taken and count >= max(2, frames // 2):
                time.sleep(3.0)  # let rviz draw the latest messages
                shot_taken = _screenshot(rviz[2], screenshot)
            if count >= frames or (count > 0 and time.monotonic() - last_change > 20.0):
                time.sleep(2.0)  # last diagnostics
                break
        for sub in subs:
            sub.unregister()
    finally:
        if rviz:
            stop_process(rviz[1])
            stop_process(rviz[0])
        if launch is not None:
            stop_process(launch)
        rospy.signal_shutdown("demo done")
        master.stop()
    return report(out_dir, drive, outputs, frames, screenshot if screenshot.is_file() else None)


def report(out_dir: Path, drive: Path, outputs: DemoOutputs, frames: int, screenshot: Optional[Path]) -> int:
    from panoptic_perception.data.datasets import SyntheticDataset
    from panoptic_perception.eval.pq import PQAccumulator
    from panoptic_perception.eval.report import format_summary
    from panoptic_perception.labels import load_label_space
    from panoptic_perception.ros.conversions import panoptic_msg_to_numpy

    if not outputs.panoptic:
        print(f"demo: the node published nothing; see {out_dir / 'ros_home'} for the logs")
        return 1
    diag = outputs.diagnostics[-1] if outputs.diagnostics else {}
    dataset = SyntheticDataset(drive)
    space = load_label_space(next(iter(outputs.panoptic.values())).label_space)
    acc = PQAccumulator(space)
    from panoptic_perception.data.kitti import read_drive

    stamps = read_drive(drive).timestamps_ns["02"]
    matched = []
    for index, stamp in enumerate(stamps[: len(dataset)]):
        msg = outputs.panoptic.get(stamp)
        if msg is None:
            continue
        ids, segments = panoptic_msg_to_numpy(msg)
        sample = dataset[index]
        acc.add(sample["panoptic"], sample["segments"],
                ids, segments, str(index))
        matched.append(index)
    result = acc.result()
    sheet = write_sheet(out_dir / "sheet.png", outputs, stamps, matched, space)

    def value(key: str, fmt: str = "{}", scale: float = 1.0) -> str:
        return fmt.format(float(diag[key]) * scale) if key in diag else "n/a"

    print("\n=== panoptic_perception demo ===")
    print(f"frames in bag        {frames}")
    print(f"frames received      {diag.get('frames_received', 'n/a')}")
    print(f"frames published     {len(outputs.panoptic)}")
    print(f"frames dropped       {diag.get('frames_dropped', 'n/a')} (newest-frame policy)")
    print(f"frames skipped       {diag.get('frames_skipped', 'n/a')} (bad input)")
    print(f"backend              {diag.get('backend', 'n/a')}: {diag.get('backend_reason', '')}")
    print(f"latency median / p99 {value('latency_ms_median', '{:.0f}')} / "
          f"{value('latency_ms_p99', '{:.0f}')} ms (wall clock; arrival at the node to published)")
    print(f"network median       {value('network_ms_median', '{:.0f}')} ms of "
          f"{value('total_ms_median', '{:.0f}')} ms a frame (network input {diag.get('network_input', 'n/a')})")
    print(f"frames per second    {value('fps', '{:.2f}')}")
    print(f"PQ against the synthetic ground truth ({len(matched)} frames):")
    print(format_summary(result))
    print("\noutputs:")
    print(f"  picture sheet (overlay | grid): {sheet}")
    if screenshot:
        print(f"  rviz screenshot:                {screenshot}")
    print(f"  synthetic drive + truth:        {drive}")
    print(f"  bag replayed:                   {out_dir / 'drive.bag'}")
    print(f"  ROS logs:                       {out_dir / 'ros_home'}")
    return 0


def write_sheet(path: Path, outputs: DemoOutputs, stamps: List[int], matched: List[int], space,
                rows: int = 3) -> Path:
    """A few frames: the node's overlay beside its grid (class colours, vehicle at the bottom)."""
    import cv2

    from panoptic_perception.ros.conversions import (
        class_grid_msg_to_numpy,
        image_to_rgb,
        occupancy_msg_to_numpy,
    )
    from panoptic_perception.ros.visualization import grid_to_rgb

    picks = [matched[int(i)] for i in np.linspace(0, len(matched) - 1, min(rows, len(matched)))]
    tiles = []
    for index in picks:
        stamp = stamps[index]
        if stamp not in outputs.overlay or stamp not in outputs.grid:
            continue
        overlay = image_to_rgb(outputs.overlay[stamp], copy=True)
        occupancy, _ = occupancy_msg_to_numpy(outputs.grid[stamp])
        classes = class_grid_msg_to_numpy(outputs.class_grid[stamp])[0] if stamp in outputs.class_grid else None
        grid = grid_to_rgb(occupancy, classes, space)
        grid = cv2.resize(grid, (grid.shape[1] * overlay.shape[0] // grid.shape[0], overlay.shape[0]),
                          interpolation=cv2.INTER_NEAREST)
        tiles.append(np.concatenate([overlay, np.full((overlay.shape[0], 8, 3), 255, np.uint8), grid], axis=1))
    if tiles:
        width = max(t.shape[1] for t in tiles)
        tiles = [np.pad(t, ((0, 8), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(tiles, axis=0), cv2.COLOR_RGB2BGR))
    return path
