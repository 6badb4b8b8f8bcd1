"""`bench eval`: PQ evaluation speed on synthetic KITTI-sized panoptic maps, files to numbers.

Street-like maps (sky, buildings, road, sidewalk, vegetation, 8-30 overlapping cars / persons /
riders, VOID strips, a crowd region) and a prediction made from them with the errors a network
makes (shifted and resized instances, misses, wrong classes, spurious segments, ragged stuff
boundaries) are written as COCO panoptic PNG + JSON, then scored with `evaluate_dirs`.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np

from panoptic_perception.data.panoptic_io import PanopticAnnotation, Segment, categories_json

HELP = "PQ evaluation of N synthetic 1242x375 frames from PNG + JSON (default 500 frames)"

# cityscapes train ids
_ROAD, _SIDEWALK, _BUILDING, _VEGETATION, _SKY = 0, 1, 2, 8, 10
_THINGS = (11, 12, 13, 13, 13, 14)  # person, rider, car (most common), truck


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--width", type=int, default=1242)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to time evaluate_dirs with (default: 1 2)")
    parser.add_argument("--seed", type=int, default=0)


def synth_frame(rng: np.random.Generator, height: int, width: int
                ) -> Tuple[np.ndarray, List[dict], np.ndarray, List[dict]]:
    """One (gt map, gt segments_info, pred map, pred segments_info) pair."""
    gt = np.zeros((height, width), np.int32)
    cats = {}
    horizon = int(height * rng.uniform(0.35, 0.5))
    cols = np.arange(width)
    gt[:horizon] = 1
    cats[1] = _SKY
    skyline = horizon - rng.integers(0, horizon // 2, size=width // 40 + 1).repeat(40)[:width]
    rows = np.arange(height)[:, None]
    gt[(rows >= skyline[None, :]) & (rows < horizon + 10)] = 2
    cats[2] = _BUILDING
    gt[horizon + 10:] = 3
    cats[3] = _VEGETATION
    # road trapezoid widening towards the camera, sidewalks beside it
    half = (rows - horizon).clip(0) * (width / max(height - horizon, 1)) * rng.uniform(0.5, 0.9)
    centre = width / 2 + rng.uniform(-0.1, 0.1) * width
    dist = np.abs(cols[None, :] - centre)
    below = rows >= horizon
    gt[below & (dist < half * 1.3)] = 4
    cats[4] = _SIDEWALK
    gt[below & (dist < half)] = 5
    cats[5] = _ROAD
    next_id = 1000
    thing_ids = []
    for _ in range(rng.integers(8, 31)):  # far objects first: nearer ones overwrite (occlusion)
        h = int(rng.uniform(0.05, 0.5) * height)
        w = int(h * rng.uniform(0.4, 2.5))
        y1 = int(min(height, horizon + rng.uniform(0.0, 1.0) * (height - horizon) + h * 0.2))
        x0 = int(rng.integers(-w // 2, width - w // 2))
        gt[max(0, y1 - h):y1, max(0, x0):max(0, x0 + w)] = next_id
        cats[next_id] = int(rng.choice(_THINGS))
        thing_ids.append(next_id)
        next_id += 1
    crowd_id = next_id
    crowd_w = max(2, width // 15)
    x0 = int(rng.integers(0, width - crowd_w))
    gt[horizon:horizon + max(2, height // 20), x0:x0 + crowd_w] = crowd_id
    cats[crowd_id] = 13
    gt[height - max(1, height // 60):] = 0  # ego hood: VOID
    gt[:, rng.integers(0, width, size=3)] = 0  # thin unlabelled poles

    pred = np.roll(gt, (int(rng.integers(-2, 3)), int(rng.integers(-3, 4))), axis=(0, 1))
    pred[pred == crowd_id] = 5
    pred[pred == 0] = 5
    pred_cats = {k: v for k, v in cats.items() if k != crowd_id}
    for tid in thing_ids:
        r = rng.random()
        if r < 0.1:
            pred[pred == tid] = 5  # missed
            del pred_cats[tid]
        elif r < 0.2:
            pred_cats[tid] = int(rng.choice(_THINGS))  # wrong class
    for _ in range(rng.integers(0, 4)):  # spurious detections
        h = int(rng.integers(2, max(3, min(60, (height - horizon) // 2))))
        w = int(rng.integers(2, max(3, min(80, width // 4))))
        y, x = int(rng.integers(horizon, height - h)), int(rng.integers(0, width - w))
        pred[y:y + h, x:x + w] = next_id + 1
        pred_cats[next_id + 1] = int(rng.choice(_THINGS))
        next_id += 1
    present_g, present_p = set(np.unique(gt).tolist()), set(np.unique(pred).tolist())
    gt_segs = [Segment(id=k, category_id=v, iscrowd=k == crowd_id) for k, v in cats.items() if k in present_g]
    pred_segs = [Segment(id=k, category_id=v) for k, v in pred_cats.items() if k in present_p]
    return gt, gt_segs, pred, pred_segs


def _write_png(path: Path, ids: np.ndarray) -> None:
    import cv2

    from panoptic_perception.data.panoptic_io import id2rgb

    cv2.imwrite(str(path), id2rgb(ids)[..., ::-1])


def write_dataset(root: Path, frames: int, height: int, width: int, seed: int) -> Tuple[Path, Path]:
    from panoptic_perception.labels import load_label_space

    rng = np.random.default_rng(seed)
    space = load_label_space("cityscapes")
    out = {}
    for kind in ("gt", "pred"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        out[kind] = {"images": [], "annotations": [], "categories": categories_json(space)}
    for i in range(frames):
        name = f"{i:010d}"
        gt, gt_segs, pred, pred_segs = synth_frame(rng, height, width)
        for kind, ids, segs in (("gt", gt, gt_segs), ("pred", pred, pred_segs)):
            png = f"{name}.png"
            _write_png(root / kind / png, ids)
            out[kind]["images"].append({"id": name, "file_name": png, "width": width, "height": height})
            out[kind]["annotations"].append(PanopticAnnotation(name, png, segs).to_coco())
    for kind in ("gt", "pred"):
        (root / f"{kind}.json").write_text(json.dumps(out[kind]))
    return root / "gt.json", root / "pred.json"


def run(args: argparse.Namespace) -> dict:
    from panoptic_perception.benchmarks.timing import summarize_ms
    from panoptic_perception.eval.pq import PQAccumulator, evaluate_dirs

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        gt_json, pred_json = write_dataset(root, args.frames, args.height, args.width, args.seed)
        setup_s = time.perf_counter() - t0
        pq = float("nan")
        for workers in args.workers:
            start = time.perf_counter()
            result = evaluate_dirs(gt_json, root / "gt", pred_json, root / "pred", workers=workers)
            total_s = time.perf_counter() - start
            pq = result.all.pq
            rows.append({"mode": "evaluate_dirs (PNG + JSON)", "workers": workers, "frames": args.frames,
                         "total_s": total_s, "ms_per_frame": 1e3 * total_s / args.frames,
                         "frames_per_s": args.frames / total_s, "PQ": pq})
        # in-process accumulator only (what training's periodic eval pays per frame)
        rng = np.random.default_rng(args.seed + 1)
        frames = [synth_frame(rng, args.height, args.width) for _ in range(min(args.frames, 50))]
        acc = PQAccumulator(json.loads(gt_json.read_text())["categories"])
        samples = []
        for frame in frames:
            start = time.perf_counter()
            acc.add(*frame)
            samples.append((time.perf_counter() - start) * 1e3)
        stats = summarize_ms(samples)
        rows.append({"mode": "PQAccumulator.add (in memory)", "workers": 1, "frames": stats["n"],
                     "total_s": sum(samples) / 1e3, "ms_per_frame": stats["median_ms"],
                     "frames_per_s": 1e3 / stats["median_ms"], "PQ": acc.result().all.pq,
                     "p90_ms": stats["p90_ms"], "p99_ms": stats["p99_ms"]})
    return {"title": f"eval: PQ of {args.frames} synthetic {args.width}x{args.height} frames",
            "rows": rows,
            "notes": f"maps synthesised and written as PNG first ({setup_s:.1f} s, not timed); "
                     "evaluate_dirs times include reading both PNGs and JSONs; ms_per_frame for "
                     "PQAccumulator.add is a median"}
