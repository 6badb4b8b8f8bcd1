"""`bench tracking`: what tracking adds to a frame (tracker, fused grid) on a synthetic drive's truth."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Dict, List

import numpy as np

HELP = "tracker + fused grid per frame on a synthetic drive's exact panoptic truth (Pipeline.process_panoptic)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=30, help="frames of the drive (default 30)")
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the drive (default 5)")
    parser.add_argument("--seed", type=int, default=9900, help="synthetic world seed (default 9900)")
    parser.add_argument("--scale", type=float, default=0.5,
                        help="camera resolution relative to KITTI's 1242x375 (default 0.5: rendering is slow)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def _frames(args: argparse.Namespace) -> tuple:
    from panoptic_perception.data import synth

    config = synth.SynthConfig()
    c = config.camera
    s = args.scale
    config = dataclasses.replace(config, camera=dataclasses.replace(
        c, width=int(round(c.width * s)), height=int(round(c.height * s)), fx=c.fx * s, fy=c.fy * s,
        cx=c.cx * s, cy=c.cy * s))
    world = synth.StreetWorld(config, seed=args.seed)
    return world, [world.render(k) for k in range(args.frames)]


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    from panoptic_perception.benchmarks.timing import summarize_ms
    from panoptic_perception.pipeline import Pipeline, PipelineConfig, resolve_path
    from panoptic_perception.tracking.fused_grid import load_fused_grid_config

    torch.set_num_threads(args.threads)
    world, frames = _frames(args)
    pipeline = Pipeline(PipelineConfig())
    rows: List[Dict[str, Any]] = []
    for variant, with_pose in (("tracker + fused grid (ego pose)", True), ("tracker only (no pose)", False)):
        projection_ms, tracking_ms, confirmed = [], [], []
        for _ in range(args.passes):
            pipeline.reset_tracking()
            for frame in frames:
                pose = world.ego_pose(frame.index) if with_pose else None
                result = pipeline.process_panoptic(frame.panoptic, frame.segments, world.camera, frame.timestamp_ns,
                                                   pose)
                projection_ms.append(result.timings_ms["projection_ms"])
                tracking_ms.append(result.timings_ms["tracking_ms"])
                confirmed.append(sum(t.status == "confirmed" for t in result.tracks))
        rows.append({"stage": variant, "image": f"{world.camera.width}x{world.camera.height}",
                     "frames": len(frames) * args.passes, **summarize_ms(tracking_ms),
                     "projection_median_ms": float(np.median(projection_ms)),
                     "confirmed_tracks_median": float(np.median(confirmed))})
    fused = load_fused_grid_config(resolve_path(pipeline.config.fused_grid_config))
    window = f"{fused.size_x_m:.0f}x{fused.size_y_m:.0f} m at {fused.resolution_m} m"
    return {"title": "tracking: tracker + fused grid per frame", "rows": rows,
            "notes": f"synthetic drive seed {args.seed}, exact panoptic truth through Pipeline.process_panoptic; "
                     f"median_ms etc. are the tracking stage alone; fused grid window {window}"}
