"""Inference backends (TensorRT, PyTorch, ONNX Runtime) and the engine cache.

The Pipeline calls `create_backend(model_config, state_dict, runtime_config, checkpoint_path)` and then
`backend.infer(image)`; nothing else in the package runs the network directly.
"""
from panoptic_perception.runtime.base import Backend
from panoptic_perception.runtime.config import RuntimeConfig, load_runtime_config
from panoptic_perception.runtime.select import choose_backend, create_backend, create_backend_for_module

__all__ = ["Backend", "RuntimeConfig", "load_runtime_config", "create_backend", "create_backend_for_module",
           "choose_backend"]
