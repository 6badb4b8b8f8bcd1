"""`eval`: Panoptic Quality of COCO-panoptic predictions against ground truth in the same format."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HELP = "PQ / SQ / RQ (All, Things, Stuff), per class, and mIoU of COCO panoptic predictions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt-json", required=True, type=Path, help="ground truth panoptic JSON")
    parser.add_argument("--gt-dir", required=True, type=Path, help="folder of ground truth panoptic PNGs")
    parser.add_argument("--pred-json", required=True, type=Path, help="predicted panoptic JSON")
    parser.add_argument("--pred-dir", required=True, type=Path, help="folder of predicted panoptic PNGs")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here as JSON")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes reading and scoring images (default 0: one per CPU core)")


def run(args: argparse.Namespace) -> int:
    import time

    from panoptic_perception.errors import ConfigError
    from panoptic_perception.eval.pq import evaluate_dirs
    from panoptic_perception.eval.report import format_report, result_to_dict

    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    workers = args.workers or (os.cpu_count() or 1)
    start = time.perf_counter()
    result = evaluate_dirs(args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, workers=workers)
    elapsed_s = time.perf_counter() - start
    print(format_report(result))
    print(f"\nevaluated {result.num_images} images in {elapsed_s:.2f} s with {workers} worker(s)")
    if args.json is not None:
        payload = result_to_dict(result)
        payload.update({"gt_json": str(args.gt_json), "pred_json": str(args.pred_json)})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"eval: wrote {args.json}")
    return 0
