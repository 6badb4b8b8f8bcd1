"""`bench pipeline`: the full Pipeline (preprocess, network + fusion, postprocess, projection) on
synthetic KITTI-size frames, per backend."""
from __future__ import annotations

import argparse
import dataclasses
import resource
import time
from typing import Dict, List, Tuple

from panoptic_perception.errors import ConfigError
from panoptic_perception.size_args import size_arg, with_input_size

STAGES = ("preprocess_ms", "network_ms", "postprocess_ms", "projection_ms", "total_ms")
HELP = "full Pipeline latency per stage (median / p90 / p99), fps and peak memory, per backend"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", action="append", choices=["auto", "tensorrt", "torch", "onnxruntime"],
                        help="backend(s) to measure, in order (default: torch then onnxruntime)")
    parser.add_argument("--model", default="", help="checkpoint (default: the shipped model)")
    parser.add_argument("--input-size", type=size_arg, default=None, help="network input WxH override, e.g. 1280x384")
    parser.add_argument("--image-size", type=size_arg, default="1242x375",
                        help="camera image WxH (default: KITTI 1242x375)")
    parser.add_argument("--frames", type=int, default=30, help="timed frames per backend (default: 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames first (default: 3)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", choices=["fp32", "fp16"], default=None)
    parser.add_argument("--torch-compile", action="store_true", help="torch backend: torch.compile (CUDA)")
    parser.add_argument("--cuda-graphs", action="store_true", help="torch backend: CUDA graphs")


def synthetic_frames(image_w: int, image_h: int) -> list:
    """The frames every Pipeline benchmark runs on: 5 synthetic street frames, seed 42."""
    from panoptic_perception.data.synth import StreetWorld, small_config

    world = StreetWorld(small_config(image_w, image_h), seed=42)
    return [world.render(i) for i in range(5)]


def time_frames(pipeline, frames: list, warmup: int, count: int) -> Tuple[Dict[str, List[float]], float]:
    """Per-stage timings of `count` frames after `warmup` untimed ones (cycling through `frames`), and
    the wall time of the timed ones in seconds."""
    samples: Dict[str, List[float]] = {stage: [] for stage in STAGES}
    wall = time.perf_counter()
    for index in range(warmup + count):
        frame = frames[index % len(frames)]
        if index == warmup:
            wall = time.perf_counter()
        result = pipeline.process(frame.rgb, frame.camera)
        if index >= warmup:
            for stage in STAGES:
                samples[stage].append(result.timings_ms.get(stage, 0.0))
    return samples, time.perf_counter() - wall


def run(args: argparse.Namespace) -> Dict[str, object]:

    import numpy as np
    import torch

    from panoptic_perception.benchmarks.timing import summarize_ms
    from panoptic_perception.pipeline import Pipeline, load_pipeline_config

    if args.frames < 1 or args.warmup < 0:
        raise ConfigError("--frames must be >= 1 and --warmup >= 0")
    image_w, image_h = args.image_size
    frames = synthetic_frames(image_w, image_h)
    base = load_pipeline_config()
    if args.model:
        base = dataclasses.replace(base, model_path=args.model)
    base = with_input_size(base, args.input_size)
    rows: List[Dict[str, object]] = []
    for backend in args.backend or ["torch", "onnxruntime"]:
        runtime = dataclasses.replace(base.runtime, backend=backend, device=args.device,
                                      torch_compile=args.torch_compile, cuda_graphs=args.cuda_graphs,
                                      **({"precision": args.precision} if args.precision else {}))
        start = time.perf_counter()
        pipeline = Pipeline(dataclasses.replace(base, runtime=runtime))
        setup_s = time.perf_counter() - start
        if pipeline.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        samples, elapsed = time_frames(pipeline, frames, args.warmup, args.frames)
        total = summarize_ms(samples["total_ms"])
        network = np.median(samples["network_ms"])
        row: Dict[str, object] = {
            "backend": pipeline.backend.name, "device": str(pipeline.device), "precision": pipeline.backend.precision,
            "input": f"{pipeline.input_size[0]}x{pipeline.input_size[1]}", "image": f"{image_w}x{image_h}",
        }
        for stage in STAGES:
            stats = summarize_ms(samples[stage])
            name = stage[:-3]
            row[f"{name}_median_ms"] = stats["median_ms"]
        row.update(total_p90_ms=total["p90_ms"], total_p99_ms=total["p99_ms"], fps=args.frames / elapsed,
                   outside_network_pct=100.0 * (total["median_ms"] - network) / total["median_ms"],
                   setup_s=setup_s)
        if pipeline.device.type == "cuda":
            row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(row)
        print(f"bench pipeline: {row['backend']}: {total['median_ms']:.1f} ms median, {row['fps']:.2f} fps",
              flush=True)
    if len(rows) > 1:
        base_fps = float(rows[0]["fps"])
        for row in rows:
            row["speedup_vs_first"] = float(row["fps"]) / base_fps
    model = base.model_path if not args.model else args.model
    return {"title": "pipeline: full frame, per stage", "rows": rows,
            "notes": f"model {model}; synthetic frames (seed 42); network_ms includes the in-graph fusion; "
                     f"peak_rss_mb is the whole process so far"}
