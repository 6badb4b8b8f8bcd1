"""Build the eval-mode network from a ModelConfig and a state_dict (runtime's one door into model/)."""
from __future__ import annotations

from typing import Dict, Mapping

import torch
from torch import nn

from panoptic_perception.errors import ConfigError


def weights_for_fusion(state_dict: Mapping[str, torch.Tensor], mode: str, source: str) -> Dict[str, torch.Tensor]:
    """The checkpoint's weights for a model whose fusion runs in `mode`.

    Only conv_head fusion has weights of its own, so a fusion override may switch any checkpoint to
    another mode: other modes leave the head's weights out; conv_head needs them (an untrained head
    would only sharpen the masks, which is not the Inria report's method).
    """
    from panoptic_perception.model.panoptic_head import STATE_PREFIX

    own = {name: value for name, value in state_dict.items() if not name.startswith(STATE_PREFIX)}
    if mode != "conv_head":
        return own
    if len(own) == len(state_dict):
        raise ConfigError(f"fusion conv_head: {source} holds no trained panoptic head ({STATE_PREFIX}*); "
                          "train one with `python -m panoptic_perception train --config "
                          "config/train_panoptic_head.yaml`")
    return dict(state_dict)


def build_eval_model(model_config, state_dict: Mapping[str, torch.Tensor],
                     source: str = "state_dict") -> nn.Module:
    """PanopticModel with weights loaded strictly, eval mode, no grads, on CPU, batch norms folded."""
    from panoptic_perception.model.checkpoint import apply_state_dict
    from panoptic_perception.model.layers import fold_conv_norms
    from panoptic_perception.model.panoptic_fpn import build_model

    model = build_model(model_config)
    apply_state_dict(model, weights_for_fusion(state_dict, model_config.fusion.mode, source), source)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    fold_conv_norms(model)
    return model
