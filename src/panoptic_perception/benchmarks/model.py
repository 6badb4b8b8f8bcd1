"""`bench model`: parameters, GFLOPs and CPU latency of the whole inference graph (fusion included).

Rows: the shipped light model (config/model_light_1280.yaml, 1280x384), the same network and the
ResNet-18 model at a 640x192 input (model_light.yaml, model_resnet18.yaml), and both backbones
(model_resnet18.yaml, model_resnet50.yaml) at KITTI's full 1242x375 padded to the next multiple of
64 (1280x384) with the rest of their YAML unchanged.
Random weights: speed does not depend on them, and the static graph does the
same work whatever the image holds.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Dict, List

from panoptic_perception.paths import CONFIG_DIR

HELP = "network size, GFLOPs and CPU latency of PanopticModel (both backbones, KITTI-size input)"

KITTI_WIDTH_PX, KITTI_HEIGHT_PX = 1242, 375


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per row (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes before timing (default 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", choices=[str(case["key"]) for case in _cases()], action="append",
                        default=None,
                        help="run only these rows (repeatable)")


def _cases() -> List[Dict[str, object]]:
    width, height = _round_up(KITTI_WIDTH_PX, 64), _round_up(KITTI_HEIGHT_PX, 64)
    return [
        {"key": "light", "yaml": "model_light_1280.yaml", "size": None},
        {"key": "light_640", "yaml": "model_light.yaml", "size": None},
        {"key": "resnet18_640", "yaml": "model_resnet18.yaml", "size": None},
        {"key": "resnet18", "yaml": "model_resnet18.yaml", "size": (width, height)},
        {"key": "resnet50", "yaml": "model_resnet50.yaml", "size": (width, height)},
    ]


def measure(config, repeats: int, warmup: int) -> Dict[str, object]:  # noqa: ANN001 - ModelConfig
    """Parameters, GFLOPs (FlopCounterMode: 2 per multiply-add) and latency of one config."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from panoptic_perception.benchmarks.timing import summarize_ms, time_call_ms
    from panoptic_perception.model.panoptic_fpn import build_model

    torch.manual_seed(0)
    model = build_model(config).eval()
    image = torch.rand(1, 3, config.input_height, config.input_width) * 255.0
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(image)
        stats = summarize_ms(time_call_ms(lambda: model(image), repeats=repeats, warmup=warmup))
    return {
        "backbone": config.backbone.name,
        "input": f"{config.input_width}x{config.input_height}",
        "fpn_ch": config.fpn.channels,
        "proposals": config.rpn.post_nms_topk_test,
        "detections": config.roi_heads.max_detections,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "GFLOPs": counter.get_total_flops() / 1e9,
        "median_ms": stats["median_ms"],
        "p90_ms": stats["p90_ms"],
        "n": stats["n"],
    }


def run(args: argparse.Namespace) -> dict:
    import torch

    from panoptic_perception.model.config import load_model_config

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = []
    for case in _cases():
        if args.only and case["key"] not in args.only:
            continue
        config = load_model_config(CONFIG_DIR / str(case["yaml"]))
        if case["size"] is not None:
            width, height = case["size"]
            config = dataclasses.replace(config, input_width=width, input_height=height)
        row = {"row": case["key"]}
        row.update(measure(config, args.repeats, args.warmup))
        rows.append(row)
    notes = (f"PanopticModel eval (batch 1, fusion included), random weights, CPU, "
             f"{torch.get_num_threads()} threads; KITTI {KITTI_WIDTH_PX}x{KITTI_HEIGHT_PX} padded to /64; "
             "GFLOPs count 2 per multiply-add (torch FlopCounterMode: conv, matmul, ...; "
             "elementwise ops not counted); latency median of --repeats runs")
    return {"title": "model: size, GFLOPs, CPU latency", "rows": rows, "notes": notes}
