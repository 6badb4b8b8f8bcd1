"""Panoptic FPN's semantic segmentation branch and its loss (detectron2 `SemSegFPNHead` layout).

Each FPN level P2..P5 goes through log2(stride/4) blocks of conv3x3 + GN + ReLU + bilinear 2x
(one conv and no upsampling for P2), the four 1/4-scale maps are summed, a 1x1 conv predicts the
class logits, and they are upsampled 4x to the input size. Modules are named `p2`, `p3`, ... and
`predictor` so the weights of detectron2's `sem_seg_head` load by name.

Label modes (SemanticHeadConfig.mode):
- "all": one channel per category of the label space, channel == category id.
- "stuff_plus_things": the stuff categories in id order, then ONE "things" channel that every thing
  category maps to. (detectron2's COCO model puts "things" at channel 0: the weight importer
  rotates its predictor rows to this order.)
"""
from __future__ import annotations

import math
from typing import List, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.labels import LabelSpace, load_label_space
from panoptic_perception.model.config import ModelConfig
from panoptic_perception.model.layers import conv_norm

SEMANTIC_LEVELS = ("p2", "p3", "p4", "p5")
THINGS_CHANNEL_CATEGORY = -1  # what `semantic_channel_categories` reports for the merged things channel
LABEL_MODES = ("all", "stuff_plus_things")


def _check_mode(mode: str) -> None:
    if mode not in LABEL_MODES:
        raise ConfigError(f"semantic_head.mode must be one of {LABEL_MODES}, got {mode!r}")


def semantic_num_channels(label_space: LabelSpace, mode: str) -> int:
    _check_mode(mode)
    return label_space.num_classes if mode == "all" else len(label_space.stuff_ids) + 1


def semantic_channel_categories(label_space: LabelSpace, mode: str) -> List[int]:
    """Category id predicted by each output channel; -1 marks the merged "things" channel."""
    _check_mode(mode)
    if mode == "all":
        return list(range(label_space.num_classes))
    return list(label_space.stuff_ids) + [THINGS_CHANNEL_CATEGORY]


def category_to_channel(label_space: LabelSpace, mode: str) -> List[int]:
    """Output channel of each category id (index = category id)."""
    _check_mode(mode)
    if mode == "all":
        return list(range(label_space.num_classes))
    stuff_channel = {cid: ch for ch, cid in enumerate(label_space.stuff_ids)}
    things = len(label_space.stuff_ids)
    return [stuff_channel.get(c.id, things) for c in label_space.categories]


def semantic_target(target: torch.Tensor, label_space: LabelSpace, mode: str, ignore_value: int
                    ) -> torch.Tensor:
    """Category-id label map [B,H,W] -> channel-index label map; ignore_value passes through.

    Any other value that is not a category id of the label space raises InputError: a wrong
    label map should stop training, not silently train on garbage.
    """
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise InputError(f"semantic target must be an integer tensor of category ids, got {target.dtype}")
    mapping = category_to_channel(label_space, mode)
    if 0 <= ignore_value < len(mapping):
        raise ConfigError(f"ignore_value {ignore_value} is a category id of label space '{label_space.name}'")
    size = max(len(mapping), ignore_value + 1)
    lut = torch.full((size,), -1, dtype=torch.long, device=target.device)
    lut[: len(mapping)] = torch.tensor(mapping, dtype=torch.long, device=target.device)
    if ignore_value >= 0:
        lut[ignore_value] = ignore_value
    target = target.long()
    in_range = (target >= 0) & (target < size)
    mapped = lut[target.clamp(0, size - 1)]
    bad = ~in_range | (mapped < 0)
    if bool(bad.any()):
        values = torch.unique(target[bad])[:10].tolist()
        raise InputError(f"semantic target has values {values} that are neither category ids of label "
                         f"space '{label_space.name}' (0..{label_space.num_classes - 1}) "
                         f"nor ignore_value {ignore_value}")
    return mapped


