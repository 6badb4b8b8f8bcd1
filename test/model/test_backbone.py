"""Backbones: shapes/strides, detectron2 naming, FrozenBN, stride_in_1x1, freeze_at, gradients, Preprocess."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from panoptic_perception.errors import ConfigError
from panoptic_perception.model.backbone import MobileNetV2, Preprocess, ResNet, build_backbone
from panoptic_perception.model.config import BackboneConfig, ModelConfig
from panoptic_perception.model.layers import FrozenBatchNorm2d, freeze_batchnorm

H, W = 64, 128
EXPECTED_CHANNELS = {
    "resnet18": {"res2": 64, "res3": 128, "res4": 256, "res5": 512},
    "resnet50": {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048},
    "mobilenetv2": {"res2": 24, "res3": 32, "res4": 96, "res5": 320},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANNELS))
def test_output_shapes_strides_and_channels(name):
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(name=name)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, H, W))
    assert list(out) == ["res2", "res3", "res4", "res5"]
    assert model.out_channels == EXPECTED_CHANNELS[name]
    for level, feature in out.items():
        stride = model.strides[level]
        assert stride == 2 ** int(level[3:])
        assert feature.shape == (2, model.out_channels[level], H // stride, W // stride)
        assert torch.isfinite(feature).all()


def test_resnet50_names_match_detectron2():
    keys = set(ResNet(50).state_dict())
    for key in ("stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.shortcut.weight",
                "res2.0.shortcut.norm.bias", "res3.3.conv2.norm.running_mean", "res4.5.conv3.weight",
                "res5.2.conv3.norm.weight"):
        assert key in keys
    # detectron2's R-50 bottom-up has 5 arrays per conv+FrozenBN: 53 convs (1 stem + 16x3 + 4 shortcuts).
    assert len(keys) == 5 * (1 + 16 * 3 + 4)
    assert not any("num_batches_tracked" in k or (k.endswith(".bias") and ".norm." not in k) for k in keys)


def test_resnet18_names_use_basic_blocks():
    keys = set(ResNet(18).state_dict())
    assert "res2.0.conv2.norm.weight" in keys and "res3.0.shortcut.weight" in keys
    assert not any(".conv3." in k for k in keys)
    assert not any(k.startswith("res2.0.shortcut") for k in keys)  # 64 -> 64 channels, stride 1


def test_frozen_bn_equals_eval_batchnorm():
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(8, eps=1e-5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 3.0)
    bn.eval()
    x = torch.randn(2, 8, 5, 7)
    frozen = FrozenBatchNorm2d.from_batchnorm(bn)
    torch.testing.assert_close(frozen(x), bn(x))
    # A BatchNorm state_dict (with num_batches_tracked) loads into FrozenBN directly.
    other = FrozenBatchNorm2d(8)
    other.load_state_dict(bn.state_dict())
    torch.testing.assert_close(other(x), bn(x))
    # Default FrozenBN is the identity and has nothing for an optimiser.
    torch.testing.assert_close(FrozenBatchNorm2d(8)(x), x)
    assert list(FrozenBatchNorm2d(8).parameters()) == []


def test_freeze_batchnorm_replaces_nested_bn():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(nn.BatchNorm2d(4)))
    frozen = freeze_batchnorm(model)
    assert isinstance(frozen[1][0], FrozenBatchNorm2d)


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_stride_in_1x1_moves_the_stride(stride_in_1x1):
    block = ResNet(50, stride_in_1x1=stride_in_1x1).res3[0]
    assert block.conv1.stride == ((2, 2) if stride_in_1x1 else (1, 1))
    assert block.conv2.stride == ((1, 1) if stride_in_1x1 else (2, 2))
    assert block.shortcut.stride == (2, 2)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_freeze_at_freezes_stem_and_stages(name):
    model = build_backbone(BackboneConfig(name=name, norm="BN", freeze_at=2))
    for prefix in ("stem.", "res2."):
        params = [p for n, p in model.named_parameters() if n.startswith(prefix)]
        assert params and not any(p.requires_grad for p in params)
    for prefix in ("res3.", "res4.", "res5."):
        assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.res2.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.res3.modules())
    unfrozen = build_backbone(BackboneConfig(name=name, norm="BN", freeze_at=0))
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_freeze_at_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="freeze_at"):
        build_backbone(BackboneConfig(name="resnet18", freeze_at=6))


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
@pytest.mark.parametrize("norm", ["FrozenBN", "BN"])
def test_gradients_reach_every_trainable_parameter(name, norm):
    torch.manual_seed(2)
    model = build_backbone(BackboneConfig(name=name, norm=norm)).train()
    out = model(torch.randn(2, 3, H, W))
    sum(f.square().mean() for f in out.values()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_mobilenetv2_signal_survives_random_init_with_frozen_bn():
    # From scratch, FrozenBN is the identity: the init alone must keep res5 alive.
    torch.manual_seed(3)
    with torch.no_grad():
        out = MobileNetV2("FrozenBN").eval()(torch.randn(1, 3, H, W))
    assert 0.1 < float(out["res5"].std()) < 100.0


def test_preprocess_normalises_and_flips_to_bgr():
    cfg = ModelConfig(input_format="BGR", pixel_mean=(10.0, 20.0, 30.0), pixel_std=(1.0, 2.0, 4.0))
    image = torch.stack([torch.full((4, 6), v) for v in (100.0, 150.0, 200.0)])[None]  # R, G, B planes
    out = Preprocess.from_config(cfg)(image)
    assert out.shape == image.shape
    expected_bgr = torch.tensor([(200 - 10) / 1, (150 - 20) / 2, (100 - 30) / 4])
    torch.testing.assert_close(out[0, :, 0, 0], expected_bgr)
    rgb = Preprocess((10.0, 20.0, 30.0), (1.0, 2.0, 4.0), "RGB")(image.to(torch.uint8))
    torch.testing.assert_close(rgb[0, :, 0, 0], torch.tensor([90.0, 65.0, 42.5]))
    assert not Preprocess.from_config(cfg).state_dict()  # config, not weights


def test_preprocess_rejects_bad_std():
    with pytest.raises(ConfigError, match="pixel_std"):
        Preprocess((0.0, 0.0, 0.0), (1.0, 0.0, 1.0))
