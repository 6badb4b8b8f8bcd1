"""Runtime configuration: which backend runs the network, on what device, at what precision."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from panoptic_perception.config import load_dataclass

BackendName = Literal["auto", "tensorrt", "torch", "onnxruntime"]


@dataclass
class RuntimeConfig:
    backend: BackendName = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # fp16 is the GPU default; CPU backends always run fp32 (no fast fp16 kernels on x86).
    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    torch_compile: bool = False  # torch backend, CUDA: torch.compile the model
    cuda_graphs: bool = False  # torch backend, CUDA: replay one captured graph per frame (static shapes)
    # Where compiled artifacts (TensorRT programs, ONNX files) live; "" = beside the checkpoint,
    # or ~/.cache/panoptic_perception/engines when there is no checkpoint file.
    engine_cache_dir: str = ""
    # Exact artifact file (.ep for tensorrt, .onnx for onnxruntime) with its manifest beside it; built
    # there when missing or stale. None = a slot in engine_cache_dir named after the checkpoint.
    engine_path: Optional[str] = None
    onnx_path: Optional[str] = None  # a prebuilt .onnx to run as is (no key check, no rebuild)
    workspace_gb: float = 2.0  # TensorRT builder workspace
    min_block_size: int = 1  # smallest subgraph TensorRT takes; 1 = convert every supported op
    require_full_compilation: bool = True  # the graph is designed to convert whole; fail if it does not
    num_threads: int = 0  # CPU intra-op threads; 0 = library default (all cores)
    onnx_opset: int = 18
    warmup_frames: int = 2  # frames run at start so the first real frame is not the slow one

    def __post_init__(self) -> None:
        if self.workspace_gb <= 0:
            raise ValueError(f"workspace_gb must be > 0, got {self.workspace_gb}")
        if self.min_block_size < 1:
            raise ValueError(f"min_block_size must be >= 1, got {self.min_block_size}")
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {self.num_threads}")
        if self.warmup_frames < 0:
            raise ValueError(f"warmup_frames must be >= 0, got {self.warmup_frames}")
        if not 13 <= self.onnx_opset <= 23:
            raise ValueError(f"onnx_opset must be in 13..23, got {self.onnx_opset}")


def load_runtime_config(path: str | Path) -> RuntimeConfig:
    return load_dataclass(RuntimeConfig, path)
