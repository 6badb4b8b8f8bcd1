"""Axis-aligned box arithmetic in plain torch: areas, IoU, delta encoding, clipping.

Boxes are (x1, y1, x2, y2) in pixels, continuous coordinates (detectron2 convention: the width is
x2 - x1, no "+1"). Every function is elementwise or broadcast arithmetic, so it traces and exports
with static shapes and has TensorRT converters.

`encode_boxes` / `decode_boxes` follow detectron2's Box2BoxTransform exactly: centre offsets scaled
by the reference size, log size ratios, per-coordinate weights, and the size delta clamped before
`exp` so that a wild regression cannot overflow.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import torch

# (H, W) boxes are clipped to: the static input's, or the image region's as 0-dim tensors.
ClipSize = Tuple[Union[int, torch.Tensor], Union[int, torch.Tensor]]

# detectron2 _DEFAULT_SCALE_CLAMP: boxes may grow at most 1000/16 times their reference size.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of boxes [..., 4] -> [...]; inverted boxes count as zero area."""
    widths = (boxes[..., 2] - boxes[..., 0]).clamp(min=0)
    heights = (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    return widths * heights


def box_intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection areas of a [..., N, 4] and b [..., M, 4] -> [..., N, M]."""
    # One contiguous [..., N, M] plane per coordinate: an interleaved [..., N, M, 2] layout made every
    # later op strided and cost NMS several times more on CPU.
    width = (torch.minimum(a[..., :, None, 2], b[..., None, :, 2])
             - torch.maximum(a[..., :, None, 0], b[..., None, :, 0])).clamp(min=0)
    height = (torch.minimum(a[..., :, None, 3], b[..., None, :, 3])
              - torch.maximum(a[..., :, None, 1], b[..., None, :, 1])).clamp(min=0)
    return width * height


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of a [..., N, 4] and b [..., M, 4] -> [..., N, M] (leading dims broadcast).

    Two zero-area boxes have IoU 0 (not NaN), so degenerate detections never suppress anything.
    """
    inter = box_intersection(a, b)
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
    safe_union = union.clamp(min=torch.finfo(inter.dtype).tiny)
    return torch.where(union > 0, inter / safe_union, torch.zeros_like(inter))


def _centres_and_sizes(boxes: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    ctr_x = boxes[..., 0] + 0.5 * widths
    ctr_y = boxes[..., 1] + 0.5 * heights
    return ctr_x, ctr_y, widths, heights


def encode_boxes(
    reference: torch.Tensor,
    proposals: torch.Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Regression targets [..., 4] that turn `proposals` into `reference` (the ground-truth boxes).

    Inverse of `decode_boxes`: decode_boxes(encode_boxes(gt, p, w), p, w) == gt. Proposals must have
    positive width and height (anchors and RPN outputs do); reference boxes too (log of the ratio).
    """
    wx, wy, ww, wh = (float(w) for w in weights)
    src_x, src_y, src_w, src_h = _centres_and_sizes(proposals)
    dst_x, dst_y, dst_w, dst_h = _centres_and_sizes(reference)
    dx = wx * (dst_x - src_x) / src_w
    dy = wy * (dst_y - src_y) / src_h
    dw = ww * torch.log(dst_w / src_w)
    dh = wh * torch.log(dst_h / src_h)
    return torch.stack((dx, dy, dw, dh), dim=-1)


def decode_boxes(
    deltas: torch.Tensor,
    boxes: torch.Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    scale_clamp: float = DEFAULT_SCALE_CLAMP,
) -> torch.Tensor:
    """Apply deltas [..., 4] to boxes [..., 4] (broadcast) -> boxes [..., 4].

    Class-specific regression [N, K*4] is decoded as deltas.view(N, K, 4) with boxes[:, None, :].
    """
    wx, wy, ww, wh = (float(w) for w in weights)
    deltas = deltas.to(boxes.dtype)
    ctr_x, ctr_y, widths, heights = _centres_and_sizes(boxes)
    dx = deltas[..., 0] / wx
    dy = deltas[..., 1] / wy
    dw = (deltas[..., 2] / ww).clamp(max=scale_clamp)
    dh = (deltas[..., 3] / wh).clamp(max=scale_clamp)
    pred_ctr_x = dx * widths + ctr_x
    pred_ctr_y = dy * heights + ctr_y
    half_w = 0.5 * torch.exp(dw) * widths
    half_h = 0.5 * torch.exp(dh) * heights
    return torch.stack(
        (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=-1
    )


def clip_boxes(boxes: torch.Tensor, height: Union[int, torch.Tensor], width: Union[int, torch.Tensor]) -> torch.Tensor:
    """Clamp boxes [..., 4] into the image [0, width] x [0, height] (detectron2 Boxes.clip).

    height / width may be 0-dim tensors: the image region of a padded static input, known only at
    run time (a graph input), as detectron2 clips to the resized image, not to its padding.
    """
    if isinstance(height, torch.Tensor) or isinstance(width, torch.Tensor):
        x = torch.minimum(boxes[..., 0::2].clamp(min=0.0), torch.as_tensor(width).to(boxes))
        y = torch.minimum(boxes[..., 1::2].clamp(min=0.0), torch.as_tensor(height).to(boxes))
    else:
        x = boxes[..., 0::2].clamp(min=0.0, max=float(width))
        y = boxes[..., 1::2].clamp(min=0.0, max=float(height))
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def nonempty_boxes(boxes: torch.Tensor, min_size: float = 0.0) -> torch.Tensor:
    """bool [...]: width and height both greater than min_size (detectron2 Boxes.nonempty)."""
    return ((boxes[..., 2] - boxes[..., 0]) > min_size) & ((boxes[..., 3] - boxes[..., 1]) > min_size)
