"""Learned per-class mask refinement: the convolutional panoptic head of the Inria research report
"Contribution to Panoptic Segmentation".

For each thing class a small CNN takes one instance's mask stacked with the semantic
probabilities (1 + C channels, "a 20-layer image" for Cityscapes), applies a channel-wise
(depthwise) k x k convolution, reduces the channels to one with a 1x1 convolution and applies a
sigmoid. Each detection uses the CNN of its own class.

Running D per-instance CNNs on D stacked (1 + C)-channel images would cost D x (1 + C) full-size
planes. Because the depthwise convolution and the ReLU act on each channel separately, the
1x1 reduction splits into a semantic term that depends only on the class (computed once per thing
class: T x C planes) plus a mask term (one depthwise conv per instance with its class's kernel,
a grouped conv). The result is the same function at a fraction of the memory, with static shapes.

Initialisation makes the untrained head a monotone sharpening of the input mask that keeps 0.5
at 0.5 (sigmoid(8 * (p - 0.5))), so conv_head fusion without trained weights behaves like JSIS.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from panoptic_perception.errors import InputError

_INIT_GAIN = 8.0
# Where PanopticModel keeps the head's weights (fusion.conv_head); only conv_head checkpoints have them.
STATE_PREFIX = "fusion.conv_head."


class ConvPanopticHead(nn.Module):
    """Per-thing-class refinement CNN: (mask, semantic probs) -> refined mask probability."""

    def __init__(self, num_thing_classes: int, semantic_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if num_thing_classes < 1 or semantic_channels < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"ConvPanopticHead: need >= 1 thing class and semantic channel and an odd kernel, got "
                f"{num_thing_classes}, {semantic_channels}, {kernel_size}"
            )
        self.num_thing_classes = num_thing_classes
        self.semantic_channels = semantic_channels
        self.kernel_size = kernel_size
        channels = 1 + semantic_channels  # channel 0: the instance mask
        self.depthwise_weight = nn.Parameter(
            torch.zeros(num_thing_classes, channels, kernel_size, kernel_size))
        self.depthwise_bias = nn.Parameter(torch.zeros(num_thing_classes, channels))
        self.reduce_weight = nn.Parameter(torch.zeros(num_thing_classes, channels))
        self.reduce_bias = nn.Parameter(torch.zeros(num_thing_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        centre = self.kernel_size // 2
        with torch.no_grad():
            self.depthwise_weight.zero_()
            self.depthwise_weight[:, 0, centre, centre] = 1.0  # mask passes through unchanged
            # Semantic kernels start small and random so training can move them; the 1x1 weights
            # on them start at zero, so they do not change the initial output.
            self.depthwise_weight[:, 1:].normal_(0.0, 0.1)
            self.depthwise_bias.zero_()
            self.reduce_weight.zero_()
            self.reduce_weight[:, 0] = _INIT_GAIN
            self.reduce_bias.fill_(-0.5 * _INIT_GAIN)

    def forward_logits(self, mask_probs: torch.Tensor, semantic_probs: torch.Tensor,
                       thing_index: torch.Tensor, used_classes_only: bool = False) -> torch.Tensor:
        """mask_probs [D, H, W], semantic_probs [1, C, H, W], thing_index [D] (0..T-1) -> logits [D, H, W].

        used_classes_only computes the semantic term only for the classes in thing_index (same
        result; a data-dependent shape, so for training, where it saves most of the head's time,
        not for the exported graph).
        """
        num, height, width = (int(s) for s in mask_probs.shape)
        if semantic_probs.dim() == 3:
            semantic_probs = semantic_probs[None]
        if tuple(semantic_probs.shape) != (1, self.semantic_channels, height, width):
            raise InputError(
                f"ConvPanopticHead: semantic_probs must be [1, {self.semantic_channels}, {height}, {width}], "
                f"got {tuple(semantic_probs.shape)}"
            )
        classes = self.num_thing_classes
        sem_channels = self.semantic_channels
        pad = self.kernel_size // 2
        index = thing_index.clamp(min=0, max=classes - 1).to(torch.int64)
        dtype = mask_probs.dtype

        if used_classes_only:
            used, sem_row = torch.unique(index, return_inverse=True)
        else:
            used, sem_row = torch.arange(classes, device=index.device), index
        num_used = int(used.shape[0])

        # Semantic term, once per thing class: depthwise conv of the C planes with that class's kernels.
        sem = semantic_probs.to(dtype).repeat(1, num_used, 1, 1)  # [1, T*C, H, W]
        sem_weight = self.depthwise_weight[used, 1:].reshape(num_used * sem_channels, 1, self.kernel_size,
                                                             self.kernel_size)
        sem_feat = F.conv2d(sem, sem_weight.to(dtype), self.depthwise_bias[used, 1:].reshape(-1).to(dtype),
                            padding=pad, groups=num_used * sem_channels)
        sem_feat = F.relu(sem_feat).reshape(num_used, sem_channels, height, width)
        sem_term = (sem_feat * self.reduce_weight[used, 1:, None, None].to(dtype)).sum(dim=1)  # [T, H, W]

        # Mask term: each instance's own plane through its class's depthwise kernel.
        mask_weight = self.depthwise_weight[index, 0][:, None]  # [D, 1, k, k]
        mask_feat = F.conv2d(mask_probs[None], mask_weight.to(dtype), self.depthwise_bias[index, 0].to(dtype),
                             padding=pad, groups=num)[0]
        mask_term = F.relu(mask_feat) * self.reduce_weight[index, 0][:, None, None].to(dtype)
        return sem_term[sem_row] + mask_term + self.reduce_bias[index][:, None, None].to(dtype)

    def forward(self, mask_probs: torch.Tensor, semantic_probs: torch.Tensor,
                thing_index: torch.Tensor) -> torch.Tensor:
        """Refined instance mask probabilities [D, H, W]."""
        return torch.sigmoid(self.forward_logits(mask_probs, semantic_probs, thing_index))


def conv_head_loss(logits: torch.Tensor, gt_masks: torch.Tensor, valid: torch.Tensor,
                   pixel_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean per-pixel BCE of refined-mask logits [D, H, W] against GT instance masks, over valid rows.

    Rows with valid=False (padding, detections left out of training) contribute nothing;
    pixel_weight ([H, W] or [D, H, W], e.g. 0 on void pixels) weights each pixel. The mean is over
    the weighted pixels of the valid rows; with none the loss is a zero that still carries the graph.
    """
    per_pixel = F.binary_cross_entropy_with_logits(logits, gt_masks.to(logits.dtype), reduction="none")
    weight = valid.to(logits.dtype)[:, None, None].expand_as(per_pixel)
    if pixel_weight is not None:
        weight = weight * pixel_weight.to(logits.dtype)
    return (per_pixel * weight).sum() / weight.sum().clamp(min=1.0)
