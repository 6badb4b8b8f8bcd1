"""Paste per-box mask probabilities into the image, with static shapes (detectron2 semantics).

detectron2's `paste_masks_in_image` (its GPU path) treats the M x M mask as covering its box
exactly, samples it bilinearly at every image pixel centre (x + 0.5, y + 0.5) with
`grid_sample(align_corners=False)`, and reads zero outside the mask. We do the same for all D
boxes at once over the whole image: one grid_sample, no per-box crops, so shapes never depend
on box sizes. Outputs stay probabilities; thresholding belongs to the fusion.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from panoptic_perception.errors import InputError

# Boxes narrower than this (padding, degenerate detections) paste as all-zero masks, not NaN.
_MIN_BOX_SIZE_PX = 1e-4


def paste_masks(mask_probs: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """mask_probs [D, M, M'] and boxes [D, 4] (xyxy, image pixels) -> image-space probs [D, H, W]."""
    shapes_ok = mask_probs.dim() == 3 and boxes.dim() == 2 and boxes.shape[-1] == 4
    if not shapes_ok or boxes.shape[0] != mask_probs.shape[0]:
        raise InputError(f"paste_masks: expected masks [D, M, M] and boxes [D, 4], got "
                         f"{tuple(mask_probs.shape)} and {tuple(boxes.shape)}")
    num = mask_probs.shape[0]
    dtype = mask_probs.dtype if mask_probs.is_floating_point() else torch.float32
    boxes = boxes.to(dtype)
    x0, y0, x1, y1 = boxes[:, 0:1], boxes[:, 1:2], boxes[:, 2:3], boxes[:, 3:4]
    box_w = (x1 - x0).clamp(min=_MIN_BOX_SIZE_PX)
    box_h = (y1 - y0).clamp(min=_MIN_BOX_SIZE_PX)
    centres_x = torch.arange(width, device=boxes.device, dtype=dtype) + 0.5
    centres_y = torch.arange(height, device=boxes.device, dtype=dtype) + 0.5
    norm_x = (centres_x[None, :] - x0) / box_w * 2 - 1  # [D, W]
    norm_y = (centres_y[None, :] - y0) / box_h * 2 - 1  # [D, H]
    grid = torch.stack(
        (norm_x[:, None, :].expand(num, height, width), norm_y[:, :, None].expand(num, height, width)), dim=-1
    )
    pasted = F.grid_sample(mask_probs.to(dtype)[:, None], grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return pasted[:, 0]
