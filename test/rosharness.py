"""Test-side ROS helpers: the package's process control plus checks that nothing was left behind."""
from __future__ import annotations

from pathlib import Path
from typing import List

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
