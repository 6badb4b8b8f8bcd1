"""TensorRT backend through torch-tensorrt (the ONLY module that imports torch_tensorrt, lazily).

Build: torch.export the static inference graph -> torch_tensorrt.dynamo.compile -> torch_tensorrt.save
(an ExportedProgram with the serialized engines inside) into the engine cache. Start-up: torch_tensorrt.load
from the cache. Targets torch-tensorrt 2.13/2.14: engines are strongly typed there (no
`enabled_precisions`), so fp16 comes from a half model and half example input. Compile options that
a given torch-tensorrt does not know are dropped (logged), so one module serves neighbouring versions.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from panoptic_perception.errors import ConfigError, ModelFileError
from panoptic_perception.runtime.base import (
    LOG,
    Backend,
    GraphInputs,
    InputShape,
    example_inputs,
    float_outputs_to_fp32,
)
from panoptic_perception.runtime.config import RuntimeConfig

ARTIFACT_SUFFIX = ".ep"  # torch_tensorrt.save's exported_program format requires .ep


def tensorrt_status() -> Tuple[bool, str]:
    """(usable, why): torch_tensorrt importable AND a CUDA device present."""
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a CUDA/TensorRT library load error
        return False, f"torch_tensorrt not importable ({type(exc).__name__}: {exc})"
    return True, f"torch_tensorrt {torch_tensorrt.__version__} and {torch.cuda.get_device_name(0)}"


def environment_key(device: torch.device) -> Dict[str, str]:
    """Engine-cache key fields: a TensorRT engine is only valid for this GPU and these library versions."""
    import torch_tensorrt

    try:
        import tensorrt

        trt_version = tensorrt.__version__
    except ImportError:
        trt_version = "unknown"
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}",
            "tensorrt": trt_version, "torch_tensorrt": torch_tensorrt.__version__,
            "cuda": str(torch.version.cuda)}


def compile_settings(runtime_config: RuntimeConfig, cache_dir: Path) -> Dict[str, Any]:
    return {
        "workspace_size": int(runtime_config.workspace_gb * (1 << 30)),
        "min_block_size": runtime_config.min_block_size,
        "require_full_compilation": runtime_config.require_full_compilation,
        "use_explicit_typing": True,  # strongly typed engine: precision follows the (half) model
        "truncate_double": True,
        "optimization_level": 5,  # longest build, fastest engine: builds happen offline (export)
        # torch-tensorrt's own per-subgraph engine and timing caches make rebuilds fast
        "cache_built_engines": True,
        "reuse_cached_engines": True,
        "engine_cache_dir": str(cache_dir / "torch_tensorrt_engines"),
        "timing_cache_path": str(cache_dir / "tensorrt_timing_cache.bin"),
    }


def _supported_kwargs(func: Any, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    dropped = sorted(set(kwargs) - set(params))
    if dropped:
        LOG.info("tensorrt: this torch_tensorrt does not take %s; dropped", ", ".join(dropped))
    return {k: v for k, v in kwargs.items() if k in params}


def build_tensorrt_program(model: nn.Module, input_shape: InputShape, precision: str,
                           runtime_config: RuntimeConfig, cache_dir: Path, out_path: Path,
                           device: torch.device) -> None:
    """Compile `model` for this GPU and write the program to `out_path` (an .ep file)."""
    import torch_tensorrt

    if precision == "int8":
        raise ConfigError("tensorrt: int8 needs a quantized (calibrated) model, e.g. from NVIDIA ModelOpt; "
                          "this package ships none: use fp16 or fp32")
    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = model.to(device=device, dtype=dtype).eval()
    example = example_inputs(input_shape, device, dtype)  # image_size stays float32
    with torch.no_grad():
        exported = torch.export.export(GraphInputs(model), example, strict=False)
    settings = compile_settings(runtime_config, cache_dir)
    settings = _supported_kwargs(torch_tensorrt.dynamo.compile, settings)
    compiled = torch_tensorrt.dynamo.compile(exported, arg_inputs=list(example), **settings)
    torch_tensorrt.save(compiled, str(out_path), output_format="exported_program", arg_inputs=list(example))


def load_tensorrt_program(path: Path) -> nn.Module:
    import torch_tensorrt

    try:
        program = torch_tensorrt.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"TensorRT program {path} cannot be loaded: {exc}") from exc
    return program.module() if hasattr(program, "module") else program


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, module: nn.Module, input_shape: InputShape, device: torch.device, precision: str,
                 reason: str, artifact: Optional[Path] = None, warmup_frames: int = 2):
        super().__init__(device, input_shape, reason, precision)
        self.module = module
        self.artifact = artifact
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        for _ in range(warmup_frames):
            self.module(*example_inputs(self.input_shape, self.device, self.dtype))
        torch.cuda.synchronize(self.device)

    def _infer(self, image: torch.Tensor, image_size: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.module(image.to(self.dtype) if self.dtype != torch.float32 else image, image_size)
        return float_outputs_to_fp32(dict(out))
