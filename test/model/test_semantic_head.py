"""Semantic head: detectron2 layout, label-mode channel mapping, loss, gradients."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.labels import Category, LabelSpace, load_label_space
from panoptic_perception.model.config import FPNConfig, ModelConfig, SemanticHeadConfig
from panoptic_perception.model.fpn import build_fpn_backbone
from panoptic_perception.model.semantic_head import (
    THINGS_CHANNEL_CATEGORY,
    SemSegFPNHead,
    build_semantic_head,
    category_to_channel,
    semantic_channel_categories,
    semantic_loss,
    semantic_num_channels,
    semantic_target,
)

H, W = 64, 128
STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def _space() -> LabelSpace:
    # stuff, thing, stuff, thing, stuff: interleaved so that id order != channel order.
    flags = [False, True, False, True, False]
    return LabelSpace("toy", [Category(i, f"c{i}", t, (i, i, i)) for i, t in enumerate(flags)])


def _features(channels: int = 32, batch: int = 1):
    return {lv: torch.randn(batch, channels, H // s, W // s) for lv, s in STRIDES.items()}


def _cfg(mode: str = "all", norm: str = "GN") -> ModelConfig:
    return ModelConfig(fpn=FPNConfig(channels=32), semantic_head=SemanticHeadConfig(mode=mode, conv_dims=32,
                                                                                     norm=norm))


@pytest.mark.parametrize("mode, channels", [("all", 19), ("stuff_plus_things", 11 + 1)])
def test_output_channels_follow_label_mode(mode, channels):
    head = build_semantic_head(_cfg(mode), 32, STRIDES).eval()
    assert semantic_num_channels(load_label_space("cityscapes"), mode) == channels
    with torch.no_grad():
        logits = head(_features(batch=2))
    assert logits.shape == (2, channels, H, W)


def test_layout_and_names_match_detectron2():
    head = build_semantic_head(_cfg(), 32, STRIDES)
    keys = set(head.state_dict())
    # p2: 1 conv, p3: 1, p4: 2, p5: 3 (each conv + GN = 3 arrays) + predictor weight/bias; no p6 branch.
    assert len(keys) == 3 * (1 + 1 + 2 + 3) + 2
    for key in ("p2.0.weight", "p2.0.norm.weight", "p4.2.norm.bias", "p5.4.weight", "predictor.weight",
                "predictor.bias"):
        assert key in keys
    assert not any(k.startswith("p6") for k in keys)
    assert sum(isinstance(m, nn.Upsample) for m in head.p5) == 3 and len(head.p2) == 1
    no_norm = build_semantic_head(_cfg(norm="none"), 32, STRIDES)
    assert "p2.0.bias" in no_norm.state_dict() and "p2.0.norm.weight" not in no_norm.state_dict()


def test_forward_is_sum_of_levels_then_classifier_then_4x_upsample():
    torch.manual_seed(0)
    head = build_semantic_head(_cfg(), 32, STRIDES).eval()
    feats = _features()
    with torch.no_grad():
        summed = sum(getattr(head, lv)(feats[lv]) for lv in ("p2", "p3", "p4", "p5"))
        expected = F.interpolate(head.predictor(summed), scale_factor=4, mode="bilinear", align_corners=False)
        torch.testing.assert_close(head(feats), expected)


def test_initial_loss_is_near_uniform_prediction():
    # From scratch, the classifier starts uncommitted: loss ~ ln(num_classes), not a big spike.
    torch.manual_seed(5)
    head = build_semantic_head(_cfg(), 32, STRIDES).train()
    logits = head(_features())
    loss = semantic_loss(logits, torch.randint(0, 19, (1, H, W)), load_label_space("cityscapes"), "all", 255)
    assert abs(loss.item() - math.log(19)) < 0.2


def test_group_norm_needs_divisible_channels():
    with pytest.raises(ConfigError, match="GroupNorm"):
        SemSegFPNHead({"p2": 32}, {"p2": 4}, 5, conv_dims=48, norm="GN")


def test_stuff_plus_things_channel_mapping():
    space = _space()
    assert category_to_channel(space, "all") == [0, 1, 2, 3, 4]
    # stuff 0, 2, 4 -> channels 0, 1, 2; both things -> the single things channel 3.
    assert category_to_channel(space, "stuff_plus_things") == [0, 3, 1, 3, 2]
    assert semantic_channel_categories(space, "stuff_plus_things") == [0, 2, 4, THINGS_CHANNEL_CATEGORY]
    target = torch.tensor([[[0, 1, 2], [3, 4, 255]]])
    mapped = semantic_target(target, space, "stuff_plus_things", ignore_value=255)
    assert mapped.tolist() == [[[0, 3, 1], [3, 2, 255]]]
    assert semantic_target(target, space, "all", 255).tolist() == target.tolist()
    with pytest.raises(ConfigError):
        semantic_channel_categories(space, "bogus")


@pytest.mark.parametrize("bad", [5, -1, 300])
def test_unknown_target_values_are_input_errors(bad):
    target = torch.tensor([[[0, bad]]])
    with pytest.raises(InputError, match=str(bad)):
        semantic_target(target, _space(), "all", ignore_value=255)


def test_loss_equals_cross_entropy_on_mapped_channels():
    torch.manual_seed(1)
    space = _space()
    target = torch.randint(0, 5, (2, 6, 8))
    target[0, 0, :4] = 255
    logits = torch.randn(2, 4, 6, 8)
    expected_target = torch.tensor([0, 3, 1, 3, 2])[target.clamp(max=4)]
    expected_target[target == 255] = 255
    expected = F.cross_entropy(logits, expected_target, ignore_index=255)
    got = semantic_loss(logits, target, space, "stuff_plus_things", ignore_value=255)
    torch.testing.assert_close(got, expected)
    # Confident, correct logits give a near-zero loss; the mapping, not luck, decides that.
    perfect = F.one_hot(expected_target.clamp(max=3), 4).permute(0, 3, 1, 2).float() * 50
    assert semantic_loss(perfect, target, space, "stuff_plus_things", 255) < 1e-6


def test_loss_all_ignored_is_zero_not_nan_and_checks_shapes():
    space = _space()
    logits = torch.randn(1, 5, 4, 4, requires_grad=True)
    loss = semantic_loss(logits, torch.full((1, 4, 4), 255), space, "all", 255)
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(InputError, match="logits"):
        semantic_loss(torch.randn(1, 4, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), space, "all", 255)
    with pytest.raises(InputError, match="target"):
        semantic_loss(torch.randn(1, 5, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long), space, "all", 255)


def test_gradients_flow_from_loss_to_backbone():
    torch.manual_seed(2)
    cfg = _cfg("stuff_plus_things")
    backbone = build_fpn_backbone(cfg).train()
    head = build_semantic_head(cfg, backbone.out_channels, backbone.strides).train()
    logits = head(backbone(torch.randn(1, 3, H, W)))
    target = torch.randint(0, 19, (1, H, W))
    loss = semantic_loss(logits, target, load_label_space("cityscapes"), "stuff_plus_things", 255)
    loss.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert backbone.bottom_up.stem.conv1.weight.grad.abs().sum() > 0
    assert backbone.fpn_lateral5.weight.grad.abs().sum() > 0