def semantic_loss(logits: torch.Tensor, target: torch.Tensor, label_space: LabelSpace, mode: str,
                  ignore_value: int) -> torch.Tensor:
    """Mean per-pixel cross-entropy of input-size logits [B,C,H,W] against category ids [B,H,W]."""
    expected = semantic_num_channels(label_space, mode)
    if logits.dim() != 4 or logits.shape[1] != expected:
        raise InputError(f"semantic logits must be [B,{expected},H,W] for mode {mode!r}, "
                         f"got {tuple(logits.shape)}")
    if target.dim() != 3 or target.shape[0] != logits.shape[0] or target.shape[1:] != logits.shape[2:]:
        raise InputError(f"semantic target must be [B,H,W] = {(logits.shape[0], *logits.shape[2:])}, "
                         f"got {tuple(target.shape)}")
    channels = semantic_target(target, label_space, mode, ignore_value)
    if not bool((channels != ignore_value).any()):
        # cross_entropy's mean over zero pixels is NaN; an all-ignore crop contributes nothing.
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), channels, ignore_index=ignore_value, reduction="mean")


class SemSegFPNHead(nn.Module):
    """FPN features {"p2".."p5"} -> semantic logits [B, num_classes, H, W] at input resolution."""

    def __init__(self, in_channels: Mapping[str, int], in_strides: Mapping[str, int], num_classes: int,
                 conv_dims: int = 128, common_stride: int = 4, norm: str = "GN") -> None:
        super().__init__()
        if num_classes <= 0 or conv_dims <= 0:
            raise ConfigError(f"semantic head needs positive num_classes and conv_dims, "
                              f"got {num_classes} and {conv_dims}")
        if common_stride <= 0 or not math.log2(common_stride).is_integer():
            raise ConfigError(f"semantic_head.common_stride must be a power of two, got {common_stride}")
        self.in_features = sorted(in_channels, key=lambda k: in_strides[k])
        if not self.in_features:
            raise ConfigError("semantic head needs at least one input feature")
        if min(in_strides[f] for f in self.in_features) > common_stride:
            raise ConfigError(f"semantic_head.common_stride {common_stride} is finer than every input "
                              f"feature {dict(in_strides)}")
        self.common_stride = common_stride
        self.num_classes = num_classes
        norm_name = "none" if norm in ("none", "") else norm
        for feature in self.in_features:
            stride = in_strides[feature]
            ops: List[nn.Module] = []
            for k in range(max(1, int(math.log2(stride) - math.log2(common_stride)))):
                ops.append(conv_norm(in_channels[feature] if k == 0 else conv_dims, conv_dims, 3, norm_name,
                                     activation=F.relu))
                if stride > common_stride:
                    ops.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
            self.add_module(feature, nn.Sequential(*ops))
        self.predictor = nn.Conv2d(conv_dims, num_classes, kernel_size=1)
        # Small init (not detectron2's MSRA fill) so training from scratch starts at ~ln(C) loss
        # instead of ~5x that from confidently wrong logits; imported weights overwrite it anyway.
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    def layers(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits at 1/common_stride of the input."""
        x = None
        for feature in self.in_features:
            y = getattr(self, feature)(features[feature])
            x = y if x is None else x + y
        return self.predictor(x)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return F.interpolate(self.layers(features), scale_factor=float(self.common_stride), mode="bilinear",
                             align_corners=False)


def build_semantic_head(cfg: ModelConfig, in_channels: int, in_strides: Mapping[str, int],
                        label_space: LabelSpace | None = None) -> SemSegFPNHead:
    """Head for the FPN levels p2..p5 present in in_strides (P6 is not used by the semantic branch)."""
    label_space = label_space if label_space is not None else load_label_space(cfg.label_space)
    levels: Sequence[str] = [lv for lv in SEMANTIC_LEVELS if lv in in_strides]
    head_cfg = cfg.semantic_head
    return SemSegFPNHead({lv: in_channels for lv in levels}, {lv: in_strides[lv] for lv in levels},
                         semantic_num_channels(label_space, head_cfg.mode), head_cfg.conv_dims,
                         head_cfg.common_stride, head_cfg.norm)


__all__ = [
    "SemSegFPNHead", "build_semantic_head", "semantic_loss", "semantic_target", "semantic_num_channels",
    "semantic_channel_categories", "category_to_channel", "THINGS_CHANNEL_CATEGORY",
]
