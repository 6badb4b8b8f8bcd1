"""Feature Pyramid Network on top of a bottom-up backbone, named as detectron2's `FPN`.

The module *is* the model's backbone: its bottom-up network sits at `bottom_up.*` and its own
convs at `fpn_lateral{k}` / `fpn_output{k}` (k = log2 stride), so inside the top module the
state_dict reads `backbone.bottom_up.res2.0.conv1.weight`, `backbone.fpn_lateral2.weight`, ...
exactly like a detectron2 Panoptic FPN checkpoint. P6 is a stride-2 max-pool of P5
("LastLevelMaxPool"), used only by the RPN.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from panoptic_perception.errors import ConfigError
from panoptic_perception.model.backbone import _StagedBackbone, build_backbone
from panoptic_perception.model.config import FPNConfig, ModelConfig
from panoptic_perception.model.layers import Conv2dNorm, xavier_fill

LEVEL_STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def _validate_levels(levels: Sequence[str]) -> List[str]:
    levels = list(levels)
    unknown = [lv for lv in levels if lv not in LEVEL_STRIDES]
    if unknown or not levels:
        raise ConfigError(f"fpn.levels must be a non-empty run of {list(LEVEL_STRIDES)}, got {levels}")
    order = list(LEVEL_STRIDES)
    first = order.index(levels[0])
    if levels != order[first:first + len(levels)]:
        raise ConfigError(f"fpn.levels must be consecutive and ascending, got {levels}")
    if "p5" not in levels:
        # The top-down path starts at the coarsest backbone stage; P6 is pooled from P5.
        raise ConfigError(f"fpn.levels must include p5, got {levels}")
    return levels


class FPN(nn.Module):
    """bottom_up + lateral 1x1 / output 3x3 convs + top-down nearest-upsample-and-add (+ P6 max-pool)."""

    def __init__(self, bottom_up: _StagedBackbone, channels: int = 256,
                 levels: Sequence[str] = ("p2", "p3", "p4", "p5", "p6")) -> None:
        super().__init__()
        if channels <= 0:
            raise ConfigError(f"fpn.channels must be positive, got {channels}")
        self.bottom_up = bottom_up
        self.levels = _validate_levels(levels)
        self.in_features = [f"res{lv[1]}" for lv in self.levels if lv != "p6"]
        self.has_p6 = "p6" in self.levels
        # Registration order is detectron2's (lateral k, output k for the finest k first) so the
        # state_dict key order also matches.
        for feature in self.in_features:
            k = feature[3:]
            lateral = Conv2dNorm(bottom_up.out_channels[feature], channels, 1, bias=True)
            output = Conv2dNorm(channels, channels, 3, padding=1, bias=True)
            xavier_fill(lateral)
            xavier_fill(output)
            self.add_module(f"fpn_lateral{k}", lateral)
            self.add_module(f"fpn_output{k}", output)
        self.out_channels = channels
        self.strides: Dict[str, int] = {lv: LEVEL_STRIDES[lv] for lv in self.levels}

    @property
    def size_divisibility(self) -> int:
        # The coarsest bottom-up stage (detectron2's FPN._size_divisibility, 32 for P5): P6 pools P5
        # with stride 2 and takes ceil(P5 / 2) rows and columns, as detectron2's LastLevelMaxPool does.
        return max(stride for level, stride in self.strides.items() if level != "p6")

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Normalised image [B,3,H,W] (H, W divisible by the coarsest stride) -> {"p2": ..., "p6": ...}."""
        features = self.bottom_up(x)
        results: Dict[str, torch.Tensor] = {}
        top_down = None
        for feature in reversed(self.in_features):
            k = feature[3:]
            lateral = getattr(self, f"fpn_lateral{k}")(features[feature])
            if top_down is not None:
                # Nearest 2x with a fixed factor: static shape, and the exact op detectron2 uses.
                lateral = lateral + F.interpolate(top_down, scale_factor=2.0, mode="nearest")
            top_down = lateral
            results[f"p{k}"] = getattr(self, f"fpn_output{k}")(lateral)
        if self.has_p6:
            # kernel 1, stride 2: subsampling, exactly detectron2's LastLevelMaxPool.
            results["p6"] = F.max_pool2d(results["p5"], kernel_size=1, stride=2, padding=0)
        return {lv: results[lv] for lv in self.levels}


def build_fpn(bottom_up: _StagedBackbone, cfg: FPNConfig) -> FPN:
    return FPN(bottom_up, cfg.channels, cfg.levels)


def build_fpn_backbone(cfg: ModelConfig) -> FPN:
    """The model's `backbone`: bottom-up network of cfg.backbone wrapped in the FPN of cfg.fpn."""
    return build_fpn(build_backbone(cfg.backbone), cfg.fpn)
