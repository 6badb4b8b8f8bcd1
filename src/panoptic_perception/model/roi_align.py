"""RoIAlign (Mask R-CNN, detectron2's ROIAlignV2) in plain torch with static shapes.

Semantics are torchvision's `roi_align` CPU/CUDA kernel, bit for bit up to float rounding:
- aligned=True shifts box corners by -0.5 pixel (pixel centres sit at integer + 0.5);
  aligned=False forces ROI sizes to at least 1 pixel, as Detectron (v1) did.
- Each output bin averages sampling_ratio x sampling_ratio bilinear samples at the sub-bin
  centres. A sample more than one pixel outside the map is 0; one within a pixel of the border
  reads the clamped border value (not a blend with zero).
- sampling_ratio=0 is adaptive: ceil(roi_size / output_size) samples per axis, different per ROI.
  Static shapes need a fixed sample count, so we lay out `max_adaptive_samples` samples per axis
  and give the ones beyond an ROI's own count zero weight. Positions of the used samples are
  the exact adaptive ones, so the result is exact for every ROI whose adaptive count is within
  the bound; larger ROIs (an ROI spanning more than max_adaptive_samples * output_size feature
  pixels on an axis, i.e. a box far bigger than its FPN level is meant for) are averaged over the
  bound's samples instead. Cost grows with the square of the bound.

How: every feature level (and every image of the batch) is stacked into one tall canvas
[1, C, rows, max width]; each ROI carries its own scale, map size and row offset, the sample
coordinates are clamped exactly as the kernel clamps them (so no sample ever blends across a
map boundary), and ONE `grid_sample` (align_corners=True, so a normalised coordinate maps to an
exact pixel position) reads all of them. That is one static-shape op with a TensorRT converter,
independent of the number of levels, and it is differentiable for training.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from panoptic_perception.errors import InputError

DEFAULT_MAX_ADAPTIVE_SAMPLES = 4

OutputSize = Union[int, Tuple[int, int]]


def _pair(output_size: OutputSize) -> Tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    height, width = output_size
    return int(height), int(width)


def _build_canvas(features: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, List[int]]:
    """Stack levels [B, C, H_l, W_l] into [1, C, sum_l B*H_l, max W_l]; returns per-level row offsets."""
    max_width = max(int(f.shape[-1]) for f in features)
    parts = []
    offsets = []
    rows = 0
    for level in features:
        batch, channels, height, width = (int(s) for s in level.shape)
        tall = level.permute(1, 0, 2, 3).reshape(channels, batch * height, width)
        if width < max_width:
            tall = F.pad(tall, (0, max_width - width))
        parts.append(tall)
        offsets.append(rows)
        rows += batch * height
    canvas = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return canvas[None], offsets


def _axis_samples(
    start: torch.Tensor,
    end: torch.Tensor,
    size: torch.Tensor,
    bins: int,
    samples: int,
    sampling_ratio: int,
    aligned: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample coordinates along one axis for K ROIs -> (coord [K, bins, samples], weight, count [K]).

    start/end are ROI edges in feature pixels (already scaled and shifted), size the map extent.
    weight is 1 for a sample that counts and lies within one pixel of the map, else 0.
    """
    extent = end - start
    if not aligned:
        extent = extent.clamp(min=1.0)
    bin_size = extent / bins
    step = torch.arange(samples, device=start.device, dtype=start.dtype)
    if sampling_ratio > 0:
        grid = torch.full_like(extent, float(sampling_ratio))
    else:
        # ceil of a negative or zero extent is <= 0: no samples, as in the kernel's empty loop.
        grid = torch.ceil(extent / bins).clamp(min=0.0, max=float(samples))
    safe_grid = grid.clamp(min=1.0)
    bin_index = torch.arange(bins, device=start.device, dtype=start.dtype)
    coord = (start[:, None, None] + bin_index[None, :, None] * bin_size[:, None, None]
             + (step[None, None, :] + 0.5) * (bin_size / safe_grid)[:, None, None])
    used = step[None, None, :] < grid[:, None, None]
    inside = (coord >= -1.0) & (coord <= size[:, None, None])
    weight = (used & inside).to(coord.dtype)
    # The kernel clamps to [0, size - 1]; clamping here also keeps samples on their own map.
    coord = torch.minimum(coord.clamp(min=0.0), size[:, None, None] - 1)
    return coord, weight, grid


