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
    parser.add_argument("--objects", type=int, default=50,
                        help="things per frame of the crowded scene (default 50): rows timing the tracking stage "
                             "alone on that many moving and parked cars")


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
    grid = pipeline.process_panoptic(frames[0].panoptic, frames[0].segments, world.camera).grid
    rows += _crowded_rows(pipeline, grid, args)
    return {"title": "tracking: tracker + fused grid per frame", "rows": rows,
            "notes": f"synthetic drive seed {args.seed}, exact panoptic truth through Pipeline.process_panoptic; "
                     f"median_ms etc. are the tracking stage alone; fused grid window {window}. Crowded rows: "
                     f"{args.objects} cars per frame (a third parked, the rest at 5-15 m/s, 0.1 m noise) fed to the "
                     f"Pipeline's tracking stage with one frame's grid, ego at 8 m/s"}


def crowded_objects(count: int, frames: int, seed: int = 0, frame_rate_hz: float = 10.0) -> tuple:
    """`count` cars in view for `frames` frames: per frame (ego pose, objects in the vehicle frame).

    Lanes 3.5 m apart across the grid, spread along the road so all stay 6-58 m ahead while the ego
    drives at 8 m/s; a third parked, the rest at 5-15 m/s. Positions carry 0.1 m noise.
    """
    from panoptic_perception.geometry.objects import Footprint, GroundObject

    rng = np.random.default_rng(seed)
    lanes = np.array([-10.5, -7.0, -3.5, 0.0, 3.5, 7.0, 10.5])
    lane = lanes[np.arange(count) % len(lanes)]
    ego_speed_mps, dt_s = 8.0, 1.0 / frame_rate_hz
    speed = np.where(np.arange(count) % 3 == 0, 0.0, rng.uniform(5.0, 15.0, count))
    # each starts where it stays 6-58 m ahead for the whole drive, spread over that stretch
    travel_m = (speed - ego_speed_mps) * (frames - 1) * dt_s
    near_m, far_m = 6.0 - np.minimum(travel_m, 0.0), 58.0 - np.maximum(travel_m, 0.0)
    start = near_m + (far_m - near_m) * ((np.arange(count) * 0.618) % 1.0)
    out = []
    for k in range(frames):
        ego_x = ego_speed_mps * k * dt_s
        pose = np.eye(4)
        pose[0, 3] = ego_x
        x = start + (speed - ego_speed_mps) * k * dt_s + rng.normal(0.0, 0.1, count)
        y = lane + rng.normal(0.0, 0.1, count)
        objects = [GroundObject(segment_id=1000 + i, category=13, class_name="car", score=0.9,
                                footprint=Footprint(float(x[i]), float(y[i]), 4.4, 1.8, 0.0),
                                range_m=float(np.hypot(x[i], y[i])), covariance_xy=(0.04, 0.0, 0.0, 0.01),
                                contact_columns=20, contact_visible=True, truncated=False)
                   for i in range(count)]
        out.append((pose, objects))
    return tuple(out)


def _crowded_rows(pipeline: Any, grid: Any, args: argparse.Namespace) -> List[Dict[str, Any]]:
    """The tracking stage on args.objects things per frame: tracker alone and with the fused grid."""
    import time

    from panoptic_perception.benchmarks.timing import summarize_ms

    scene = crowded_objects(args.objects, 30)
    stage = pipeline.tracking_stage
    rows = []
    for variant, with_pose in ((f"{args.objects} objects: tracker + fused grid (ego pose)", True),
                               (f"{args.objects} objects: tracker only (no pose)", False)):
        times_ms, confirmed = [], []
        for _ in range(args.passes):
            stage.reset()
            for k, (pose, objects) in enumerate(scene):
                start = time.perf_counter()
                result = stage.update(objects, k * 100_000_000, pose if with_pose else None,
                                      grid if with_pose else None)
                times_ms.append((time.perf_counter() - start) * 1e3)
                confirmed.append(sum(t.status == "confirmed" for t in result.tracks))
        rows.append({"stage": variant, "image": "-", "frames": len(scene) * args.passes, **summarize_ms(times_ms),
                     "projection_median_ms": float("nan"), "confirmed_tracks_median": float(np.median(confirmed))})
    return rows
