"""Bottom-up backbones (ResNet-50, ResNet-18, MobileNetV2) and the in-graph input normalisation.

The ResNets are laid out and named as detectron2's `modeling/backbone/resnet.py` (stem.conv1,
res2..res5 of blocks with conv1..conv3 + .norm and .shortcut) so that its model-zoo weights load
by name. MobileNetV2 follows the same scheme (stem, res2..res5, conv1..conv3 per block) so the
FPN and the checkpoint tooling treat all three alike. Every backbone returns
{"res2": stride 4, "res3": 8, "res4": 16, "res5": 32} and exposes `out_channels` and `strides`.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from panoptic_perception.errors import ConfigError
from panoptic_perception.model.config import BackboneConfig, ModelConfig
from panoptic_perception.model.layers import conv_norm, freeze_batchnorm

STAGE_NAMES = ("res2", "res3", "res4", "res5")
STAGE_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


class Preprocess(nn.Module):
    """RGB 0..255 [B,3,H,W] (float or uint8) -> the normalised tensor the weights expect.

    Part of the exported graph so that the channel flip, mean and std run on the accelerator
    (TensorRT folds them into one scale-shift) instead of on the CPU per frame.
    """

    def __init__(self, pixel_mean: Sequence[float], pixel_std: Sequence[float], input_format: str = "RGB"
                 ) -> None:
        super().__init__()
        if input_format not in ("RGB", "BGR"):
            raise ConfigError(f"input_format must be RGB or BGR, got {input_format!r}")
        if len(pixel_mean) != 3 or len(pixel_std) != 3:
            raise ConfigError(f"pixel_mean and pixel_std need 3 values, got {pixel_mean} and {pixel_std}")
        if any(s <= 0 for s in pixel_std):
            raise ConfigError(f"pixel_std values must be positive, got {pixel_std}")
        self.flip_to_bgr = input_format == "BGR"
        mean = torch.tensor([float(v) for v in pixel_mean]).reshape(1, 3, 1, 1)
        std = torch.tensor([float(v) for v in pixel_std]).reshape(1, 3, 1, 1)
        # Not persistent: they come from the config, and detectron2 checkpoints do not carry them.
        self.register_buffer("scale", 1.0 / std, persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Preprocess:
        return cls(cfg.pixel_mean, cfg.pixel_std, cfg.input_format)

    def forward(self, image_rgb: torch.Tensor) -> torch.Tensor:
        x = image_rgb.to(self.scale.dtype)
        if self.flip_to_bgr:
            x = x.flip(1)
        return x * self.scale + self.shift


# ----------------------------------------------------------------------------------------- ResNet


class BasicStem(nn.Module):
    """7x7/2 conv + norm + ReLU, then 3x3/2 max-pool: stride 4."""

    def __init__(self, norm: str, out_channels: int = 64) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv1 = conv_norm(3, out_channels, 7, norm, stride=2, activation=F.relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convs, stride in the first."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str) -> None:
        super().__init__()
        self.shortcut = (conv_norm(in_channels, out_channels, 1, norm, stride=stride)
                         if in_channels != out_channels or stride != 1 else None)
        self.conv1 = conv_norm(in_channels, out_channels, 3, norm, stride=stride, activation=F.relu)
        self.conv2 = conv_norm(out_channels, out_channels, 3, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


class BottleneckBlock(nn.Module):
    """ResNet-50 block: 1x1 reduce, 3x3, 1x1 expand; MSRA models stride in the 1x1, torchvision in the 3x3."""

    def __init__(self, in_channels: int, out_channels: int, bottleneck_channels: int, stride: int,
                 norm: str, stride_in_1x1: bool) -> None:
        super().__init__()
        self.shortcut = (conv_norm(in_channels, out_channels, 1, norm, stride=stride)
                         if in_channels != out_channels or stride != 1 else None)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv_norm(in_channels, bottleneck_channels, 1, norm, stride=stride_1x1,
                               activation=F.relu)
        self.conv2 = conv_norm(bottleneck_channels, bottleneck_channels, 3, norm, stride=stride_3x3,
                               activation=F.relu)
        self.conv3 = conv_norm(bottleneck_channels, out_channels, 1, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class _StagedBackbone(nn.Module):
    """Shared plumbing: stem + res2..res5 registered by name, detectron2's freeze_at."""

    out_channels: Dict[str, int]
    strides: Dict[str, int]

    def _register_stages(self, stages: List[nn.Sequential], channels: Sequence[int]) -> None:
        for name, stage in zip(STAGE_NAMES, stages):
            self.add_module(name, stage)
        self.stage_names: Tuple[str, ...] = STAGE_NAMES
        self.out_channels = dict(zip(STAGE_NAMES, channels))
        self.strides = dict(STAGE_STRIDES)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.stem(x)
        outputs: Dict[str, torch.Tensor] = {}
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outputs[name] = x
        return outputs

    def freeze(self, freeze_at: int) -> _StagedBackbone:
        """Freeze the stem (freeze_at >= 1) and res2..res{freeze_at} (>= 2), as detectron2 does.

        Frozen parts get requires_grad=False and their BatchNorms become FrozenBatchNorm2d, so
        their statistics cannot drift in training mode either.
        """
        if not 0 <= freeze_at <= 5:
            raise ConfigError(f"backbone.freeze_at must be 0..5 (0 none, 1 stem, k stem+res2..resk), "
                              f"got {freeze_at}")
        parts = (["stem"] if freeze_at >= 1 else []) + [f"res{k}" for k in range(2, freeze_at + 1)]
        for name in parts:
            module = freeze_batchnorm(getattr(self, name))
            setattr(self, name, module)
            for p in module.parameters():
                p.requires_grad_(False)
        return self