def _sample_canvas(
    canvas: torch.Tensor,
    boxes: torch.Tensor,
    scale: torch.Tensor,
    map_height: torch.Tensor,
    map_width: torch.Tensor,
    row_offset: torch.Tensor,
    output_size: Tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
    max_adaptive_samples: int,
) -> torch.Tensor:
    """RoIAlign of K boxes, each with its own scale, map size and canvas row offset -> [K, C, h, w]."""
    out_h, out_w = output_size
    samples = sampling_ratio if sampling_ratio > 0 else max_adaptive_samples
    dtype = canvas.dtype if canvas.dtype in (torch.float32, torch.float64) else torch.float32
    boxes = boxes.to(dtype)
    scale = scale.to(dtype)
    offset = 0.5 if aligned else 0.0
    x1 = boxes[:, 0] * scale - offset
    y1 = boxes[:, 1] * scale - offset
    x2 = boxes[:, 2] * scale - offset
    y2 = boxes[:, 3] * scale - offset
    ys, wy, grid_h = _axis_samples(y1, y2, map_height.to(dtype), out_h, samples, sampling_ratio, aligned)
    xs, wx, grid_w = _axis_samples(x1, x2, map_width.to(dtype), out_w, samples, sampling_ratio, aligned)
    ys = ys + row_offset.to(dtype)[:, None, None]

    num = boxes.shape[0]
    rows, cols = int(canvas.shape[-2]), int(canvas.shape[-1])
    norm_y = ys * (2.0 / max(rows - 1, 1)) - 1.0  # align_corners=True: -1 and 1 are the end pixels
    norm_x = xs * (2.0 / max(cols - 1, 1)) - 1.0
    # Samples of one output bin are the innermost grid axis, so averaging them is a reduction over
    # contiguous memory (a strided 6-D reduction cost more than the sampling itself on CPU).
    shape = (num, out_h, out_w, samples, samples)
    grid = torch.stack(
        (
            norm_x.reshape(num, 1, out_w, 1, samples).expand(shape),
            norm_y.reshape(num, out_h, 1, samples, 1).expand(shape),
        ),
        dim=-1,
    ).reshape(1, num * out_h * out_w, samples * samples, 2)
    sampled = F.grid_sample(canvas.to(dtype), grid, mode="bilinear", padding_mode="border",
                            align_corners=True)[0]  # [C, K*h*w, s*s]
    count = (grid_h * grid_w).clamp(min=1.0)
    weight = (wy.reshape(num, out_h, 1, samples, 1) * wx.reshape(num, 1, out_w, 1, samples)
              / count[:, None, None, None, None])
    pooled = (sampled * weight.reshape(num * out_h * out_w, samples * samples)).sum(dim=-1)
    channels = int(canvas.shape[1])
    return pooled.reshape(channels, num, out_h, out_w).permute(1, 0, 2, 3).to(canvas.dtype)


def _check_inputs(boxes: torch.Tensor, batch_index: torch.Tensor, sampling_ratio: int,
                  max_adaptive_samples: int) -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise InputError(f"roi_align: boxes must be [K, 4], got {tuple(boxes.shape)}")
    if batch_index.shape != boxes.shape[:1]:
        raise InputError(f"roi_align: batch_index must be [K]={tuple(boxes.shape[:1])}, "
                         f"got {tuple(batch_index.shape)}")
    if sampling_ratio < 0 or max_adaptive_samples < 1:
        raise InputError(f"roi_align: sampling_ratio must be >= 0 (got {sampling_ratio}) and "
                         f"max_adaptive_samples >= 1 (got {max_adaptive_samples})")


