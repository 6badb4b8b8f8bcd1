"""`bench backbone`: parameters, FLOPs and latency of each backbone + FPN at the vehicle's input sizes.

FLOPs come from torch.utils.flop_counter (convolutions and matmuls, 2 FLOPs per multiply-add;
element-wise ops are not counted). Sizes are rounded up to a multiple of 64, the granularity
bench/RESULTS.md was recorded at (the model itself needs multiples of 32).
"""
from __future__ import annotations

import argparse
import math
import os
from typing import Dict, List, Tuple

from panoptic_perception.errors import ConfigError
from panoptic_perception.size_args import size_list_arg

HELP = "params, GFLOPs and latency of each backbone + FPN (default 640x192 and KITTI 1242x375)"
_BACKBONES = ("resnet18", "mobilenetv2", "resnet50")


def round_up_64(size: Tuple[int, int]) -> Tuple[int, int]:
    return tuple(int(math.ceil(v / 64.0)) * 64 for v in size)  # type: ignore[return-value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbones", default=",".join(_BACKBONES),
                        help=f"comma-separated subset of {', '.join(_BACKBONES)}")
    parser.add_argument("--sizes", default="640x192,1242x375",
                        type=size_list_arg,
                        help="comma-separated WIDTHxHEIGHT input sizes (rounded up to multiples of 64)")
    parser.add_argument("--fpn-channels", type=int, default=None,
                        help="FPN width (default: 128 for the light backbones as in model_resnet18.yaml, "
                             "256 for resnet50)")
    parser.add_argument("--repeats", type=int, default=10, help="timed forward passes per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forward passes first")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--layouts", default="nchw,nhwc",
                        help="memory formats to time: nchw (contiguous) and/or nhwc (channels_last)")
    parser.add_argument("--train-repeats", type=int, default=3,
                        help="timed training steps (forward + backward, freeze_at 0); 0 skips them")


def _count_flops(model, image) -> int:  # noqa: ANN001 - torch types imported lazily
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(image)
    return int(counter.get_total_flops())


def run(args: argparse.Namespace) -> Dict[str, object]:
    import torch

    from panoptic_perception.benchmarks.timing import summarize_ms, time_call_ms
    from panoptic_perception.model.config import BackboneConfig, FPNConfig, ModelConfig
    from panoptic_perception.model.fpn import build_fpn_backbone
    from panoptic_perception.model.layers import count_parameters

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    unknown = [n for n in names if n not in _BACKBONES]
    if unknown:
        raise ConfigError(f"--backbones: unknown {', '.join(unknown)}; known: {', '.join(_BACKBONES)}")
    device = torch.device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    layouts = [v.strip() for v in args.layouts.split(",") if v.strip()]
    formats = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}
    if not layouts or any(v not in formats for v in layouts):
        raise ConfigError(f"--layouts: expected nchw and/or nhwc, got {args.layouts!r}")

    rows: List[Dict[str, object]] = []
    for name in names:
        channels = args.fpn_channels or (256 if name == "resnet50" else 128)
        torch.manual_seed(0)
        cfg = ModelConfig(backbone=BackboneConfig(name=name), fpn=FPNConfig(channels=channels))
        model = build_fpn_backbone(cfg).eval().to(device)
        for size in args.sizes:
            width, height = round_up_64(size)
            image = torch.randn(1, 3, height, width, device=device)
            row: Dict[str, object] = {
                "backbone": name, "fpn_ch": channels, "input": f"{width}x{height}",
                "params_M": count_parameters(model) / 1e6,
                "bottom_up_params_M": count_parameters(model.bottom_up) / 1e6,
                "GFLOPs": _count_flops(model, image) / 1e9,
                "bottom_up_GFLOPs": _count_flops(model.bottom_up, image) / 1e9,
            }
            for layout in layouts:
                net = model.to(memory_format=formats[layout])
                x = image.contiguous(memory_format=formats[layout])

                def forward(net=net, x=x) -> None:  # noqa: ANN001 - bound now, not at call time
                    with torch.inference_mode():
                        net(x)
                    sync()

                stats = summarize_ms(time_call_ms(forward, args.repeats, warmup=args.warmup))
                row[f"{layout}_median_ms"] = stats["median_ms"]
                row[f"{layout}_p90_ms"] = stats["p90_ms"]
            if args.train_repeats > 0:
                trainable = build_fpn_backbone(cfg).train().to(device)

                def train_step(net=trainable, x=image) -> None:  # noqa: ANN001
                    out = net(x)
                    sum(v.float().mean() for v in out.values()).backward()
                    sync()

                row["train_step_ms"] = summarize_ms(time_call_ms(train_step, args.train_repeats, warmup=1))[
                    "median_ms"]
            rows.append(row)
    load_1min = os.getloadavg()[0]
    notes = (f"load average {load_1min:.1f} at the end (other processes share the CPU); "
             f"backbone + FPN (P2-P6) forward, batch 1, float32, {device.type}, torch.inference_mode, "
             f"{torch.get_num_threads()} CPU threads, {args.repeats} timed runs per layout "
             "(nhwc = channels_last); train_step_ms = forward + backward in training mode; random weights "
             "(latency does not depend on them). "
             "GFLOPs = 2 x multiply-adds of convs/matmuls (torch.utils.flop_counter). "
             "Sizes rounded up to multiples of 64.")
    return {"title": "Backbone + FPN: params, GFLOPs, latency", "rows": rows, "notes": notes}
