"""`bench soak`: the node for N minutes on a looping bag played faster than it runs.

Real processes: a private roscore, `roslaunch panoptic_perception kitti.launch` on a synthetic drive
(looping, sim time, so every loop is a clock jump back), and this process reading the node's
/diagnostics and its resident memory every --interval-s. Written to --out: soak.csv (one row per
sample: RSS, frames received / processed / dropped / skipped, latency median and p99, diagnostics
level and age) and soak.png (the same over time). The verdict, also in the row for RESULTS.md:

- RSS growth: a straight line fitted to RSS after the warm-up samples; growth over the run beyond
  max(3 x the residual noise, 2 % of the mean RSS) fails (issue 15: per-size caches grew for ever);
- stuck diagnostics: a status older than 3 periods (the reporter died), frames_processed not moving
  between two samples (the worker hung), or a final level other than OK.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import threading
import time
import xmlrpc.client
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from panoptic_perception.errors import ConfigError, PerceptionError
from panoptic_perception.size_args import size_arg

HELP = "soak: the node on a looping bag for N minutes; RSS, frame counts and latency sampled into CSV + PNG"
NODE = "/panoptic_perception"
DIAGNOSTICS_PERIOD_S = 1.0  # the node's default ~diagnostics_period_s
WARMUP_SAMPLES = 2  # model load and first allocations: not part of the trend
RSS_NOISE_FLOOR = 0.02  # growth below 2 % of the mean RSS is noise whatever the fit says


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default: 10)")
    parser.add_argument("--interval-s", type=float, default=30.0, help="sampling period (default: 30)")
    parser.add_argument("--model", default="", help="checkpoint (default: the shipped model)")
    parser.add_argument("--backend", choices=["auto", "torch", "onnxruntime", "tensorrt"], default="auto",
                        help="runtime backend of the node (default: auto)")
    parser.add_argument("--image-size", type=size_arg, default="1242x375",
                        help="camera image WxH of the synthetic drive (default: KITTI 1242x375)")
    parser.add_argument("--frames", type=int, default=20, help="frames in the looping drive (default: 20)")
    parser.add_argument("--rate", type=float, default=5.0,
                        help="playback rate of the 10 Hz drive; above the node's throughput (default: 5 = 50 Hz)")
    parser.add_argument("--out", type=Path, default=Path("out/soak"),
                        help="folder for soak.csv and soak.png (default: out/soak)")


@dataclass
class SoakSample:
    elapsed_s: float
    pid: int
    rss_mb: float
    frames_received: int
    frames_processed: int
    frames_dropped: int
    frames_skipped: int
    latency_median_ms: float
    latency_p99_ms: float
    level: int  # diagnostic_msgs/DiagnosticStatus level of the node's status
    diagnostics_age_s: float  # how old the newest status was when sampled
    message: str


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise OSError(f"no VmRSS for pid {pid}")


def node_pid(master_uri: str, name: str = NODE) -> Optional[int]:
    """Process id of a node, asked through the master (it changes when roslaunch respawns it)."""
    try:
        code, _, uri = xmlrpc.client.ServerProxy(master_uri).lookupNode("/soak", name)
        if code != 1:
            return None
        code, _, pid = xmlrpc.client.ServerProxy(uri).getPid("/soak")
        return int(pid) if code == 1 else None
    except (OSError, xmlrpc.client.Error):
        return None


def rss_growth(samples: Sequence[SoakSample], warmup: int = WARMUP_SAMPLES) -> Dict[str, float]:
    """Fitted RSS growth over the run after the warm-up, the fit's residual noise and the allowed growth."""
    import numpy as np

    steady = list(samples[warmup:]) if len(samples) > warmup + 2 else list(samples)
    t = np.array([s.elapsed_s for s in steady]) / 60.0
    rss = np.array([s.rss_mb for s in steady])
    if len(steady) < 2 or np.ptp(t) == 0:
        return {"slope_mb_per_min": 0.0, "growth_mb": 0.0, "noise_mb": 0.0, "allowed_mb": 0.0}
    slope, intercept = np.polyfit(t, rss, 1)
    noise = float(np.std(rss - (slope * t + intercept)))
    growth = float(slope * np.ptp(t))
    return {"slope_mb_per_min": float(slope), "growth_mb": growth, "noise_mb": noise,
            "allowed_mb": max(3.0 * noise, RSS_NOISE_FLOOR * float(np.mean(rss)))}


