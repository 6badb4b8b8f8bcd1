"""`export`: pre-build the TensorRT program or ONNX file for a checkpoint (what the node then loads)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from panoptic_perception.errors import ConfigError
from panoptic_perception.size_args import size_arg, with_input_size

HELP = "pre-build the TensorRT engine or ONNX file of a checkpoint into the engine cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", required=True, choices=["tensorrt", "onnx"],
                        help="tensorrt: torch-tensorrt program (.ep, needs CUDA); "
                             "onnx: ONNX file for onnxruntime")
    parser.add_argument("--model", required=True, type=Path,
                        help="checkpoint (.pt) written by train/import-weights")
    parser.add_argument("--out", type=Path, default=None,
                        help="artifact file (.ep / .onnx; manifest written beside it); default: the engine "
                             "cache slot beside the checkpoint, where the node looks")
    parser.add_argument("--precision", choices=["fp16", "fp32", "int8"], default=None,
                        help="tensorrt precision (default: from --runtime-config, fp16); onnx is always fp32")
    parser.add_argument("--input-size", type=size_arg, default=None, metavar="WxH",
                        help="static input size (multiples of 32); default: the checkpoint's model config")
    parser.add_argument("--runtime-config", type=Path, default=None,
                        help="runtime YAML (default: the one config/pipeline.yaml names): workspace, cache dir ...")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cached artifact is valid")
    parser.add_argument("--check-ops", action="store_true",
                        help="build nothing: check that every op of the graph has a torch-tensorrt converter "
                             "(runs without CUDA or TensorRT, in seconds; worth it before a long engine build); "
                             "exit 1 and list the ops and where they come from otherwise")


def run(args: argparse.Namespace) -> int:
    import torch

    from panoptic_perception.model.checkpoint import load_checkpoint
    from panoptic_perception.pipeline import load_pipeline_config
    from panoptic_perception.runtime.engine_cache import state_dict_digest
    from panoptic_perception.runtime.model_loader import build_eval_model
    from panoptic_perception.runtime.select import create_backend_for_module

    if args.check_ops:
        return _check_ops(args)
    backend = "onnxruntime" if args.backend == "onnx" else "tensorrt"
    suffix = ".onnx" if backend == "onnxruntime" else ".ep"
    if args.out is not None and args.out.suffix != suffix:
        raise ConfigError(f"--out for --backend {args.backend} must end with {suffix}, got {args.out}")
    runtime = load_pipeline_config(runtime_config=args.runtime_config).runtime
    if backend == "tensorrt" and not torch.cuda.is_available():
        raise ConfigError("export --backend tensorrt needs a CUDA GPU (TensorRT engines are built for the "
                          "GPU that runs them); none is available here. --backend onnx works on any machine")
    if backend == "onnxruntime" and args.precision not in (None, "fp32"):
        raise ConfigError(f"--precision {args.precision}: the ONNX export is fp32 "
                          "(onnxruntime runs it as is)")
    changes = {"backend": backend, "onnx_path": None,
               "engine_path": str(args.out) if args.out is not None else None, "warmup_frames": 1}
    if backend == "tensorrt":
        changes.update(device="cuda", precision=args.precision or runtime.precision)
    else:
        changes.update(device="cpu", precision="fp32")
    runtime = dataclasses.replace(runtime, **changes)

    state_dict, model_config, _meta = load_checkpoint(args.model)
    model_config = with_input_size(model_config, args.input_size)
    model = build_eval_model(model_config, state_dict, str(args.model))
    result = create_backend_for_module(model, model_config, runtime, state_dict_digest(state_dict),
                                       checkpoint_path=args.model, force_rebuild=args.force)
    print(f"export: {backend} artifact {result.artifact}")
    print(f"export: {result.describe()}")
    return 0


def _check_ops(args: argparse.Namespace) -> int:
    import torch

    from panoptic_perception.model.checkpoint import load_checkpoint
    from panoptic_perception.runtime.model_loader import build_eval_model
    from panoptic_perception.runtime.op_coverage import coverage_report, export_for_tensorrt, find_unsupported

    state_dict, model_config, _meta = load_checkpoint(args.model)
    model_config = with_input_size(model_config, args.input_size)
    model = build_eval_model(model_config, state_dict, str(args.model))
    h, w = model_config.input_height, model_config.input_width
    program = export_for_tensorrt(model, torch.zeros(1, 3, h, w), torch.tensor([float(h), float(w)]))
    problems = find_unsupported(program)
    print(f"export --check-ops: {args.model} at {w}x{h}: {coverage_report(problems)}")
    return 1 if problems else 0
