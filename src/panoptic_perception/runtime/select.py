"""Backend selection and construction: `create_backend` is what the Pipeline calls.

`auto` rule:
  1. tensorrt   when torch_tensorrt imports and a CUDA device is present;
  2. torch      on CUDA (fp16, plus torch.compile / CUDA graphs when configured) when CUDA is present;
  3. on CPU torch eager: on idle cores onnxruntime is about 5 % faster, but its spinning thread
     pool collapses as soon as a core is shared, while torch's OpenMP threads sleep when idle
     (the package's default) and its eager-only shortcuts skip unused detections' work
     (CPU_RULE_EVIDENCE). Name `onnxruntime` explicitly on a machine whose cores the node owns.
A backend named explicitly is used or fails with the reason (never silently replaced); only `auto`
falls back down the list, and `Backend.reason` says what it chose and why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

import torch
from torch import nn

from panoptic_perception.errors import ConfigError, PerceptionError
from panoptic_perception.runtime.base import LOG, Backend, InputShape, input_shape_for
from panoptic_perception.runtime.config import RuntimeConfig
from panoptic_perception.runtime.engine_cache import CacheResult, EngineCache, make_cache_key, state_dict_digest

DEFAULT_CACHE_DIR = Path("~/.cache/panoptic_perception/engines")
CPU_RULE_EVIDENCE = ("with one other busy core the node ran the 640x192 light model at 4.4-5.2 fps on torch "
                     "eager and 2.1 fps on onnxruntime; idle, 4.75 vs 4.99 fps (bench node, bench/RESULTS.md)")


def resolve_device(runtime_config: RuntimeConfig) -> torch.device:
    if runtime_config.device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("runtime.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda", 0)
    if runtime_config.device == "cpu":
        return torch.device("cpu")
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def resolve_cache_dir(runtime_config: RuntimeConfig, checkpoint_path: Optional[str | Path]) -> Path:
    if runtime_config.engine_cache_dir:
        return Path(runtime_config.engine_cache_dir).expanduser()
    if checkpoint_path is not None:
        return Path(checkpoint_path).expanduser().resolve().parent
    return DEFAULT_CACHE_DIR.expanduser()


def slot_name(backend: str, checkpoint_path: Optional[str | Path], input_shape: InputShape,
              precision: str) -> str:
    """Human-readable cache slot: one per model file, backend, input size and precision."""
    stem = Path(checkpoint_path).stem if checkpoint_path is not None else "model"
    return f"{stem}.{backend}.{input_shape[3]}x{input_shape[2]}.{precision}"


def cache_slot(runtime_config: RuntimeConfig, backend: str, checkpoint_path: Optional[str | Path],
               input_shape: InputShape, precision: str, suffix: str) -> Tuple[EngineCache, str]:
    """(cache, slot) for an artifact: runtime.engine_path when set, else the named slot in the cache dir."""
    if runtime_config.engine_path:
        path = Path(runtime_config.engine_path).expanduser()
        if path.suffix != suffix:
            raise ConfigError(f"engine_path {path} must end with {suffix} for the {backend} backend")
        return EngineCache(path.parent), path.name[: -len(suffix)]
    return (EngineCache(resolve_cache_dir(runtime_config, checkpoint_path)),
            slot_name(backend, checkpoint_path, input_shape, precision))


def choose_backend(runtime_config: RuntimeConfig) -> Tuple[str, torch.device, str]:
    """(backend name, device, reason) for the configured backend, resolving `auto`."""
    requested = runtime_config.backend
    if requested == "tensorrt":
        from panoptic_perception.runtime.tensorrt_backend import tensorrt_status

        ok, why = tensorrt_status()
        if not ok:
            raise ConfigError(f"backend 'tensorrt' requested but unusable: {why}")
        if runtime_config.device == "cpu":
            raise ConfigError("backend 'tensorrt' runs on CUDA only, but runtime.device is 'cpu'")
        return "tensorrt", torch.device("cuda", 0), f"configured (tensorrt: {why})"
    if requested == "torch":
        return "torch", resolve_device(runtime_config), "configured"
    if requested == "onnxruntime":
        return "onnxruntime", torch.device("cpu"), "configured"
    # auto
    if runtime_config.device != "cpu":
        from panoptic_perception.runtime.tensorrt_backend import tensorrt_status

        ok, why = tensorrt_status()
        if ok:
            return "tensorrt", torch.device("cuda", 0), f"auto: {why}"
        if torch.cuda.is_available():
            return "torch", torch.device("cuda", 0), f"auto: CUDA available but TensorRT not ({why})"
        if runtime_config.device == "cuda":
            raise ConfigError("runtime.device is 'cuda' but no CUDA device is available")
    return "torch", torch.device("cpu"), f"auto: no usable GPU; {CPU_RULE_EVIDENCE}"


def create_backend(model_config, state_dict: Mapping[str, torch.Tensor], runtime_config: RuntimeConfig,
                   checkpoint_path: Optional[str | Path] = None) -> Backend:
    """The backend the config asks for (or `auto` picks), ready to `infer`."""
    from panoptic_perception.runtime.model_loader import build_eval_model

    source = str(checkpoint_path) if checkpoint_path is not None else "state_dict"
    model = build_eval_model(model_config, state_dict, source)
    return create_backend_for_module(model, model_config, runtime_config, state_dict_digest(state_dict),
                                     checkpoint_path)


@dataclass(frozen=True)
class BackendRequest:
    """What a backend is built from: the eval model and its config, how to run it (runtime), and what
    names its cached artifact (weights digest, model file, input shape)."""

    model: nn.Module
    model_config: Any  # model.config.ModelConfig
    runtime: RuntimeConfig
    weights_digest: str
    input_shape: InputShape
    checkpoint_path: Optional[Path] = None
    force_rebuild: bool = False  # rebuild a cached artifact even when its key matches


def create_backend_for_module(model: nn.Module, model_config, runtime_config: RuntimeConfig,
                              weights_digest: str, checkpoint_path: Optional[str | Path] = None,
                              input_shape: Optional[InputShape] = None,
                              force_rebuild: bool = False) -> Backend:
    """As create_backend, for an already-built eval model (tests, export, benchmarks)."""
    request = BackendRequest(model, model_config, runtime_config, weights_digest,
                             input_shape or input_shape_for(model_config),
                             None if checkpoint_path is None else Path(checkpoint_path), force_rebuild)
    if runtime_config.num_threads > 0:
        torch.set_num_threads(runtime_config.num_threads)
    name, device, reason = choose_backend(runtime_config)
    try:
        backend = _construct(name, device, reason, request)
    except PerceptionError as exc:
        if runtime_config.backend != "auto" or name == "torch":
            raise
        # auto never leaves the vehicle without a network: fall back to torch on the same device
        LOG.warning("auto: %s backend failed (%s); falling back to torch", name, exc)
        fallback_device = device if device.type == "cuda" else torch.device("cpu")
        backend = _construct("torch", fallback_device, f"auto: {name} failed ({exc}); torch fallback", request)
    LOG.info("runtime: %s", backend.describe())
    return backend


def _construct(name: str, device: torch.device, reason: str, request: BackendRequest) -> Backend:
    if name == "torch":
        from panoptic_perception.runtime.torch_backend import TorchBackend

        runtime = request.runtime
        return TorchBackend(request.model, request.input_shape, device, reason, precision=runtime.precision,
                            torch_compile=runtime.torch_compile, cuda_graphs=runtime.cuda_graphs,
                            warmup_frames=runtime.warmup_frames)
    if name == "onnxruntime":
        return build_onnx_backend(request, reason)
    if name == "tensorrt":
        return build_tensorrt_backend(request, reason, device)
    raise ConfigError(f"unknown backend {name!r}")


def cache_outcome(result: CacheResult, built_how: str) -> str:
    """What a backend's reason says about its cached artifact: loaded, or built and WHY. The why (a
    truncated or stale artifact, a changed key) goes into Backend.reason, which the node logs on
    screen and publishes in /diagnostics, not only into the log file."""
    if not result.built:
        return f"{result.path.name} loaded from cache"
    return f"{result.path.name} {built_how} ({result.why})"


def onnx_cache_key(model_config, runtime_config: RuntimeConfig, weights_digest: str, input_shape: InputShape):
    import onnx

    return make_cache_key(backend="onnxruntime", weights_digest=weights_digest, model_config=model_config,
                          input_shape=input_shape, precision="fp32",
                          environment={"onnx": onnx.__version__, "opset": runtime_config.onnx_opset})


def build_onnx_backend(request: BackendRequest, reason: str) -> Backend:
    from panoptic_perception.runtime.onnx_backend import OnnxRuntimeBackend, choose_providers, load_session
    from panoptic_perception.runtime.onnx_export import export_onnx

    runtime_config, input_shape = request.runtime, request.input_shape

    device_pref = "cpu" if runtime_config.device == "cpu" else "auto"
    providers = choose_providers(device_pref)
    threads = runtime_config.num_threads

    if runtime_config.onnx_path:
        path = Path(runtime_config.onnx_path).expanduser()
        session = load_session(path, threads, providers)
        return OnnxRuntimeBackend(session, input_shape, reason + f"; prebuilt {path}", path)

    exporter = {}

    def build(tmp: Path) -> None:
        exporter["used"] = export_onnx(request.model, input_shape, tmp, opset=runtime_config.onnx_opset)

    key = onnx_cache_key(request.model_config, runtime_config, request.weights_digest, input_shape)
    cache, slot = cache_slot(runtime_config, "onnxruntime", request.checkpoint_path, input_shape, "fp32", ".onnx")
    result = cache.get_or_build(slot, key, ".onnx", build, lambda p: load_session(p, threads, providers),
                                force_rebuild=request.force_rebuild)
    how = cache_outcome(result, f"exported by the {exporter.get('used')} exporter")
    backend = OnnxRuntimeBackend(result.value, input_shape, f"{reason}; {how}", result.path)
    backend.artifact_built = result.built
    for _ in range(runtime_config.warmup_frames):
        backend.infer(torch.zeros(input_shape))  # image_size: the whole input
    return backend


def build_tensorrt_backend(request: BackendRequest, reason: str, device: torch.device) -> Backend:
    from panoptic_perception.runtime import tensorrt_backend as trt

    runtime_config, input_shape = request.runtime, request.input_shape
    precision = runtime_config.precision
    if precision == "int8":
        raise ConfigError("tensorrt: int8 needs a quantized (calibrated) model, e.g. from NVIDIA ModelOpt; "
                          "this package ships none: use fp16 or fp32")
    key = make_cache_key(backend="tensorrt", weights_digest=request.weights_digest, model_config=request.model_config,
                         input_shape=input_shape, precision=precision,
                         environment={**trt.environment_key(device),
                                      "workspace_gb": runtime_config.workspace_gb,
                                      "min_block_size": runtime_config.min_block_size,
                                      "require_full_compilation": runtime_config.require_full_compilation})
    cache, slot = cache_slot(runtime_config, "tensorrt", request.checkpoint_path, input_shape, precision,
                             trt.ARTIFACT_SUFFIX)

    def build(tmp: Path) -> None:
        trt.build_tensorrt_program(request.model, input_shape, precision, runtime_config, cache.root, tmp, device)

    # torch_tensorrt.save insists on the .ep suffix, which the temp path has
    result = cache.get_or_build(slot, key, trt.ARTIFACT_SUFFIX, build, trt.load_tensorrt_program,
                                force_rebuild=request.force_rebuild)
    how = cache_outcome(result, "built")
    backend = trt.TensorRTBackend(result.value, input_shape, device, precision,
                                  f"{reason}; engine {how} in {result.seconds:.1f} s",
                                  result.path, runtime_config.warmup_frames)
    backend.artifact_built = result.built
    return backend
