"""Network-only latency per inference backend (the evidence behind `auto`'s CPU choice)."""
from __future__ import annotations

import argparse
import tempfile
import time

from panoptic_perception.paths import CONFIG_DIR
from panoptic_perception.size_args import size_arg, with_input_size

HELP = "network-only latency per backend (torch eager, onnxruntime, tensorrt when present) on one model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-config", default=None,
                        help="model YAML (default: config/model_resnet18.yaml, the vehicle's light model)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint to load (default: seeded random weights)")
    parser.add_argument("--input-size", type=size_arg, default=None, metavar="WxH",
                        help="override the model's input size")
    parser.add_argument("--backends", default="torch,onnxruntime",
                        help="comma list of torch, onnxruntime, tensorrt (default: torch,onnxruntime)")
    parser.add_argument("--precision", default="fp16", choices=["fp16", "fp32"], help="GPU precision")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per backend")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all)")


def run(args: argparse.Namespace) -> dict:
    import torch

    from panoptic_perception.benchmarks.timing import summarize_ms, time_call_ms
    from panoptic_perception.model.config import load_model_config
    from panoptic_perception.runtime.config import RuntimeConfig
    from panoptic_perception.runtime.engine_cache import state_dict_digest
    from panoptic_perception.runtime.select import create_backend_for_module

    if args.checkpoint:
        from panoptic_perception.model.checkpoint import load_checkpoint
        from panoptic_perception.runtime.model_loader import build_eval_model

        state_dict, config, _ = load_checkpoint(args.checkpoint)
    else:
        config = load_model_config(args.model_config or CONFIG_DIR / "model_resnet18.yaml")
    config = with_input_size(config, args.input_size)

    def fresh_model():
        if args.checkpoint:
            return build_eval_model(config, state_dict, args.checkpoint), state_dict_digest(state_dict)
        from panoptic_perception.model.panoptic_fpn import build_model

        torch.manual_seed(0)
        return build_model(config).eval(), "seed0"

    rows = []
    cache_dir = tempfile.mkdtemp(prefix="bench_backends_")
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        runtime = RuntimeConfig(backend=name, precision=args.precision, num_threads=args.threads,
                                engine_cache_dir=cache_dir, warmup_frames=2)
        model, digest = fresh_model()
        start = time.perf_counter()
        backend = create_backend_for_module(model, config, runtime, digest)
        setup_s = time.perf_counter() - start
        image = torch.rand(backend.input_shape, device=backend.device) * 255

        def once(backend=backend, image=image):
            backend.infer(image)
            if backend.device.type == "cuda":
                torch.cuda.synchronize()

        stats = summarize_ms(time_call_ms(once, args.frames, warmup=2))
        rows.append({"backend": name, "device": str(backend.device), "precision": backend.precision,
                     "input": f"{config.input_width}x{config.input_height}", **stats,
                     "fps": 1000.0 / stats["median_ms"], "setup_s": setup_s})
    base = next((r for r in rows if r["backend"] == "torch"), None)
    for row in rows:
        row["speedup_vs_torch"] = base["median_ms"] / row["median_ms"] if base else float("nan")
    return {"title": "backends: network-only latency", "rows": rows,
            "notes": f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'seeded random weights'}; "
                     f"network only (no preprocess/fusion outside the graph); {args.frames} frames"}
