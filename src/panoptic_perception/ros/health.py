"""The node's health bookkeeping for logs and /diagnostics, without rospy (clock injected, testable).

- Problems are throttled by KIND, not by text: the text of one kind varies with the frame id, the
  stamp and the sizes, and 40 bad frames with 40 frame ids must not give 40 log lines.
- Skipped frames are reported as a rate over a recent window, so one bad frame an hour ago does not
  keep /diagnostics at WARN forever.
- Images are counted as they arrive at the subscriber, before the Image/CameraInfo synchroniser:
  a camera whose CameraInfo never comes is visible (frames waiting, the missing topic named).
- A clock going backwards (a looping bag under sim time) is detected so the node can reset what
  depends on time.
"""
from __future__ import annotations

import collections
import re
import threading
import time
import xmlrpc.client
from typing import Callable, Deque, Optional, Tuple

from panoptic_perception.lru import LruCache

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
WINDOW_S = 10.0  # recent window of the skip rate
CAMERA_INFO_GRACE_S = 3.0  # images without any CameraInfo for this long: say which topic is missing
THROTTLE_KINDS = 256  # kinds of problem remembered by the log throttle

# What varies inside one kind of problem: quoted names (frame ids, encodings, classes), the
# "(frame 'x', stamp s.ns)" description, numbers (sizes, stamps, byte counts).
_VARYING = re.compile(r"\([^()]*\)|'[^']*'|\"[^\"]*\"|[-+]?[0-9][0-9.e+-]*")


def problem_kind(text: str) -> str:
    """The kind of problem a message describes: the message with everything frame-specific removed."""
    return _VARYING.sub("#", text)


class KindThrottle:
    """Log each KIND of problem at most once per period: two different bad inputs in a row both
    get a line, the same one repeated at frame rate (whatever its frame id) does not flood the log."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = period_s
        self._clock = clock
        # bounded: a problem text that escapes the normalisation must not grow memory per frame
        self._last: LruCache[float] = LruCache(THROTTLE_KINDS)

    def should_log(self, text: str) -> bool:
        kind = problem_kind(text)
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.period_s:
            return False
        self._last.put(kind, now)
        return True


class TimeJumpDetector:
    """True once each time the clock it is fed goes backwards (by more than `tolerance_s`)."""

    def __init__(self, tolerance_s: float = 0.0) -> None:
        self.tolerance_s = tolerance_s
        self.last: Optional[float] = None
        self.jumps = 0

    def jumped_back(self, now_s: float) -> bool:
        last, self.last = self.last, now_s
        if last is not None and now_s < last - self.tolerance_s:
            self.jumps += 1
            return True
        return False


class FrameHealth:
    """Counters and the recent-window status of the node (thread-safe: callbacks, worker, reporter)."""

    def __init__(self, window_s: float = WINDOW_S, camera_info_grace_s: float = CAMERA_INFO_GRACE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.camera_info_grace_s = camera_info_grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._outcomes: Deque[Tuple[float, bool]] = collections.deque()  # (time, skipped) per frame
        self.images_received = 0
        self.camera_infos_received = 0
        self.waiting_for_camera_info = 0  # images that arrived while no CameraInfo was coming
        self.skipped = 0
        self.grid_skipped = 0
        self.last_problem = ""
        self.last_grid_problem = ""
        self._last_camera_info: Optional[float] = None
        self._images_since_info = 0
        self._first_image_since_info: Optional[float] = None
        self._last_grid_problem_t: Optional[float] = None

    # -- events ---------------------------------------------------------------------------------

    def image_arrived(self) -> None:
        now = self._clock()
        with self._lock:
            self.images_received += 1
            if self._info_missing(now) or self._last_camera_info is None:
                self.waiting_for_camera_info += 1
            self._images_since_info += 1
            if self._first_image_since_info is None:
                self._first_image_since_info = now

    def camera_info_arrived(self) -> None:
        with self._lock:
            self.camera_infos_received += 1
            self._last_camera_info = self._clock()
            self._images_since_info = 0
            self._first_image_since_info = None

    def frame_processed(self) -> None:
        self._outcome(False)

    def frame_skipped(self, problem: str) -> None:
        with self._lock:
            self.skipped += 1
            self.last_problem = problem
        self._outcome(True)

    def grid_failed(self, problem: str) -> None:
        with self._lock:
            self.grid_skipped += 1
            self.last_grid_problem = problem
            self._last_grid_problem_t = self._clock()

    def reset_window(self) -> None:
        """Forget the recent window (the clock jumped): counters stay, rates start afresh."""
        with self._lock:
            self._outcomes.clear()
            self._last_grid_problem_t = None

    # -- state ----------------------------------------------------------------------------------

    def _outcome(self, skipped: bool) -> None:
        now = self._clock()
        with self._lock:
            self._outcomes.append((now, skipped))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._outcomes and self._outcomes[0][0] < now - self.window_s:
            self._outcomes.popleft()

    def _info_missing(self, now: float) -> bool:
        # images keep coming, and no CameraInfo since the first of them for longer than the grace
        first = self._first_image_since_info
        return first is not None and now - first > self.camera_info_grace_s

    def skip_rate(self) -> Tuple[int, int]:
        """(skipped, frames) over the recent window."""
        with self._lock:
            self._trim(self._clock())
            return sum(1 for _, s in self._outcomes if s), len(self._outcomes)

    def camera_info_missing_s(self) -> Optional[float]:
        """Seconds images have been arriving without any CameraInfo, when past the grace; else None."""
        now = self._clock()
        with self._lock:
            if not self._info_missing(now):
                return None
            return now - self._first_image_since_info

    def status(self, camera_info_topic: str) -> Tuple[int, str]:
        """(level, message) for /diagnostics: WARN while frames are being skipped in the recent window,
        while CameraInfo is missing, or while the grid fails; OK again once frames flow."""
        problems = []
        missing_s = self.camera_info_missing_s()
        if missing_s is not None:
            problems.append(f"no CameraInfo on {camera_info_topic} for {missing_s:.0f} s "
                            f"({self._images_since_info} images waiting)")
        skipped, frames = self.skip_rate()
        if skipped:
            problems.append(f"skipped {skipped} of {frames} frames in the last {self.window_s:.0f} s; "
                            f"last: {self.last_problem}")
        now = self._clock()
        with self._lock:
            grid_recent = self._last_grid_problem_t is not None and now - self._last_grid_problem_t <= self.window_s
        if grid_recent:
            problems.append(f"no grid: {self.last_grid_problem}")
        return (WARN if problems else OK), "; ".join(problems)


class _TimeoutTransport(xmlrpc.client.Transport):
    """xmlrpc without a timeout blocks forever on a master that accepts and never answers."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def make_connection(self, host):  # noqa: ANN001 - xmlrpc's signature
        connection = super().make_connection(host)
        connection.timeout = self.timeout_s
        return connection


