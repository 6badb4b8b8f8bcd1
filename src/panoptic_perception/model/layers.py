"""Building blocks shared by the backbones, the FPN and the semantic head.

`Conv2dNorm` mirrors detectron2's `layers.Conv2d` (a conv that owns its `.norm` and applies an
activation) so that parameter names come out as detectron2's (`conv1.weight`, `conv1.norm.weight`)
and its model-zoo checkpoints map 1:1. Everything here is plain torch and export friendly.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from panoptic_perception.errors import ConfigError

# detectron2's FrozenBN / BN epsilon (its model-zoo weights were folded with this value).
BN_EPS = 1e-5
GN_GROUPS = 32


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters: a per-channel scale and shift.

    Stored as buffers (weight, bias, running_mean, running_var) with detectron2's names, so an
    optimiser never touches them and state_dicts from either framework load unchanged.
    """

    def __init__(self, num_features: int, eps: float = BN_EPS) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Folded into one multiply-add, which TensorRT fuses into the preceding conv.
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1).to(x.dtype) + shift.reshape(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:  # noqa: ANN001 - torch signature
        # A regular BatchNorm2d's state_dict carries num_batches_tracked; it means nothing here.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        frozen = cls(bn.num_features, bn.eps)
        with torch.no_grad():
            if bn.affine:
                frozen.weight.copy_(bn.weight.detach())
                frozen.bias.copy_(bn.bias.detach())
            if bn.track_running_stats and bn.running_mean is not None:
                frozen.running_mean.copy_(bn.running_mean)
                frozen.running_var.copy_(bn.running_var)
        return frozen

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d inside `module` (or module itself) by a FrozenBatchNorm2d."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return FrozenBatchNorm2d.from_batchnorm(module)
    for name, child in list(module.named_children()):
        new_child = freeze_batchnorm(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


@torch.no_grad()
def fold_conv_norms(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm / FrozenBatchNorm of a Conv2dNorm into its conv; returns how many.

    Inference only (the statistics become part of the weights): one conv instead of conv + a
    per-channel multiply-add over the whole feature map. GroupNorm depends on the data and stays.
    """
    folded = 0
    for conv in module.modules():
        norm = getattr(conv, "norm", None) if isinstance(conv, Conv2dNorm) else None
        if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.track_running_stats:
            weight = norm.weight if norm.affine else torch.ones_like(norm.running_var)
            bias = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
        elif isinstance(norm, FrozenBatchNorm2d):
            weight, bias = norm.weight, norm.bias
        else:
            continue
        scale = weight * (norm.running_var + norm.eps).rsqrt()
        shift = bias - norm.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(shift, requires_grad=False)
        conv.norm = None
        folded += 1
    return folded


def make_norm(kind: str, channels: int) -> Optional[nn.Module]:
    """Norm layer by config name: "FrozenBN", "BN", "GN" (32 groups) or "none"/"" (no norm)."""
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if kind == "BN":
        return nn.BatchNorm2d(channels, eps=BN_EPS)
    if kind == "GN":
        if channels % GN_GROUPS:
            raise ConfigError(f"GroupNorm({GN_GROUPS}) needs a channel count divisible by {GN_GROUPS}, "
                              f"got {channels}")
        return nn.GroupNorm(GN_GROUPS, channels)
    if kind in ("none", ""):
        return None
    raise ConfigError(f"unknown norm '{kind}'; expected FrozenBN, BN, GN or none")


class Conv2dNorm(nn.Conv2d):
    """nn.Conv2d followed by an optional `.norm` and activation (detectron2's Conv2d layout)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = False,
                 norm: Optional[nn.Module] = None,
                 activation: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def conv_norm(in_channels: int, out_channels: int, kernel_size: int, norm: str, stride: int = 1,
              groups: int = 1, activation: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
              ) -> Conv2dNorm:
    """'Same' padded conv + norm (+ activation); bias only when there is no norm to absorb it."""
    norm_module = make_norm(norm, out_channels)
    conv = Conv2dNorm(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                      groups=groups, bias=norm_module is None, norm=norm_module, activation=activation)
    msra_fill(conv)
    return conv


def msra_fill(conv: nn.Conv2d) -> None:
    """Caffe2's MSRAFill: He-normal over fan-out, zero bias (detectron2's backbone/head init)."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def xavier_fill(conv: nn.Conv2d) -> None:
    """Caffe2's XavierFill (uniform, a=1), which detectron2 uses for the FPN convs."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
