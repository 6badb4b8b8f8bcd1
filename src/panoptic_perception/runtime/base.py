"""The one interface every inference backend implements (TensorRT, PyTorch, ONNX Runtime)."""
from __future__ import annotations

import abc
import logging
from typing import Dict, Optional, Tuple

import torch

from panoptic_perception.errors import InputError

LOG = logging.getLogger("panoptic_perception.runtime")

InputShape = Tuple[int, int, int, int]


def input_shape_for(model_config) -> InputShape:
    """The static [1, 3, H, W] input every backend of this model is built for."""
    return (1, 3, int(model_config.input_height), int(model_config.input_width))


def same_device(a: torch.device, b: torch.device) -> bool:
    # torch.device("cuda") and torch.device("cuda:0") name the same GPU in a one-GPU process.
    return a.type == b.type and (a.type != "cuda" or (a.index or 0) == (b.index or 0))


class Backend(abc.ABC):
    """Runs the static-shape network: image [1,3,H,W] float32 0..255 -> dict of output tensors.

    Attributes the Pipeline reads: `name` ("tensorrt" | "torch" | "onnxruntime"), `device` (where
    `infer` wants its input and returns its outputs) and `reason` (why this backend was chosen, one
    line for the node's log).
    """

    name: str = "abstract"
    # Backends that run a cached artifact (ONNX model, TensorRT engine): True when this construction
    # built it, False when it came from the cache; None for backends without one (torch eager).
    artifact_built: Optional[bool] = None

    def __init__(self, device: torch.device, input_shape: InputShape, reason: str, precision: str = "fp32"):
        self.device = torch.device(device)
        self.input_shape: InputShape = tuple(int(v) for v in input_shape)  # type: ignore[assignment]
        self.reason = reason
        self.precision = precision

    def infer(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Outputs keyed like the model's forward, on `self.device`, float outputs float32."""
        self._check_input(image)
        with torch.inference_mode():
            return self._infer(image)

    @abc.abstractmethod
    def _infer(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        ...

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.precision}, input {self.input_shape}): {self.reason}"

    def _check_input(self, image: torch.Tensor) -> None:
        if not isinstance(image, torch.Tensor):
            raise InputError(f"{self.name} backend: image must be a torch.Tensor, got {type(image).__name__}")
        if tuple(image.shape) != self.input_shape:
            raise InputError(f"{self.name} backend: image shape {tuple(image.shape)} != the static input "
                             f"shape {self.input_shape} it was built for (resize in preprocessing)")
        if image.dtype != torch.float32:
            raise InputError(f"{self.name} backend: image dtype {image.dtype}, expected torch.float32 0..255")
        if not same_device(image.device, self.device):
            raise InputError(f"{self.name} backend: image on {image.device}, expected {self.device}")


def float_outputs_to_fp32(outputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """fp16 engines return half floats; consumers always see float32 (integer/bool outputs untouched)."""
    return {k: (v.float() if v.is_floating_point() and v.dtype != torch.float32 else v)
            for k, v in outputs.items()}