class MasterWatch:
    """Notices that the ROS master went away and that a new one took its place.

    Measured (issue 15): rospy registers publishers, subscribers and parameters with the master once;
    after the master is killed and restarted on the same URI, the node keeps processing over its
    existing connections, but the new master knows none of its topics (a consumer started afterwards,
    rviz or a recorder, never connects) and every parameter is gone. rospy does not re-register, so
    the node cannot recover in place: it must exit and be respawned against the new master.
    """

    UP, DOWN, RESTARTED = "up", "down", "restarted"

    def __init__(self, master_uri: str, caller_id: str, timeout_s: float = 2.0) -> None:
        self.master_uri = master_uri
        self.caller_id = caller_id
        self._proxy = xmlrpc.client.ServerProxy(master_uri, transport=_TimeoutTransport(timeout_s))
        self.pid: Optional[int] = self._pid()
        self.state = self.UP if self.pid is not None else self.DOWN
        self.reason = ""

    def _pid(self) -> Optional[int]:
        try:
            code, _, pid = self._proxy.getPid(self.caller_id)
            return int(pid) if code == 1 else None
        except (OSError, xmlrpc.client.Error):
            return None

    def _knows_us(self) -> bool:
        try:
            code, _, _ = self._proxy.lookupNode(self.caller_id, self.caller_id)
            return code == 1
        except (OSError, xmlrpc.client.Error):
            return False

    def poll(self) -> str:
        """UP, DOWN (unreachable), or RESTARTED (reachable again, but a new master: another pid, or one
        that has never heard of this node). RESTARTED is final."""
        if self.state == self.RESTARTED:
            return self.state
        pid = self._pid()
        if pid is None:
            self.state = self.DOWN
        elif self.pid is None:  # unreachable from the start: remember the first one we see
            self.pid, self.state = pid, self.UP
        elif pid != self.pid or not self._knows_us():
            self.reason = (f"ROS master {self.master_uri} restarted (pid {self.pid} -> {pid}): it does not know "
                           f"this node's topics and parameters")
            self.state = self.RESTARTED
        else:
            self.state = self.UP
        return self.state
