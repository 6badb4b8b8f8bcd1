"""RoIAlign (Mask R-CNN, detectron2's ROIAlignV2) in plain torch with static shapes.

Semantics are torchvision's `roi_align` CPU/CUDA kernel, bit for bit up to float rounding:
- aligned=True shifts box corners by -0.5 pixel (pixel centres sit at integer + 0.5);
  aligned=False forces ROI sizes to at least 1 pixel, as Detectron (v1) did.
- Each output bin averages sampling_ratio x sampling_ratio bilinear samples at the sub-bin
  centres. A sample more than one pixel outside the map is 0; one within a pixel of the border
  reads the clamped border value (not a blend with zero).
- sampling_ratio=0 is adaptive: ceil(roi_size / output_size) samples per axis (gy, gx), different
  per ROI. Static shapes need a fixed sample count, so every bin gets `slots` sample slots; an
  ROI uses the first gy * gx of them (slot t is sample (t // gx, t % gx), the kernel's order) and
  gives the rest zero weight. Positions of the used samples are the exact adaptive ones, so the
  result is exact for every ROI with gy * gx <= slots. `multilevel_roi_align` sizes the slots so
  that every box on the coarsest level is exact: boxes are clipped to the canvas, so there
  gy * gx <= ceil(H_top / h) * ceil(W_top / w), a static bound (detectron2 sends every large box
  to P5; on KITTI's 1344x416 canvas that is 2 x 6 = 12 for the box head). The finer levels only
  get boxes below a size limit, which fit the default max_adaptive_samples^2 = 16 slots unless
  very elongated. An ROI that needs more slots than there are is averaged over at most
  max_adaptive_samples per axis instead. Cost grows linearly with the slots.

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
# multilevel_roi_align's second pass (adaptive sampling): 1/16 of the ROIs, those needing the most
# samples, again with up to 8 x 8 samples per bin.
WIDE_ROI_FRACTION = 16
WIDE_SAMPLES = 8

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


def _scaled(boxes: torch.Tensor, scale: torch.Tensor, aligned: bool) -> torch.Tensor:
    """ROI corners [K, 4] in feature pixels, shifted by -0.5 when aligned (the kernel's arithmetic)."""
    return boxes * scale[:, None] - (0.5 if aligned else 0.0)


def _extent(start: torch.Tensor, end: torch.Tensor, aligned: bool) -> torch.Tensor:
    """ROI extent [K] on one axis in feature pixels; aligned=False forces at least 1 (Detectron v1)."""
    return end - start if aligned else (end - start).clamp(min=1.0)


def _adaptive_counts(extent: torch.Tensor, bins: int, sampling_ratio: int) -> torch.Tensor:
    """Samples per axis [K] for ROI extents [K] (feature pixels): fixed, or the kernel's adaptive ceil."""
    if sampling_ratio > 0:
        return torch.full_like(extent, float(sampling_ratio))
    # ceil of a negative or zero extent is <= 0: no samples, as in the kernel's empty loop.
    return torch.ceil(extent / bins).clamp(min=0.0)


def _axis_coords(start: torch.Tensor, extent: torch.Tensor, size: torch.Tensor, bins: int, index: torch.Tensor,
                 count: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Coordinates [K, bins, T] of sample `index` [K, T] (of `count` [K] per bin) along one axis, and
    whether each lies within one pixel of the map (else it reads 0, as in the kernel)."""
    bin_size = extent / bins
    bin_index = torch.arange(bins, device=start.device, dtype=start.dtype)
    coord = (start[:, None, None] + bin_index[None, :, None] * bin_size[:, None, None]
             + (index[:, None, :] + 0.5) * (bin_size / count.clamp(min=1.0))[:, None, None])
    inside = (coord >= -1.0) & (coord <= size[:, None, None])
    # The kernel clamps to [0, size - 1]; clamping here also keeps samples on their own map.
    coord = torch.minimum(coord.clamp(min=0.0), size[:, None, None] - 1)
    return coord, inside


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
    slots: int,
) -> torch.Tensor:
    """RoIAlign of K boxes, each with its own scale, map size and canvas row offset -> [K, C, h, w].

    Every bin reads `slots` samples (sampling_ratio^2 when fixed), of which an ROI uses gy * gx.
    """
    out_h, out_w = output_size
    dtype = canvas.dtype if canvas.dtype in (torch.float32, torch.float64) else torch.float32
    boxes = boxes.to(dtype)
    scale = scale.to(dtype)
    corners = _scaled(boxes, scale, aligned)
    x1, y1 = corners[:, 0], corners[:, 1]
    extent_y = _extent(y1, corners[:, 3], aligned)
    extent_x = _extent(x1, corners[:, 2], aligned)
    grid_h = _adaptive_counts(extent_y, out_h, sampling_ratio)
    grid_w = _adaptive_counts(extent_x, out_w, sampling_ratio)
    if sampling_ratio > 0:
        slots = sampling_ratio * sampling_ratio
    else:
        # ROIs needing more than `slots` samples fall back to at most max_adaptive_samples per axis.
        fits = grid_h * grid_w <= slots
        grid_h = torch.where(fits, grid_h, grid_h.clamp(max=float(max_adaptive_samples)))
        grid_w = torch.where(fits, grid_w, grid_w.clamp(max=float(max_adaptive_samples)))
    slot = torch.arange(slots, device=boxes.device, dtype=dtype)
    safe_w = grid_w.clamp(min=1.0)[:, None]
    sample_y = torch.floor(slot[None, :] / safe_w)  # [K, T]: slot t is sample (t // gx, t % gx)
    sample_x = slot[None, :] - sample_y * safe_w
    used = slot[None, :] < (grid_h * grid_w)[:, None]
    ys, in_y = _axis_coords(y1, extent_y, map_height.to(dtype), out_h, sample_y, grid_h)
    xs, in_x = _axis_coords(x1, extent_x, map_width.to(dtype), out_w, sample_x, grid_w)
    ys = ys + row_offset.to(dtype)[:, None, None]

    num = boxes.shape[0]
    rows, cols = int(canvas.shape[-2]), int(canvas.shape[-1])
    norm_y = ys * (2.0 / max(rows - 1, 1)) - 1.0  # align_corners=True: -1 and 1 are the end pixels
    norm_x = xs * (2.0 / max(cols - 1, 1)) - 1.0
    # Samples of one output bin are the innermost grid axis, so averaging them is a reduction over
    # contiguous memory (a strided 6-D reduction cost more than the sampling itself on CPU).
    shape = (num, out_h, out_w, slots)
    grid = torch.stack(
        (
            norm_x.reshape(num, 1, out_w, slots).expand(shape),
            norm_y.reshape(num, out_h, 1, slots).expand(shape),
        ),
        dim=-1,
    ).reshape(1, num * out_h * out_w, slots, 2)
    sampled = F.grid_sample(canvas.to(dtype), grid, mode="bilinear", padding_mode="border",
                            align_corners=True)[0]  # [C, K*h*w, T]
    count = (grid_h * grid_w).clamp(min=1.0)
    weight = ((in_y & used[:, None, :]).to(dtype).reshape(num, out_h, 1, slots)
              * in_x.to(dtype).reshape(num, 1, out_w, slots) / count[:, None, None, None])
    pooled = (sampled * weight.reshape(num * out_h * out_w, slots)).sum(dim=-1)
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
        max_adaptive_samples, max_adaptive_samples * max_adaptive_samples,
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
    out_h, out_w = _pair(output_size)
    # Enough slots for any box on the coarsest level, which takes every box above its size limit
    # (a box clipped to the canvas spans at most the whole map): static, from the map's shape.
    top_h, top_w = int(features[-1].shape[-2]), int(features[-1].shape[-1])
    slots = max(max_adaptive_samples * max_adaptive_samples, math.ceil(top_h / out_h) * math.ceil(top_w / out_w))
    pooled = _sample_canvas(
        canvas, boxes, per_box[:, 0], per_box[:, 1], per_box[:, 2], row_offset,
        (out_h, out_w), sampling_ratio, aligned, max_adaptive_samples, slots,
    )
    num_wide = min(boxes.shape[0], boxes.shape[0] // WIDE_ROI_FRACTION)
    if sampling_ratio > 0 or num_wide == 0 or WIDE_SAMPLES * WIDE_SAMPLES <= slots:
        return pooled
    # Second pass for the ROIs needing the most samples (elongated boxes on the finer levels, e.g.
    # 3 x 6 for a 66 x 147 px box on P2): the top 1/WIDE_ROI_FRACTION of them again with
    # WIDE_SAMPLES^2 slots, written over the first pass (exact for both where both fit). A static
    # k, so a quarter more sampling for the box head instead of 4x for all ROIs.
    scale = per_box[:, 0]
    corners = _scaled(boxes, scale, aligned)
    need_y = _adaptive_counts(_extent(corners[:, 1], corners[:, 3], aligned), out_h, 0)
    need_x = _adaptive_counts(_extent(corners[:, 0], corners[:, 2], aligned), out_w, 0)
    wide = torch.topk(need_y * need_x, num_wide).indices
    again = _sample_canvas(
        canvas, boxes[wide], scale[wide], per_box[wide, 1], per_box[wide, 2], row_offset[wide],
        (out_h, out_w), 0, aligned, WIDE_SAMPLES, WIDE_SAMPLES * WIDE_SAMPLES,
    )
    index = wide[:, None, None, None].expand_as(again)
    return pooled.scatter(0, index, again)
