"""ONNX Runtime backend: runs the exported .onnx of the same static graph."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from panoptic_perception.errors import ConfigError, ModelFileError
from panoptic_perception.runtime.base import LOG, Backend, InputShape, float_outputs_to_fp32
from panoptic_perception.runtime.onnx_export import IMAGE_SIZE_NAME, INPUT_NAME

# Preferred first; each is used only when this onnxruntime build has it.
_PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers() -> List[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(device: str) -> List[str]:
    have = set(available_providers())
    wanted = _PROVIDER_ORDER if device != "cpu" else ("CPUExecutionProvider",)
    chosen = [p for p in wanted if p in have]
    if not chosen:
        raise ConfigError(f"onnxruntime has none of the execution providers {wanted}; it has {sorted(have)}")
    return chosen


def load_session(path: str | Path, num_threads: int = 0, providers: Optional[List[str]] = None):
    """An InferenceSession for `path`; ModelFileError naming the file when it cannot be read."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX model not found: {path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads > 0:
        options.intra_op_num_threads = num_threads
    # one frame at a time through a single graph: inter-op parallelism only adds thread hand-offs
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelFileError(f"ONNX model {path} cannot be loaded by onnxruntime: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, session, input_shape: InputShape, reason: str, onnx_path: Path):
        providers = session.get_providers()
        on_gpu = any(p in providers for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
        super().__init__(torch.device("cuda" if on_gpu else "cpu"), input_shape, reason, "fp32")
        self.session = session
        self.artifact = Path(onnx_path)
        self.providers = providers
        inputs = session.get_inputs()
        names = [i.name for i in inputs]
        # image, then image_size (GraphInputs); a model that ignores image_size exports without it.
        if len(inputs) not in (1, 2) or (len(inputs) == 2 and names[1] != IMAGE_SIZE_NAME):
            raise ModelFileError(f"{onnx_path}: expected inputs ({INPUT_NAME}[, {IMAGE_SIZE_NAME}]), found {names}")
        self._input_name = inputs[0].name if inputs[0].name else INPUT_NAME
        self._takes_image_size = len(inputs) == 2
        shape = tuple(inputs[0].shape)
        if shape != tuple(input_shape):
            raise ModelFileError(f"{onnx_path}: input shape {shape} != expected {tuple(input_shape)} "
                                 f"(exported for another input size?)")
        self.output_names = [o.name for o in session.get_outputs()]
        LOG.info("onnxruntime: %s with providers %s", onnx_path, providers)

    def _infer(self, image: torch.Tensor, image_size: torch.Tensor) -> Dict[str, torch.Tensor]:
        feed = {self._input_name: np.ascontiguousarray(image.detach().cpu().numpy())}
        if self._takes_image_size:
            feed[IMAGE_SIZE_NAME] = image_size.detach().cpu().numpy()
        results = self.session.run(self.output_names, feed)
        out = {name: torch.from_numpy(np.asarray(value)) for name, value in zip(self.output_names, results)}
        if self.device.type != "cpu":
            out = {k: v.to(self.device, non_blocking=True) for k, v in out.items()}
        return float_outputs_to_fp32(out)

    def describe(self) -> str:
        return super().describe() + f" [{self.artifact.name}, {', '.join(self.providers)}]"
