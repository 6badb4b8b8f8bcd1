"""Build the eval-mode network from a ModelConfig and a state_dict (runtime's one door into model/)."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def build_eval_model(model_config, state_dict: Mapping[str, torch.Tensor],
                     source: str = "state_dict") -> nn.Module:
    """PanopticModel with weights loaded strictly, eval mode, no grads, on CPU, batch norms folded."""
    from panoptic_perception.model.checkpoint import apply_state_dict
    from panoptic_perception.model.layers import fold_conv_norms
    from panoptic_perception.model.panoptic_fpn import build_model

    model = build_model(model_config)
    apply_state_dict(model, state_dict, source)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    fold_conv_norms(model)
    return model
