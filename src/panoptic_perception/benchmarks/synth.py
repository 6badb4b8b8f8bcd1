"""`bench synth`: render + write a synthetic drive (default 100 frames at 1242x375)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

HELP = "synthetic street world: frames rendered and written per second (KITTI size by default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--render-repeats", type=int, default=10, help="frames for the render-only latency row"
    )


def run(args: argparse.Namespace) -> dict:
    from panoptic_perception.benchmarks.timing import summarize_ms
    from panoptic_perception.data.synth import StreetWorld, SynthConfig
    from panoptic_perception.data.synth.writer import DriveWriter

    config = SynthConfig()
    rows = []
    world = StreetWorld(config, args.seed)
    world.render(0)  # builds the cached static geometry, as the writer's workers do once
    samples = []
    for i in range(1, args.render_repeats + 1):
        start = time.perf_counter()
        world.render(i)
        samples.append((time.perf_counter() - start) * 1e3)
    stats = summarize_ms(samples)
    rows.append(
        {
            "stage": "render (in memory), 1 process",
            "size": f"{config.camera.width}x{config.camera.height}",
            **stats,
        }
    )
    out = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        start = time.perf_counter()
        done = DriveWriter(out, config, args.seed).write(args.frames, workers=args.workers)
        total_s = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rows.append(
        {
            "stage": f"synth: render + write {done} frames, {args.workers} workers",
            "size": f"{config.camera.width}x{config.camera.height}",
            "total_s": total_s,
            "frames_per_s": done / total_s,
            "median_ms": 1e3 * total_s / done,
        }
    )
    return {
        "title": "synth (synthetic street world)",
        "rows": rows,
        "notes": f"seed {args.seed}; target: 100 frames at 1242x375 written in under 60 s on 2 cores",
    }
