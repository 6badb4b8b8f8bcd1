"""FPN: levels, detectron2 naming, top-down path, P6, config checks, and torch.export of the trunk."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from panoptic_perception.errors import ConfigError
from panoptic_perception.model.backbone import Preprocess, build_backbone
from panoptic_perception.model.config import BackboneConfig, FPNConfig, ModelConfig, SemanticHeadConfig
from panoptic_perception.model.fpn import FPN, build_fpn, build_fpn_backbone
from panoptic_perception.model.semantic_head import build_semantic_head

H, W = 64, 128


def _fpn(name: str = "resnet18", channels: int = 32, levels=("p2", "p3", "p4", "p5", "p6")) -> FPN:
    torch.manual_seed(0)
    return build_fpn(build_backbone(BackboneConfig(name=name)), FPNConfig(channels=channels, levels=levels))


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_levels_shapes_and_strides(name):
    fpn = _fpn(name).eval()
    with torch.no_grad():
        out = fpn(torch.randn(1, 3, H, W))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    assert fpn.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert fpn.out_channels == 32 and fpn.size_divisibility == 32
    for level, feature in out.items():
        assert feature.shape == (1, 32, H // fpn.strides[level], W // fpn.strides[level])
    # LastLevelMaxPool: kernel 1, stride 2 = every other P5 pixel.
    torch.testing.assert_close(out["p6"], out["p5"][:, :, ::2, ::2])


def test_state_dict_names_resemble_detectron2():
    holder = nn.Module()
    holder.backbone = build_fpn_backbone(ModelConfig(backbone=BackboneConfig(name="resnet50")))
    keys = set(holder.state_dict())
    for key in ("backbone.bottom_up.stem.conv1.weight", "backbone.bottom_up.res2.0.conv1.norm.running_mean",
                "backbone.fpn_lateral2.weight", "backbone.fpn_lateral5.bias", "backbone.fpn_output3.weight",
                "backbone.fpn_output5.bias"):
        assert key in keys
    # detectron2's R-50-FPN backbone: 265 bottom-up arrays + 4 laterals and 4 outputs with bias.
    assert len(keys) == 265 + 16


def test_top_down_path_matches_hand_computation():
    fpn = _fpn().eval()
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        out = fpn(x)
        c = fpn.bottom_up(x)
        lat5 = fpn.fpn_lateral5(c["res5"])
        lat4 = fpn.fpn_lateral4(c["res4"]) + F.interpolate(lat5, scale_factor=2, mode="nearest")
        lat3 = fpn.fpn_lateral3(c["res3"]) + F.interpolate(lat4, scale_factor=2, mode="nearest")
        lat2 = fpn.fpn_lateral2(c["res2"]) + F.interpolate(lat3, scale_factor=2, mode="nearest")
    torch.testing.assert_close(out["p5"], fpn.fpn_output5(lat5))
    torch.testing.assert_close(out["p2"], fpn.fpn_output2(lat2))


def test_levels_subset_and_validation():
    fpn = _fpn(levels=("p3", "p4", "p5"))
    assert not hasattr(fpn, "fpn_lateral2")
    with torch.no_grad():
        assert list(fpn.eval()(torch.randn(1, 3, H, W))) == ["p3", "p4", "p5"]
    for bad in (("p2", "p4", "p5"), ("p2", "p3"), ("p7",), ()):
        with pytest.raises(ConfigError, match="fpn.levels"):
            _fpn(levels=bad)


def test_gradients_flow_through_fpn_in_training():
    fpn = _fpn().train()
    out = fpn(torch.randn(1, 3, H, W))
    out["p2"].mean().backward()
    # p2 depends on every lateral through the top-down path.
    for k in (2, 3, 4, 5):
        assert getattr(fpn, f"fpn_lateral{k}").weight.grad.abs().sum() > 0
    assert fpn.bottom_up.res5[0].conv1.weight.grad.abs().sum() > 0


class _Trunk(nn.Module):
    """Preprocess + backbone + FPN + semantic head: the dense part of the inference graph."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.preprocess = Preprocess.from_config(cfg)
        self.backbone = build_fpn_backbone(cfg)
        self.sem_seg_head = build_semantic_head(cfg, self.backbone.out_channels, self.backbone.strides)

    def forward(self, image: torch.Tensor):
        features = self.backbone(self.preprocess(image))
        return self.sem_seg_head(features), features["p6"]


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_torch_export_matches_eager(name):
    torch.manual_seed(4)
    cfg = ModelConfig(input_width=W, input_height=H, input_format="BGR",
                      backbone=BackboneConfig(name=name), fpn=FPNConfig(channels=32),
                      semantic_head=SemanticHeadConfig(conv_dims=32))
    trunk = _Trunk(cfg).eval()
    image = torch.rand(1, 3, H, W) * 255
    exported = torch.export.export(trunk, (image,))
    other = torch.rand(1, 3, H, W) * 255  # not the tracing input: the graph must not have baked it in
    with torch.no_grad():
        eager = trunk(other)
    got = exported.module()(other)
    assert got[0].shape == (1, 19, H, W)
    for a, b in zip(got, eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
