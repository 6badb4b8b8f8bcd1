"""`bench projection`: one panoptic frame -> occupancy grid, class grid and objects."""
from __future__ import annotations

import argparse
import math
import time
from typing import Any, Dict

HELP = "ground projection of a panoptic frame (default 1242x375 KITTI camera) into the default grid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=200, help="timed frames (default 200)")
    parser.add_argument("--width", type=int, default=1242, help="image width in pixels")
    parser.add_argument("--height", type=int, default=375, help="image height in pixels")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the projection runs beside the network)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def _scene_outputs(width: int, height: int, device: str) -> tuple:
    from panoptic_perception.geometry.analytic_scene import Box, Street, render, to_torch
    from panoptic_perception.geometry.camera import Camera

    full = Camera()
    camera = full if (width, height) == (full.width, full.height) else Camera(
        full.intrinsics.scaled(width, height), full.extrinsics)
    car, person, building = 13, 11, 2
    boxes = tuple(Box(x, y, 4.4, 1.8, 1.5, math.radians(yaw), car) for x, y, yaw in (
        (9.0, -1.8, 0.0), (15.0, 2.0, 5.0), (22.0, -4.0, 30.0), (30.0, 1.5, -3.0), (42.0, -2.0, 0.0),
        (8.0, -6.5, 90.0), (55.0, 3.0, 0.0))) + (
        Box(18.0, 6.5, 0.6, 0.6, 1.75, 0.0, person), Box(26.0, -6.8, 0.6, 0.6, 1.75, 0.0, person),
        Box(30.0, 10.0, 40.0, 1.0, 10.0, 0.0, building, is_thing=False),
        Box(30.0, -10.0, 40.0, 1.0, 10.0, 0.0, building, is_thing=False))
    # 100 static slots, as the model's fusion output carries
    return camera, to_torch(render(camera, Street(boxes=boxes), num_slots=100), device)


def run(args: argparse.Namespace) -> Dict[str, Any]:

    import torch

    from panoptic_perception.benchmarks.timing import summarize_ms, time_call_ms
    from panoptic_perception.geometry.grid import load_grid_config
    from panoptic_perception.geometry.projection import GroundProjector
    from panoptic_perception.labels import load_label_space

    torch.set_num_threads(args.threads)
    camera, outputs = _scene_outputs(args.width, args.height, args.device)
    config = load_grid_config()
    start = time.perf_counter()
    projector = GroundProjector(camera, config, load_label_space("cityscapes"))
    projector.lookup(args.width, args.height, outputs["segment_map"].device)
    build_ms = (time.perf_counter() - start) * 1e3

    def frame() -> None:
        result = projector.project(outputs)
        if args.device != "cpu":
            torch.cuda.synchronize()
        return result

    samples = time_call_ms(frame, args.repeats, warmup=5)
    result = frame()
    geometry = config.grid.geometry()
    row = {"stage": "project", "image": f"{args.width}x{args.height}",
           "grid": f"{geometry.width}x{geometry.height}", "device": args.device, "threads": args.threads,
           **summarize_ms(samples),
           "objects": len(result.objects)}
    table = {"stage": "build tables (once per camera)", "image": row["image"], "grid": row["grid"],
             "device": args.device, "threads": args.threads, "median_ms": build_ms, "n": 1}
    return {"title": "projection: panoptic frame -> occupancy grid + objects", "rows": [row, table],
            "notes": "exact ray-cast street scene (geometry/analytic_scene.py), 9 things, 2 facades, "
                     f"100 segment slots, {geometry.resolution_m} m cells"}
