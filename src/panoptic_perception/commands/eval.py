"""`eval`: Panoptic Quality of COCO-panoptic predictions against ground truth in the same format."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HELP = "PQ / SQ / RQ (All, Things, Stuff), per class, and mIoU of COCO panoptic predictions (or of a model)"
COCO_ARGS = ("gt_json", "gt_dir", "pred_json", "pred_dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt-json", type=Path, help="ground truth panoptic JSON")
    parser.add_argument("--gt-dir", type=Path, help="folder of ground truth panoptic PNGs")
    parser.add_argument("--pred-json", type=Path, help="predicted panoptic JSON")
    parser.add_argument("--pred-dir", type=Path, help="folder of predicted panoptic PNGs")
    parser.add_argument("--model", type=Path, default=None,
                        help="instead of prediction files: run this checkpoint through the Pipeline on --data")
    parser.add_argument("--data", type=Path, default=None,
                        help="with --model: dataset root (synthetic drives, or a dataset of --data-kind)")
    parser.add_argument("--data-kind", default="synthetic", choices=["synthetic", "cityscapes", "kitti_step"],
                        help="with --model: dataset format (default: synthetic)")
    parser.add_argument("--split", default="val", help="with --model: cityscapes / kitti_step split (default: val)")
    parser.add_argument("--max-frames", type=int, default=None, help="with --model: score at most this many frames")
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
    given = [name for name in COCO_ARGS if getattr(args, name) is not None]
    start = time.perf_counter()
    if args.model is not None:
        if given or args.data is None:
            raise ConfigError("--model needs --data and excludes --gt-json/--gt-dir/--pred-json/--pred-dir")
        result = _evaluate_model(args)
        source = {"model": str(args.model), "data": str(args.data)}
        how = "through the Pipeline"
    else:
        if len(given) != len(COCO_ARGS):
            missing = ", ".join("--" + n.replace("_", "-") for n in COCO_ARGS if n not in given)
            raise ConfigError(f"missing {missing} (or use --model with --data)")
        workers = args.workers or (os.cpu_count() or 1)
        result = evaluate_dirs(args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, workers=workers)
        source = {"gt_json": str(args.gt_json), "pred_json": str(args.pred_json)}
        how = f"with {workers} worker(s)"
    elapsed_s = time.perf_counter() - start
    print(format_report(result))
    print(f"\nevaluated {result.num_images} images in {elapsed_s:.2f} s {how}")
    if args.json is not None:
        payload = result_to_dict(result)
        payload.update(source)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"eval: wrote {args.json}")
    return 0


def _evaluate_model(args: argparse.Namespace):
    import dataclasses

    from panoptic_perception.data.datasets import DatasetConfig, build_dataset
    from panoptic_perception.errors import ConfigError
    from panoptic_perception.eval.run import evaluate_pipeline
    from panoptic_perception.pipeline import Pipeline, load_pipeline_config

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    dataset = build_dataset(DatasetConfig(kind=args.data_kind, root=str(args.data), split=args.split))
    config = dataclasses.replace(load_pipeline_config(), model_path=str(args.model), project_grid=False)
    pipeline = Pipeline(config)
    print(f"eval: {pipeline.describe()}; {len(dataset)} frames in {args.data}", flush=True)
    return evaluate_pipeline(pipeline, dataset, pipeline.label_space, args.max_frames)
