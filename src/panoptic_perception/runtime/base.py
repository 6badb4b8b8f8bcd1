"""The one interface every inference backend implements (TensorRT, PyTorch, ONNX Runtime)."""
from __future__ import annotations

import abc
import logging
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from panoptic_perception.errors import InputError

LOG = logging.getLogger("panoptic_perception.runtime")

InputShape = Tuple[int, int, int, int]
IMAGE_SIZE_NAME = "image_size"  # the graph's second input (GraphInputs)


def input_shape_for(model_config) -> InputShape:
    """The static [1, 3, H, W] input every backend of this model is built for."""
    return (1, 3, int(model_config.input_height), int(model_config.input_width))


def whole_image_size(input_shape: InputShape, device: Optional[torch.device] = None) -> torch.Tensor:
    """The image_size input that means "the whole input is image": float32 [H, W]."""
    return torch.tensor([float(input_shape[2]), float(input_shape[3])], dtype=torch.float32, device=device)


def example_inputs(input_shape: InputShape, device: Optional[torch.device] = None,
                   dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """(image, image_size) to trace or warm up a graph with: zeros and the whole input."""
    return torch.zeros(input_shape, device=device, dtype=dtype), whole_image_size(input_shape, device)


class GraphInputs(nn.Module):
    """The model as every backend's graph sees it: forward(image, image_size), both positional.

    image [1,3,H,W] float 0..255; image_size float32 [2], the (height, width) of the image region of
    the input (fit_pad pads below and right of it): a runtime input, so one static graph serves every
    camera size, and boxes are clipped to the image as detectron2 clips them, not to the padding.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, image_size: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.model(image, image_size=image_size)


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
    # Backends that run a file (ONNX model, TensorRT program): where it is, and True when this
    # construction built it, False when it came from the cache; None for torch eager, which has none.
    artifact: Optional[Path] = None
    artifact_built: Optional[bool] = None

    def __init__(self, device: torch.device, input_shape: InputShape, reason: str, precision: str = "fp32"):
        self.device = torch.device(device)
        self.input_shape: InputShape = tuple(int(v) for v in input_shape)  # type: ignore[assignment]
        self.reason = reason
        self.precision = precision

    def infer(self, image: torch.Tensor, image_size: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Outputs keyed like the model's forward, on `self.device`, float outputs float32.

        image_size: float32 [2] (height, width) of the image region of a padded input (see
        GraphInputs); None: the whole input.
        """
        self._check_input(image)
        if image_size is None:
            image_size = whole_image_size(self.input_shape, self.device)
        self._check_image_size(image_size)
        with torch.inference_mode():
            return self._infer(image, image_size)

    @abc.abstractmethod
    def _infer(self, image: torch.Tensor, image_size: torch.Tensor) -> Dict[str, torch.Tensor]:
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


    def _check_image_size(self, image_size: torch.Tensor) -> None:
        if not isinstance(image_size, torch.Tensor) or tuple(image_size.shape) != (2,) \
                or image_size.dtype != torch.float32 or not same_device(image_size.device, self.device):
            raise InputError(f"{self.name} backend: image_size must be a float32 tensor [2] (height, width) on "
                             f"{self.device}, got {getattr(image_size, 'dtype', type(image_size).__name__)} "
                             f"{tuple(getattr(image_size, 'shape', ()))}")


def float_outputs_to_fp32(outputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """fp16 engines return half floats; consumers always see float32 (integer/bool outputs untouched)."""
    return {k: (v.float() if v.is_floating_point() and v.dtype != torch.float32 else v)
            for k, v in outputs.items()}