def stuck_diagnostics(samples: Sequence[SoakSample], period_s: float = DIAGNOSTICS_PERIOD_S) -> List[str]:
    """Why the node's diagnostics look stuck (empty when they do not)."""
    problems = []
    for sample in samples:
        if sample.diagnostics_age_s > 3 * period_s:
            problems.append(f"at {sample.elapsed_s:.0f} s the newest status was {sample.diagnostics_age_s:.1f} s old")
    for before, after in zip(samples, samples[1:]):
        if after.pid == before.pid and after.frames_processed <= before.frames_processed:
            problems.append(f"frames_processed stayed at {after.frames_processed} from {before.elapsed_s:.0f} s "
                            f"to {after.elapsed_s:.0f} s")
    if samples and samples[-1].level != 0:
        problems.append(f"final level {samples[-1].level}: {samples[-1].message}")
    return problems


def write_csv(samples: Sequence[SoakSample], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(SoakSample)])
        writer.writeheader()
        for sample in samples:
            writer.writerow(asdict(sample))


def write_plot(samples: Sequence[SoakSample], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    minutes = [s.elapsed_s / 60.0 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    axes[0].plot(minutes, [s.rss_mb for s in samples], "o-")
    axes[0].set_ylabel("node RSS (MB)")
    for name in ("frames_received", "frames_processed", "frames_dropped", "frames_skipped"):
        axes[1].plot(minutes, [getattr(s, name) for s in samples], "o-", label=name.replace("frames_", ""))
    axes[1].set_ylabel("frames")
    axes[1].legend()
    axes[2].plot(minutes, [s.latency_median_ms for s in samples], "o-", label="median")
    axes[2].plot(minutes, [s.latency_p99_ms for s in samples], "o-", label="p99")
    axes[2].set_ylabel("latency (ms)")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


class _Diagnostics:
    """The node's newest status and when it arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: Dict[str, str] = {}
        self.level = -1
        self.message = ""
        self.arrived = 0.0

    def on_msg(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("panoptic_perception"):
                with self.lock:
                    self.values = {kv.key: kv.value for kv in status.values}
                    self.level, self.message, self.arrived = int(status.level), status.message, time.monotonic()


def _number(values: Dict[str, str], key: str, kind=float):
    try:
        return kind(float(values[key]))
    except (KeyError, ValueError):
        return kind(float("nan")) if kind is float else 0


def _drive_bag(home: Path, args: argparse.Namespace) -> Path:
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter
    from panoptic_perception.ros.bag import write_kitti_bag

    width, height = args.image_size
    writer = DriveWriter(home / "drive", small_config(width, height), seed=7)
    writer.write(args.frames)
    bag = home / "drive.bag"
    write_kitti_bag(writer.drive, bag)
    return bag


def _soak(args: argparse.Namespace, home: Path, bag: Path) -> List[SoakSample]:

    import rospy
    from diagnostic_msgs.msg import DiagnosticArray

    from panoptic_perception.benchmarks.node import _node_log_tail
    from panoptic_perception.ros.processes import RosMaster, stop_process

    master = RosMaster(home).start()
    os.environ.update({k: v for k, v in master.env.items() if k.startswith("ROS")})
    launch = None
    diagnostics = _Diagnostics()
    samples: List[SoakSample] = []
    try:
        rospy.init_node("panoptic_soak", anonymous=True, disable_signals=True)
        sub = rospy.Subscriber("/diagnostics", DiagnosticArray, diagnostics.on_msg, queue_size=1)
        launch_args = [f"bag:={bag}", "rviz:=false", "loop:=true", f"rate:={args.rate}", "output:=log",
                       f"backend:={args.backend}"]
        if args.model:
            launch_args.append(f"model:={Path(args.model).resolve()}")
        launch = master.roslaunch("panoptic_perception", "kitti.launch", *launch_args)
        deadline = time.monotonic() + 300
        while _number(diagnostics.values, "frames_processed", int) == 0:  # model loaded, frames flowing
            if launch.poll() is not None or time.monotonic() > deadline:
                raise PerceptionError(f"bench soak: the node processed nothing; {_node_log_tail(home)}")
            time.sleep(0.5)
        start = time.monotonic()
        end = start + args.minutes * 60.0
        next_sample = start
        while True:
            now = time.monotonic()
            if now >= next_sample:
                pid = node_pid(master.uri)
                with diagnostics.lock:
                    values, level, message = dict(diagnostics.values), diagnostics.level, diagnostics.message
                    age = now - diagnostics.arrived
                samples.append(SoakSample(
                    elapsed_s=round(now - start, 1), pid=pid or 0, rss_mb=round(rss_mb(pid), 1) if pid else 0.0,
                    frames_received=_number(values, "frames_received", int),
                    frames_processed=_number(values, "frames_processed", int),
                    frames_dropped=_number(values, "frames_dropped", int),
                    frames_skipped=_number(values, "frames_skipped", int),
                    latency_median_ms=_number(values, "latency_ms_median"),
                    latency_p99_ms=_number(values, "latency_ms_p99"),
                    level=level, diagnostics_age_s=round(age, 2), message=message))
                print(f"bench soak: {samples[-1].elapsed_s:.0f} s, RSS {samples[-1].rss_mb:.0f} MB, processed "
                      f"{samples[-1].frames_processed}, dropped {samples[-1].frames_dropped}", flush=True)
                if now >= end:
                    break
                next_sample = min(next_sample + args.interval_s, end)
            if launch.poll() is not None:
                raise PerceptionError(f"bench soak: roslaunch exited; {_node_log_tail(home)}")
            time.sleep(min(0.5, max(0.0, next_sample - time.monotonic())))
        sub.unregister()
        return samples
    finally:
        if launch is not None:
            stop_process(launch)
        rospy.signal_shutdown("soak done")
        master.stop()


def run(args: argparse.Namespace) -> Dict[str, object]:
    from panoptic_perception.commands._outputs import check_writable

    if args.minutes <= 0 or args.interval_s <= 0 or args.frames < 2 or args.rate <= 0:
        raise ConfigError("--minutes, --interval-s and --rate must be > 0 and --frames >= 2")
    check_writable(args.out, "--out", folder=True)
    home = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    samples = _soak(args, home, _drive_bag(home, args))  # on failure its logs stay in `home`
    shutil.rmtree(home, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(samples, args.out / "soak.csv")
    write_plot(samples, args.out / "soak.png", f"bench soak: {args.minutes:g} min, input "
                                                f"{10 * args.rate:g} Hz, {args.image_size[0]}x{args.image_size[1]}")
    growth = rss_growth(samples)
    stuck = stuck_diagnostics(samples)
    first, last = samples[0], samples[-1]
    row = {
        "minutes": args.minutes, "input_hz": 10 * args.rate, "image": f"{args.image_size[0]}x{args.image_size[1]}",
        "samples": len(samples), "rss_first_mb": first.rss_mb, "rss_last_mb": last.rss_mb,
        "rss_growth_mb": round(growth["growth_mb"], 1), "rss_allowed_mb": round(growth["allowed_mb"], 1),
        "rss_growth_beyond_noise": growth["growth_mb"] > growth["allowed_mb"],
        "processed": last.frames_processed - first.frames_processed,
        "dropped": last.frames_dropped - first.frames_dropped,
        "skipped": last.frames_skipped - first.frames_skipped,
        "latency_median_ms": last.latency_median_ms, "latency_p99_ms": last.latency_p99_ms,
        "diagnostics_stuck": bool(stuck),
    }
    print(f"bench soak: wrote {args.out / 'soak.csv'} and {args.out / 'soak.png'}", flush=True)
    for problem in stuck:
        print(f"bench soak: stuck diagnostics: {problem}", flush=True)
    return {"title": "soak: the node on a looping bag", "rows": [row], "stuck": stuck, "rss": growth,
            "notes": f"kitti.launch on a looping {args.frames}-frame synthetic drive under sim time; RSS of the "
                     f"node process and its /diagnostics sampled every {args.interval_s:g} s; CSV and PNG in "
                     f"{args.out}"}
