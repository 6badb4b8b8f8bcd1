"""Inference backends (TensorRT, PyTorch, ONNX Runtime) and the engine cache."""
