"""Is the model being captured into a static graph now (torch.export, torch.compile, TorchScript, CUDA graphs)?

Eager inference may skip work whose result is known to be zero (mask heads for detections no
fusion rule will use, NMS iterations after the fixed point); a captured graph must keep its static
shapes and fixed loops. Both paths give identical outputs; tests compare them.
"""
from __future__ import annotations

import torch


def is_capturing() -> bool:
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing() \
            or torch.jit.is_scripting():
        return True
    # A CUDA graph records kernels only: a host sync (nonzero, .tolist()) inside capture is an error.
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
