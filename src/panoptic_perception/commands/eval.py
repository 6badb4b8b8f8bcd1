"""`eval`: Panoptic Quality of COCO-panoptic predictions against ground truth in the same format, or
(--tracking) tracking scores of KITTI tracking files against synthetic drives' track truth."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from panoptic_perception.errors import ConfigError

HELP = ("PQ / SQ / RQ (All, Things, Stuff), per class, and mIoU of COCO panoptic predictions (or of a model); "
        "with --tracking, HOTA / MOTA / IDF1 of KITTI tracking files")
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
    parser.add_argument("--min-thing-area-px", type=int, default=0, metavar="N",
                        help="with --model: ground-truth things smaller than N pixels count as crowd, which PQ "
                             "ignores (no miss, no false positive on them), as real datasets leave far tiny "
                             "things unannotated; the report says so (default 0: every segment counts)")
    parser.add_argument("--compare-fusion", default=None, metavar="MODES",
                        help="with --model: score these fusion modes of the checkpoint on the same frames, "
                             "e.g. panoptic_fpn,jsis,conv_head (Table 1 of the Inria report, per class)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here as JSON")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="with --compare-fusion: also write the comparison tables here as markdown")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes reading and scoring images (default 0: one per CPU core)")
    parser.add_argument("--tracking", action="store_true",
                        help="score tracks instead: --tracks (KITTI tracking files, as `track` writes) against the "
                             "synthetic drives under --data (their gt/objects/ track truth)")
    parser.add_argument("--tracks", type=Path, default=None,
                        help="with --tracking: folder of <drive>.txt (+ <drive>.velocity.json) files")
    parser.add_argument("--footprints", action="store_true",
                        help="score the grid instead: IoU of the occupied thing cells with the true footprints of the "
                             "things in view, on the synthetic drives under --data (their gt/bev/); the drives' "
                             "ground-truth panoptic is projected, or with --model the network's output")


def run(args: argparse.Namespace) -> int:

    from panoptic_perception.commands._outputs import check_writable
    from panoptic_perception.eval.pq import evaluate_dirs
    from panoptic_perception.eval.report import format_report, result_to_dict

    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    check_writable(args.json, "--json")  # before the evaluation, not after it
    check_writable(args.markdown, "--markdown")
    given = [name for name in COCO_ARGS if getattr(args, name) is not None]
    if args.footprints:
        return _evaluate_footprints(args, given)
    if args.tracking or args.tracks is not None:
        return _evaluate_tracking(args, given)
    if args.min_thing_area_px < 0:
        raise ConfigError(f"--min-thing-area-px must be >= 0, got {args.min_thing_area_px}")
    if args.min_thing_area_px and (args.model is None or args.compare_fusion is not None):
        raise ConfigError("--min-thing-area-px goes with --model (and not with --compare-fusion)")
    if args.compare_fusion is not None or args.markdown is not None:
        return _compare_fusion(args, given)
    start = time.perf_counter()
    if args.model is not None:
        if given or args.data is None:
            raise ConfigError("--model needs --data and excludes --gt-json/--gt-dir/--pred-json/--pred-dir")
        result = _evaluate_model(args)
        source = {"model": str(args.model), "data": str(args.data), "min_thing_area_px": args.min_thing_area_px}
        how = "through the Pipeline"
        if args.min_thing_area_px:
            how += f"; ground-truth things under {args.min_thing_area_px} px counted as crowd (void)"
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


def _dataset(args: argparse.Namespace):
    from panoptic_perception.data.datasets import DatasetConfig, build_dataset

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    return build_dataset(DatasetConfig(kind=args.data_kind, root=str(args.data), split=args.split))


def _compare_fusion(args: argparse.Namespace, given) -> int:

    from panoptic_perception.eval.report import comparison_to_dict, format_comparison, format_comparison_markdown
    from panoptic_perception.eval.run import compare_fusions
    from panoptic_perception.pipeline import load_pipeline_config

    if args.compare_fusion is None:
        raise ConfigError("--markdown goes with --compare-fusion")
    if args.model is None or args.data is None or given:
        raise ConfigError("--compare-fusion needs --model and --data "
                          "(and no --gt-json/--gt-dir/--pred-json/--pred-dir)")
    modes = [m.strip() for m in args.compare_fusion.split(",") if m.strip()]
    if len(set(modes)) != len(modes):
        raise ConfigError(f"--compare-fusion lists a mode twice: {args.compare_fusion}")
    dataset = _dataset(args)
    # Eager torch in fp32 for every mode: the comparison is about the fusion rule, and a compiled
    # backend's cache cannot key an in-memory model by its weights.
    runtime = dataclasses.replace(load_pipeline_config().runtime, backend="torch", precision="fp32",
                                  warmup_frames=0)
    print(f"eval: fusions {', '.join(modes)} of {args.model} on {len(dataset)} frames in {args.data}", flush=True)
    start = time.perf_counter()
    results = compare_fusions(args.model, modes, dataset, runtime, args.max_frames,
                              log=lambda line: print(f"eval: {line}", flush=True))
    elapsed_s = time.perf_counter() - start
    print(format_comparison(results))
    print(f"\nevaluated {len(modes)} fusions x {next(iter(results.values())).num_images} images in {elapsed_s:.1f} s")
    source = {"model": str(args.model), "data": str(args.data)}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**comparison_to_dict(results), **source}, indent=2))
        print(f"eval: wrote {args.json}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"Fusion comparison: `{args.model}` on `{args.data}`\n\n"
                                 + format_comparison_markdown(results))
        print(f"eval: wrote {args.markdown}")
    return 0


def _evaluate_model(args: argparse.Namespace):

    from panoptic_perception.eval.run import evaluate_pipeline
    from panoptic_perception.pipeline import Pipeline, load_pipeline_config

    dataset = _dataset(args)
    config = dataclasses.replace(load_pipeline_config(), model_path=str(args.model), project_grid=False)
    pipeline = Pipeline(config)
    print(f"eval: {pipeline.describe()}; {len(dataset)} frames in {args.data}", flush=True)
    return evaluate_pipeline(pipeline, dataset, pipeline.label_space, args.max_frames,
                             min_thing_area_px=args.min_thing_area_px)


def _evaluate_tracking(args: argparse.Namespace, given) -> int:
    from panoptic_perception.eval.tracking import evaluate_folder, format_report

    if not args.tracking:
        raise ConfigError("--tracks goes with --tracking")
    if args.tracks is None or args.data is None:
        raise ConfigError("--tracking needs --tracks (folder of KITTI tracking files) and --data (synthetic drives)")
    others = ["--" + n.replace("_", "-") for n in given]
    others += [flag for flag, value in (("--model", args.model), ("--compare-fusion", args.compare_fusion),
                                        ("--markdown", args.markdown)) if value is not None]
    if others:
        raise ConfigError(f"--tracking excludes {', '.join(others)}")
    start = time.perf_counter()
    report = evaluate_folder(args.tracks, args.data, log=lambda line: print(f"eval: {line}", flush=True))
    print(format_report(report))
    print(f"\nscored {len(report['drives'])} drive(s) in {time.perf_counter() - start:.2f} s")
    if args.json is not None:
        report.update(tracks=str(args.tracks), data=str(args.data))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"eval: wrote {args.json}")
    return 0


def _evaluate_footprints(args: argparse.Namespace, given) -> int:
    from panoptic_perception.data.kitti import find_drives
    from panoptic_perception.eval.footprints import FootprintScore, format_footprints, score_drive
    from panoptic_perception.pipeline import Pipeline, load_pipeline_config

    others = ["--" + n.replace("_", "-") for n in given]
    others += [flag for flag, value in (("--compare-fusion", args.compare_fusion), ("--markdown", args.markdown),
                                        ("--tracks", args.tracks)) if value is not None]
    others += ["--tracking"] if args.tracking else []
    if others:
        raise ConfigError(f"--footprints excludes {', '.join(others)}")
    if args.data is None:
        raise ConfigError("--footprints needs --data (synthetic drives, as `synth --out` writes them)")
    drives = find_drives(args.data)
    if not drives:
        raise ConfigError(f"--data {args.data}: no drive (DATE_drive_XXXX_sync with image_02/) found")
    config = dataclasses.replace(load_pipeline_config(), track=False)
    if args.model is not None:
        config = dataclasses.replace(config, model_path=str(args.model))
    pipeline = Pipeline(config)
    start = time.perf_counter()
    score = FootprintScore()
    for drive in drives:
        score_drive(pipeline, drive, score, use_model=args.model is not None, max_frames=args.max_frames)
    source = f"the network ({args.model})" if args.model is not None else "the ground-truth panoptic"
    print(format_footprints(score))
    print(f"\nscored {len(score.frames)} frames of {len(drives)} drive(s), grids projected from {source}, "
          f"in {time.perf_counter() - start:.2f} s")
    if args.json is not None:
        report = dict(score.to_dict(), data=str(args.data), source="model" if args.model is not None else "truth",
                      model=str(args.model) if args.model is not None else None)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"eval: wrote {args.json}")
    return 0
