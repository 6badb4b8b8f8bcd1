"""`bench gpu`: the GPU acceptance run, one command for a tester with a CUDA machine for 10 minutes.

1. TensorRT fp16 engines of the shipped light model (1242x375 camera, its 1280x384 input) and of the
   detectron2-layout R-50 (2048x1024; random weights: speed does not depend on them) built through
   the engine cache into a fresh cache folder (build time), then built again: it must load.
2. Equivalence against torch fp32 eager on the same frames: segment maps agree on >= 99.5 % of
   pixels and every reference segment is matched (same category, IoU > 0.5), for TensorRT fp16 and
   torch fp16.
3. Latency (median / p99, whole Pipeline and network) of torch fp32, torch fp16, torch fp16 + CUDA
   graphs, torch fp16 + torch.compile and TensorRT fp16 for both models; GPU memory peak.
4. The node through camera.launch with the TensorRT backend, the camera faster than it runs.
Without CUDA it says so and measures nothing. `acceptance` takes the device and the variants, so
its structure is tested on the CPU with the torch and onnxruntime backends standing in.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from panoptic_perception.benchmarks.pipeline import synthetic_frames, time_frames
from panoptic_perception.errors import ConfigError

HELP = ("GPU acceptance: TensorRT engines through the cache, equivalence with torch, latency of every GPU path, "
        "the node on TensorRT (says 'no CUDA device' and measures nothing without one)")
PIXEL_AGREEMENT_MIN_PCT = 99.5
MATCH_IOU = 0.5
R50_CONFIG = "config/model_resnet50.yaml"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    backend: str
    precision: str
    cuda_graphs: bool = False
    torch_compile: bool = False


GPU_VARIANTS = (Variant("torch fp32", "torch", "fp32"), Variant("torch fp16", "torch", "fp16"),
                Variant("torch fp16 + CUDA graphs", "torch", "fp16", cuda_graphs=True),
                Variant("torch fp16 + torch.compile", "torch", "fp16", torch_compile=True),
                Variant("TensorRT fp16", "tensorrt", "fp16"))
ENGINE = GPU_VARIANTS[-1]
REFERENCE = GPU_VARIANTS[0]


@dataclasses.dataclass(frozen=True)
class BenchModel:
    name: str
    checkpoint: Path
    image_size: Tuple[int, int]  # camera width, height


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=50, help="timed frames per variant (default: 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames first (default: 5)")
    parser.add_argument("--skip-node", action="store_true", help="leave out step 4 (the node)")


def random_r50_checkpoint(directory: Path, seed: int = 0) -> Path:
    """The detectron2-layout R-50 with seeded random weights, written once into `directory`."""
    import torch

    from panoptic_perception.model.checkpoint import save_checkpoint
    from panoptic_perception.model.config import load_model_config
    from panoptic_perception.model.panoptic_fpn import build_model
    from panoptic_perception.pipeline import resolve_path

    path = directory / "bench_gpu_r50_random.pt"
    if not path.is_file():
        config = load_model_config(resolve_path(R50_CONFIG))
        torch.manual_seed(seed)
        save_checkpoint(path, build_model(config).state_dict(), config, {"source": "bench gpu: random weights"})
    return path


def segment_agreement(reference, result) -> Dict[str, float]:
    """Pixel agreement of two FrameResults' category maps and how many reference segments `result`
    matches (same category, IoU > MATCH_IOU)."""
    import numpy as np

    agree_pct = 100.0 * float(np.mean(reference.category_map == result.category_map))
    unmatched = 0
    for segment in reference.segments:
        mask = reference.segment_map == segment.id
        best = 0.0
        for candidate in result.segments:
            if candidate.category_id != segment.category_id:
                continue
            other = result.segment_map == candidate.id
            union = np.logical_or(mask, other).sum()
            best = max(best, float(np.logical_and(mask, other).sum() / union) if union else 0.0)
        unmatched += best <= MATCH_IOU
    return {"pixel_agreement_pct": agree_pct, "reference_segments": len(reference.segments),
            "unmatched_segments": unmatched}


def _pipeline(model: BenchModel, variant: Variant, device: str, cache_dir: Path):
    from panoptic_perception.pipeline import Pipeline, load_pipeline_config

    base = load_pipeline_config()
    runtime = dataclasses.replace(base.runtime, backend=variant.backend, precision=variant.precision,
                                  device=device, cuda_graphs=variant.cuda_graphs,
                                  torch_compile=variant.torch_compile, engine_cache_dir=str(cache_dir))
    return Pipeline(dataclasses.replace(base, model_path=str(model.checkpoint), runtime=runtime))


def engine_builds(model: BenchModel, engine: Variant, device: str, cache_dir: Path) -> Dict[str, object]:
    """Build the engine into an empty cache, then again: the second must come from the cache."""
    start = time.perf_counter()
    first = _pipeline(model, engine, device, cache_dir)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    second = _pipeline(model, engine, device, cache_dir)
    load_s = time.perf_counter() - start
    if first.backend.artifact_built is not True or second.backend.artifact_built is not False:
        raise AssertionError(f"bench gpu: {model.name} {engine.name}: expected a build then a cache load, got "
                             f"built={first.backend.artifact_built} then built={second.backend.artifact_built}")
    return {"model": model.name, "variant": engine.name, "build_s": build_s, "cached_load_s": load_s,
            "loaded_from_cache": True}


def latency_row(model: BenchModel, variant: Variant, pipeline, frames: list, warmup: int, count: int
                ) -> Dict[str, object]:
    import torch

    from panoptic_perception.benchmarks.timing import summarize_ms

    on_cuda = pipeline.device.type == "cuda"
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    samples, _ = time_frames(pipeline, frames, warmup, count)
    total, network = summarize_ms(samples["total_ms"]), summarize_ms(samples["network_ms"])
    return {"model": model.name, "variant": variant.name, "backend": pipeline.backend.name,
            "input": f"{pipeline.input_size[0]}x{pipeline.input_size[1]}",
            "image": f"{model.image_size[0]}x{model.image_size[1]}",
            "total_median_ms": total["median_ms"], "total_p99_ms": total["p99_ms"],
            "network_median_ms": network["median_ms"], "network_p99_ms": network["p99_ms"],
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if on_cuda else 0.0}


def acceptance(models: Sequence[BenchModel], variants: Sequence[Variant], reference: Variant, engine: Variant,
               compared: Sequence[Variant], device: str, cache_dir: Path, warmup: int, count: int
               ) -> Dict[str, List[Dict[str, object]]]:
    """Steps 1-3 for every model: engine builds, equivalence of `compared` against `reference`, latency."""
    builds, equivalence, latency = [], [], []
    for model in models:
        frames = synthetic_frames(*model.image_size)
        builds.append(engine_builds(model, engine, device, cache_dir))
        reference_results: Optional[list] = None
        for variant in variants:
            pipeline = _pipeline(model, variant, device, cache_dir)
            results = [pipeline.process(f.rgb, f.camera) for f in frames]
            if variant == reference:
                reference_results = results
            elif variant in compared and reference_results is not None:
                checks = [segment_agreement(r, x) for r, x in zip(reference_results, results)]
                worst = min(c["pixel_agreement_pct"] for c in checks)
                unmatched = sum(int(c["unmatched_segments"]) for c in checks)
                equivalence.append({
                    "model": model.name, "variant": variant.name, "vs": reference.name,
                    "min_pixel_agreement_pct": worst, "unmatched_segments": unmatched,
                    "reference_segments": sum(int(c["reference_segments"]) for c in checks),
                    "passed": worst >= PIXEL_AGREEMENT_MIN_PCT and unmatched == 0})
            latency.append(latency_row(model, variant, pipeline, frames, warmup, count))
            print(f"bench gpu: {model.name} {variant.name}: {latency[-1]['total_median_ms']:.2f} ms median",
                  flush=True)
            del pipeline
    return {"builds": builds, "equivalence": equivalence, "latency": latency}


def run(args: argparse.Namespace) -> Dict[str, object]:
    import torch

    from panoptic_perception.pipeline import load_pipeline_config, resolve_path

    if not torch.cuda.is_available():
        print("bench gpu: no CUDA device; nothing measured")
        return {"title": "gpu acceptance", "rows": [], "record": False}
    if args.frames < 1 or args.warmup < 0:
        raise ConfigError("--frames must be >= 1 and --warmup >= 0")
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        cache_dir = Path(tmp)
        models = [BenchModel("light", resolve_path(load_pipeline_config().model_path), (1242, 375)),
                  BenchModel("r50", random_r50_checkpoint(cache_dir), (2048, 1024))]
        results = acceptance(models, GPU_VARIANTS, REFERENCE, ENGINE, (GPU_VARIANTS[1], ENGINE), "cuda",
                             cache_dir, args.warmup, args.frames)
    node: List[Dict[str, object]] = []
    if not args.skip_node:
        from panoptic_perception.benchmarks import node as node_bench

        node_args = argparse.Namespace(model="", backend="tensorrt", frames=30, warmup=3, rate_hz=60.0,
                                       image_size=(1242, 375), timeout_s=300.0)
        node = node_bench.run(node_args)["rows"]
    failed = [row for row in results["equivalence"] if not row["passed"]]
    device = torch.cuda.get_device_name(0)
    return {"title": f"gpu acceptance on {device}", "rows": results["latency"], **results, "node": node,
            "notes": f"builds: {results['builds']}; equivalence: {results['equivalence']}; node: {node}; "
                     f"{'EQUIVALENCE FAILED: ' + str(failed) if failed else 'equivalence passed'}"}
