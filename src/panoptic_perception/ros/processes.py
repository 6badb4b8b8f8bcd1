"""Real ROS processes started by this package (the demo) and its tests: roscore on a free port in
a private ROS_HOME, roslaunch and rosbag play against it, each stopped by its own process id
(never by name), so nothing of a user's own ROS session is touched."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import xmlrpc.client
from pathlib import Path
from typing import Dict, Optional, Sequence


class _TimeoutTransport(xmlrpc.client.Transport):
    """XML-RPC over HTTP with a socket timeout: a port held by something that is not a ROS master
    accepts the connection and never answers."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    def make_connection(self, host):
        connection = super().make_connection(host)
        connection.timeout = self._timeout_s
        return connection


class PortTakenError(RuntimeError):
    """roscore could not bind its port: something else took it first."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes: it only waits to be reaped.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def stop_pids(pids: Sequence[int], timeout_s: float = 10.0) -> None:
    """SIGINT (ROS shuts down cleanly on it), then SIGKILL whatever is still alive."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class RosMaster:
    """A roscore of our own: free port, temp ROS_HOME, known pids."""

    def __init__(self, home: Path, port: Optional[int] = None) -> None:
        """`port`: a given one (e.g. to restart a master where the old one was), else a free one."""
        self.home = Path(home)
        self._port_given = port is not None
        self.port = port or free_port()
        self.process: Optional[subprocess.Popen] = None
        self.pids: Dict[str, int] = {}

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(
            ROS_MASTER_URI=self.uri,
            ROS_HOME=str(self.home),
            ROS_LOG_DIR=str(self.home / "log"),
            ROS_IP="127.0.0.1",
            PYTHONUNBUFFERED="1",
        )
        env.pop("ROS_HOSTNAME", None)
        return env

    def start(self, timeout_s: float = 30.0, attempts: int = 3) -> RosMaster:
        """Start roscore and wait until the master and rosout answer. A free port can be taken by
        another process between finding it and roscore binding it (other test runs, other ROS
        masters on the machine): then another free port is tried, unless the port was given."""
        for attempt in range(attempts):
            try:
                return self._start_once(timeout_s)
            except PortTakenError:
                if self._port_given or attempt == attempts - 1:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout_s: float) -> RosMaster:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "roscore.log", "wb")
        self.process = subprocess.Popen(
            ["roscore", "-p", str(self.port)], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pids["roscore"] = self.process.pid
        master = xmlrpc.client.ServerProxy(self.uri, transport=_TimeoutTransport(1.0))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            log_text = (self.home / "roscore.log").read_text(errors="replace")
            if f"port {self.port} is already in use" in log_text:
                self.stop()  # roslaunch may still wait for a master that will never be its own
                raise PortTakenError(f"roscore port {self.port} is already in use")
            if self.process.poll() is not None:
                raise RuntimeError(f"roscore exited: {log_text[-2000:]}")
            try:
                code, _, master_pid = master.getPid("/test")
                code_r, _, rosout_uri = master.lookupNode("/test", "/rosout")
                if code == 1 and code_r == 1:
                    self.pids["rosmaster"] = int(master_pid)
                    rosout = xmlrpc.client.ServerProxy(rosout_uri, transport=_TimeoutTransport(1.0))
                    _, _, rosout_pid = rosout.getPid("/test")
                    self.pids["rosout"] = int(rosout_pid)
                    return self
            except (OSError, xmlrpc.client.Error):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"roscore on port {self.port} did not come up in {timeout_s} s")

    def stop(self) -> None:
        stop_pids(list(self.pids.values()))
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def run(self, argv: Sequence[str], log_name: str, extra_env: Optional[Dict[str, str]] = None,
            ) -> subprocess.Popen:
        """Start a ROS tool (roslaunch, rosbag play, rostopic ...) against this master."""
        env = self.env
        if extra_env:
            env.update(extra_env)
        log = open(self.home / log_name, "wb")
        return subprocess.Popen(list(argv), env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def roslaunch(self, package: str, launch_file: str, *args: str, **kwargs) -> subprocess.Popen:
        return self.run(["roslaunch", "--wait", package, launch_file, *args],
                        log_name=f"roslaunch_{launch_file}.log", **kwargs)

    def rosbag_play(self, bag: Path, *args: str, **kwargs) -> subprocess.Popen:
        return self.run(["rosbag", "play", "--quiet", *args, str(bag)], log_name="rosbag_play.log", **kwargs)


def stop_process(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Stop a process we started (and its children in its session) by its pid.

    roslaunch starts each node in a session of its own and escalates SIGINT to SIGTERM after 15 s and
    to SIGKILL 2 s later; killing roslaunch before it has done so would orphan a slow-to-exit node,
    which the next launch's node of the same name then collides with. Hence the wait of 20 s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
