"""PyTorch backend: eager on CPU or CUDA; on CUDA optionally fp16, torch.compile and CUDA graphs."""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import nn

from panoptic_perception.errors import ConfigError
from panoptic_perception.runtime.base import (
    LOG,
    Backend,
    GraphInputs,
    InputShape,
    example_inputs,
    float_outputs_to_fp32,
)


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: nn.Module, input_shape: InputShape, device: torch.device, reason: str,
                 precision: str = "fp32", torch_compile: bool = False, cuda_graphs: bool = False,
                 warmup_frames: int = 2):
        device = torch.device(device)
        if precision == "int8":
            raise ConfigError("torch backend: precision int8 is not supported (use fp32 or fp16)")
        if device.type != "cuda":
            if precision == "fp16":
                # x86 CPUs have no fast fp16 convolutions: half would be slower and less exact.
                LOG.info("torch backend: fp16 requested on CPU; running fp32")
                precision = "fp32"
            if torch_compile or cuda_graphs:
                LOG.info("torch backend: torch_compile/cuda_graphs apply to CUDA only; running eager on CPU")
                torch_compile = cuda_graphs = False
        super().__init__(device, input_shape, reason, precision)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        model = model.to(device=device).eval()
        if self.dtype == torch.float16:
            model = model.half()
        for param in model.parameters():
            param.requires_grad_(False)
        self.model = model
        self.torch_compile = torch_compile
        self.cuda_graphs = cuda_graphs
        self._run: Callable[[torch.Tensor, torch.Tensor], Dict[str, torch.Tensor]] = self._eager
        if torch_compile:
            # "reduce-overhead" is torch.compile's own CUDA-graph mode (cudagraph trees).
            mode = "reduce-overhead" if cuda_graphs else "max-autotune-no-cudagraphs"
            self._compiled = torch.compile(GraphInputs(self.model), mode=mode, dynamic=False)
            self._run = self._compiled_call
        elif cuda_graphs:
            self._run = self._capture_graph()
        for _ in range(warmup_frames):
            self._run(*example_inputs(self.input_shape, self.device, self.dtype))
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def _eager(self, image: torch.Tensor, image_size: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.model(image, image_size=image_size)

    def _compiled_call(self, image: torch.Tensor, image_size: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self._compiled(image, image_size)
        # cudagraph trees reuse output memory on the next replay: hand out copies
        return {k: v.clone() for k, v in out.items()} if self.cuda_graphs else out

    def _capture_graph(self) -> Callable[[torch.Tensor, torch.Tensor], Dict[str, torch.Tensor]]:
        static_in, static_size = example_inputs(self.input_shape, self.device, self.dtype)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm up allocator and cuDNN autotuning off the capture
            for _ in range(3):
                self._eager(static_in, static_size)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                static_out = self._eager(static_in, static_size)
        except RuntimeError as exc:  # a host sync or dynamic shape inside forward
            LOG.warning("torch backend: CUDA graph capture failed (%s); running without graphs", exc)
            self.cuda_graphs = False
            self.reason += " (CUDA graph capture failed; eager)"
            return self._eager

        def replay(image: torch.Tensor, image_size: torch.Tensor) -> Dict[str, torch.Tensor]:
            static_in.copy_(image)
            static_size.copy_(image_size)
            graph.replay()
            return {k: v.clone() for k, v in static_out.items()}

        self._graph = graph  # keep the graph (and its memory pool) alive
        return replay

    def _infer(self, image: torch.Tensor, image_size: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self.dtype != torch.float32:
            image = image.to(self.dtype)
        return float_outputs_to_fp32(self._run(image, image_size))

    def describe(self) -> str:
        flags = (("torch.compile", self.torch_compile), ("CUDA graphs", self.cuda_graphs))
        extras = [label for label, on in flags if on]
        return super().describe() + (f" [{', '.join(extras)}]" if extras else "")
