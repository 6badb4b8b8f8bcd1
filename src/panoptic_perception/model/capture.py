"""Is the model being captured into a static graph right now (torch.export, torch.compile, TorchScript)?

Eager inference may skip work whose result is known to be zero (mask heads for detections no
fusion rule will use, NMS iterations after the fixed point); a captured graph must keep its static
shapes and fixed loops. Both paths give identical outputs; tests compare them.
"""
from __future__ import annotations

import torch


def is_capturing() -> bool:
    return (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
            or torch.jit.is_scripting())
