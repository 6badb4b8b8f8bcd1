"""Test-side ROS helpers: the package's process control plus checks that nothing was left behind."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, List, Optional

from panoptic_perception.ros.processes import (  # noqa: F401 - re-exported for the tests
    RosMaster,
    free_port,
    pid_alive,
    stop_pids,
    stop_process,
)


def processes_with_arg(text: str) -> List[int]:
    """Pids whose command line contains `text` (used to check nothing was left behind)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def round_trip(rospy: Any, topic: str, msg_type: Any, msg: Any, timeout_s: float = 20.0) -> Optional[Any]:
    """Publish `msg` on `topic` through the master until our own subscriber receives it; the copy
    that came back (serialised and sent over tcpros), or None after timeout_s."""
    received: List[Any] = []
    done = threading.Event()

    def on_msg(got: Any) -> None:
        received.append(got)
        done.set()

    sub = rospy.Subscriber(topic, msg_type, on_msg, queue_size=1)
    pub = rospy.Publisher(topic, msg_type, queue_size=1, latch=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not done.is_set() and time.monotonic() < deadline:
            pub.publish(msg)
            done.wait(0.2)
        return received[0] if received else None
    finally:
        sub.unregister()
        pub.unregister()


# The synthetic drive the node tests replay (test/ros/conftest.py's drive_bag): small and short.
DRIVE_WIDTH, DRIVE_HEIGHT, DRIVE_FRAMES = 320, 96, 8


def launch_kitti(ros_master: Any, bag: Path, model: Path, *extra: str) -> Any:
    """kitti.launch replaying `bag` into the node on CPU torch, without rviz; `extra` are more launch args."""
    return ros_master.roslaunch("panoptic_perception", "kitti.launch", f"bag:={bag}", f"model:={model}",
                                "rviz:=false", "backend:=torch", "device:=cpu", "delay_s:=2.0",
                                "output:=screen", *extra)
