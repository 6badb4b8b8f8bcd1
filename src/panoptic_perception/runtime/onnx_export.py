"""ONNX export of the static inference graph (dict outputs flattened to named outputs)."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from panoptic_perception.errors import ModelFileError
from panoptic_perception.runtime.base import IMAGE_SIZE_NAME, LOG, InputShape, example_inputs, whole_image_size

INPUT_NAME = "image"
INPUT_NAMES = [INPUT_NAME, IMAGE_SIZE_NAME]  # GraphInputs' order


class TupleOutputs(nn.Module):
    """ONNX graphs have ordered, named outputs: present the model's dict as a tuple in a fixed order."""

    def __init__(self, model: nn.Module, keys: List[str]):
        super().__init__()
        self.model = model
        self.keys = list(keys)

    def forward(self, image: torch.Tensor, image_size: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.model(image, image_size=image_size)
        return tuple(out[k] for k in self.keys)


def output_keys(model: nn.Module, input_shape: InputShape) -> List[str]:
    with torch.inference_mode():
        out = model(torch.zeros(input_shape), image_size=whole_image_size(input_shape))
    if not isinstance(out, dict) or not all(isinstance(v, torch.Tensor) for v in out.values()):
        raise ModelFileError("model forward must return a dict of tensors for export")
    return list(out)


def export_onnx(model: nn.Module, input_shape: InputShape, path: str | Path, opset: int = 18,
                prefer: str = "dynamo", exported: Optional[torch.export.ExportedProgram] = None) -> str:
    """Write `model` (eval, CPU, fp32) to `path`; returns which exporter worked ("dynamo"/"torchscript").

    The dynamo exporter (torch.export + onnxscript) is tried first; the TorchScript exporter is the
    fallback for graphs the dynamo path cannot translate. Both see the same static shapes.
    `exported` (torch.export of GraphInputs(model) at `input_shape`, dict outputs) spares the dynamo
    exporter a second trace when the caller already has one. The graph's inputs are INPUT_NAMES.
    """
    path = Path(path)
    model = model.eval().cpu()
    keys = output_keys(model, input_shape)
    wrapped = TupleOutputs(model, keys).eval()
    example = example_inputs(input_shape)
    order = ["dynamo", "torchscript"] if prefer == "dynamo" else ["torchscript", "dynamo"]
    errors: Dict[str, str] = {}
    for exporter in order:
        try:
            source = exported if (exporter == "dynamo" and exported is not None) else wrapped
            _export_with(exporter, source, example, keys, path, opset)
            LOG.info("onnx export: %s exporter wrote %s", exporter, path)
            return exporter
        except Exception as exc:  # noqa: BLE001 - try the other exporter, report both if both fail
            errors[exporter] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            LOG.warning("onnx export: %s exporter failed: %s", exporter, errors[exporter])
    raise ModelFileError("ONNX export failed with both exporters: " +
                         "; ".join(f"{k}: {v}" for k, v in errors.items()))


def _export_with(exporter: str, wrapped, example: tuple, keys: List[str], path: Path,
                 opset: int) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            # onnxscript / onnx_ir log every pass at INFO; keep the node's log readable
            for noisy in ("onnxscript", "onnx_ir"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
            # one self-contained file (weights inline): < 2 GB for every model here
            torch.onnx.export(wrapped, example, str(path), dynamo=True, input_names=INPUT_NAMES,
                              output_names=keys, opset_version=opset, verbose=False, optimize=True,
                              external_data=False)
        else:
            torch.onnx.export(wrapped, example, str(path), dynamo=False, input_names=INPUT_NAMES,
                              output_names=keys, opset_version=min(opset, 17), do_constant_folding=True)
