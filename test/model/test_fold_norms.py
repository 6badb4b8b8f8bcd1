"""Folding batch norms into convs for inference changes nothing but rounding."""
from __future__ import annotations

import pytest
import torch

from panoptic_perception.model.backbone import build_backbone
from panoptic_perception.model.config import BackboneConfig
from panoptic_perception.model.layers import fold_conv_norms


@pytest.mark.parametrize("name,norm", [("mobilenetv2", "BN"), ("resnet18", "FrozenBN")])
def test_folded_backbone_equals_unfolded(name, norm):
    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(name=name, norm=norm))
    with torch.no_grad():  # statistics far from the identity, so a wrong fold shows
        for module in backbone.modules():
            if hasattr(module, "running_var"):
                module.running_mean.uniform_(-1.0, 1.0)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    backbone.eval()
    image = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        want = backbone(image)
        assert fold_conv_norms(backbone) > 10
        got = backbone(image)
    assert not any(hasattr(m, "running_var") for m in backbone.modules())
    for level, value in want.items():
        torch.testing.assert_close(got[level], value, rtol=1e-4, atol=1e-4)


def test_training_mode_batch_norm_is_not_folded():
    backbone = build_backbone(BackboneConfig(name="mobilenetv2", norm="BN")).train()
    assert fold_conv_norms(backbone) == 0