def roi_align(
    features: torch.Tensor,
    boxes: torch.Tensor,
    batch_index: torch.Tensor,
    output_size: OutputSize,
    spatial_scale: float,
    sampling_ratio: int = 0,
    aligned: bool = True,
    max_adaptive_samples: int = DEFAULT_MAX_ADAPTIVE_SAMPLES,
) -> torch.Tensor:
    """features [B, C, H, W], boxes [K, 4] (xyxy, image pixels), batch_index [K] -> [K, C, h, w]."""
    if features.dim() != 4:
        raise InputError(f"roi_align: features must be [B, C, H, W], got {tuple(features.shape)}")
    _check_inputs(boxes, batch_index, sampling_ratio, max_adaptive_samples)
    canvas, _ = _build_canvas([features])
    height, width = int(features.shape[-2]), int(features.shape[-1])
    num = boxes.shape[0]
    like = boxes.new_ones(num)
    return _sample_canvas(
        canvas, boxes, like * float(spatial_scale), like * height, like * width,
        batch_index.to(boxes.dtype) * height, _pair(output_size), sampling_ratio, aligned,
        max_adaptive_samples,
    )


def assign_boxes_to_levels(
    boxes: torch.Tensor,
    min_level: int,
    max_level: int,
    canonical_box_size: float = 224.0,
    canonical_level: int = 4,
) -> torch.Tensor:
    """detectron2's FPN level of each box [K, 4] as an index from 0 (= min_level) -> int64 [K].

    level = floor(canonical_level + log2(sqrt(area) / canonical_box_size)), clamped (FPN paper eq. 1).
    """
    sizes = torch.sqrt(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + 1e-8))
    return (levels.clamp(min=min_level, max=max_level) - min_level).to(torch.int64)


def multilevel_roi_align(
    features: Sequence[torch.Tensor],
    strides: Sequence[int],
    boxes: torch.Tensor,
    batch_index: torch.Tensor,
    output_size: OutputSize,
    sampling_ratio: int = 0,
    canonical_box_size: float = 224.0,
    canonical_level: int = 4,
    aligned: bool = True,
    max_adaptive_samples: int = DEFAULT_MAX_ADAPTIVE_SAMPLES,
) -> torch.Tensor:
    """RoIAlign each box on its FPN level (detectron2 ROIPooler) -> [K, C, h, w].

    features: one [B, C, H_l, W_l] map per level, finest first, with strides that are consecutive
    powers of two (4, 8, 16, 32 for P2-P5).
    """
    if len(features) != len(strides) or not features:
        raise InputError(f"multilevel_roi_align: {len(features)} feature maps but {len(strides)} strides")
    levels = [int(round(math.log2(s))) for s in strides]
    consecutive = levels == list(range(levels[0], levels[-1] + 1))
    if any(2 ** lv != s for lv, s in zip(levels, strides)) or not consecutive:
        raise InputError(
            f"multilevel_roi_align: strides must be consecutive powers of two, got {list(strides)}"
        )
    _check_inputs(boxes, batch_index, sampling_ratio, max_adaptive_samples)
    canvas, offsets = _build_canvas(features)
    level = assign_boxes_to_levels(boxes, levels[0], levels[-1], canonical_box_size, canonical_level)
    dtype = boxes.dtype
    # Per-level constants, gathered per box: static tables, data-dependent values only.
    table = torch.tensor(
        [[1.0 / s, float(f.shape[-2]), float(f.shape[-1]), float(o)]
         for s, f, o in zip(strides, features, offsets)],
        dtype=dtype, device=boxes.device,
    )
    per_box = table[level]
    row_offset = per_box[:, 3] + batch_index.to(dtype) * per_box[:, 1]
    return _sample_canvas(
        canvas, boxes, per_box[:, 0], per_box[:, 1], per_box[:, 2], row_offset,
        _pair(output_size), sampling_ratio, aligned, max_adaptive_samples,
    )