_RESNET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class ResNet(_StagedBackbone):
    """detectron2-layout ResNet (depth 18/34 with BasicBlocks, 50/101 with BottleneckBlocks)."""

    def __init__(self, depth: int = 50, norm: str = "FrozenBN", stride_in_1x1: bool = True,
                 stem_channels: int = 64) -> None:
        super().__init__()
        if depth not in _RESNET_DEPTHS:
            raise ConfigError(f"ResNet depth must be one of {sorted(_RESNET_DEPTHS)}, got {depth}")
        self.stem = BasicStem(norm, stem_channels)
        basic = depth < 50
        # R18/34 keep 64 channels in res2; R50+ expand 4x (res2 out 256, bottleneck 64).
        out_channels = [64, 128, 256, 512] if basic else [256, 512, 1024, 2048]
        in_channels = stem_channels
        stages: List[nn.Sequential] = []
        for idx, (num_blocks, out_ch) in enumerate(zip(_RESNET_DEPTHS[depth], out_channels)):
            blocks: List[nn.Module] = []
            for b in range(num_blocks):
                stride = 2 if (b == 0 and idx > 0) else 1
                if basic:
                    blocks.append(BasicBlock(in_channels, out_ch, stride, norm))
                else:
                    blocks.append(BottleneckBlock(in_channels, out_ch, out_ch // 4, stride, norm,
                                                  stride_in_1x1))
                in_channels = out_ch
            stages.append(nn.Sequential(*blocks))
        self._register_stages(stages, out_channels)


# ----------------------------------------------------------------------------------- MobileNetV2


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (conv1, absent at t=1), 3x3 depthwise (conv2), 1x1 linear (conv3)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int,
                 norm: str) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv1 = (conv_norm(in_channels, hidden, 1, norm, activation=F.relu6) if expand_ratio != 1
                      else None)
        self.conv2 = conv_norm(hidden, hidden, 3, norm, stride=stride, groups=hidden, activation=F.relu6)
        self.conv3 = conv_norm(hidden, out_channels, 1, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.conv1 is None else self.conv1(x)
        y = self.conv3(self.conv2(y))
        return x + y if self.use_residual else y


class MobileNetV2Stem(nn.Module):
    """3x3/2 conv to 32 channels and the first (t=1) inverted residual: stride 2, 16 channels."""

    def __init__(self, norm: str) -> None:
        super().__init__()
        self.conv1 = conv_norm(3, 32, 3, norm, stride=2, activation=F.relu6)
        self.block1 = InvertedResidual(32, 16, 1, 1, norm)
        self.out_channels = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block1(self.conv1(x))


# (expansion t, output channels c, repeats n, first stride s) per stage, from Sandler et al. Table 2
# after the stem; res4 and res5 each merge two rows of the table that share a stride.
_MOBILENETV2_STAGES = {
    "res2": [(6, 24, 2, 2)],
    "res3": [(6, 32, 3, 2)],
    "res4": [(6, 64, 4, 2), (6, 96, 3, 1)],
    "res5": [(6, 160, 3, 2), (6, 320, 1, 1)],
}


class MobileNetV2(_StagedBackbone):
    """MobileNetV2 (width 1.0) without its 1280-channel classifier conv; taps at strides 4..32."""

    def __init__(self, norm: str = "FrozenBN") -> None:
        super().__init__()
        self.stem = MobileNetV2Stem(norm)
        in_channels = self.stem.out_channels
        stages: List[nn.Sequential] = []
        channels: List[int] = []
        for name in STAGE_NAMES:
            blocks: List[nn.Module] = []
            for t, c, n, s in _MOBILENETV2_STAGES[name]:
                for i in range(n):
                    blocks.append(InvertedResidual(in_channels, c, s if i == 0 else 1, t, norm))
                    in_channels = c
            stages.append(nn.Sequential(*blocks))
            channels.append(in_channels)
        self._register_stages(stages, channels)
        self._init_fan_in()

    def _init_fan_in(self) -> None:
        # Fan-out MSRA init (the ResNets') ignores groups, so depthwise convs would start 1/C too
        # small and, with identity FrozenBN when training from scratch, the signal would vanish by
        # res5. Fan-in He init (ReLU6 gain, unit gain on the linear projections) keeps it ~1.
        for module in self.modules():
            if isinstance(module, InvertedResidual) or isinstance(module, MobileNetV2Stem):
                for name, conv in module.named_children():
                    if isinstance(conv, nn.Conv2d):
                        linear = name == "conv3"
                        nn.init.kaiming_normal_(conv.weight, mode="fan_in",
                                                nonlinearity="linear" if linear else "relu")


def build_backbone(cfg: BackboneConfig) -> _StagedBackbone:
    """The bottom-up network named by cfg.name, with cfg.norm and cfg.freeze_at applied."""
    if cfg.name == "resnet50":
        model: _StagedBackbone = ResNet(50, cfg.norm, cfg.stride_in_1x1)
    elif cfg.name == "resnet18":
        model = ResNet(18, cfg.norm, cfg.stride_in_1x1)
    elif cfg.name == "mobilenetv2":
        model = MobileNetV2(cfg.norm)
    else:
        raise ConfigError(f"unknown backbone '{cfg.name}'; expected resnet50, resnet18 or mobilenetv2")
    return model.freeze(cfg.freeze_at)
