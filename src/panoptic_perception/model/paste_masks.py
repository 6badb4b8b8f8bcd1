"""Paste per-box mask probabilities into the image, with static shapes (detectron2 semantics).

detectron2's `paste_masks_in_image` (its GPU path) treats the M x M mask as covering its box
exactly, samples it bilinearly at every image pixel centre (x + 0.5, y + 0.5) with
`grid_sample(align_corners=False)`, and reads zero outside the mask. Outputs stay probabilities;
thresholding belongs to the fusion.

Bilinear sampling of an axis-aligned box is separable: the value at pixel (y, x) is
sum_ij wy[y, i] * mask[i, j] * wx[x, j], where wy and wx are the 1-D "tent" weights
max(0, 1 - |u - i|) of the pixel centre's position u in mask cells. Taps outside the mask simply
have no column in the weight matrices, which is grid_sample's zero padding. So the paste of all D
boxes is two batched matmuls, Wy [D, H, M] @ mask [D, M, M'] @ Wx^T [D, M', W]: shapes never
depend on box sizes, and on CPU it is several times faster than one whole-image grid_sample.
"""
from __future__ import annotations

import torch

from panoptic_perception.errors import InputError

# Boxes narrower than this (padding, degenerate detections) paste as all-zero masks, not NaN.
_MIN_BOX_SIZE_PX = 1e-4


def _tent_weights(start: torch.Tensor, size: torch.Tensor, cells: int, pixels: int) -> torch.Tensor:
    """[D, pixels, cells]: bilinear weight of mask cell i at each image pixel centre along one axis."""
    dtype = start.dtype
    centres = torch.arange(pixels, device=start.device, dtype=dtype) + 0.5
    # Position of each pixel centre in mask cells, cell i's centre at i (align_corners=False).
    u = (centres[None, :] - start) / size * cells - 0.5  # [D, pixels]
    index = torch.arange(cells, device=start.device, dtype=dtype)
    return (1.0 - (u[:, :, None] - index[None, None, :]).abs()).clamp(min=0.0)


def paste_masks(mask_probs: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """mask_probs [D, M, M'] and boxes [D, 4] (xyxy, image pixels) -> image-space probs [D, H, W]."""
    shapes_ok = mask_probs.dim() == 3 and boxes.dim() == 2 and boxes.shape[-1] == 4
    if not shapes_ok or boxes.shape[0] != mask_probs.shape[0]:
        raise InputError(f"paste_masks: expected masks [D, M, M] and boxes [D, 4], got "
                         f"{tuple(mask_probs.shape)} and {tuple(boxes.shape)}")
    dtype = mask_probs.dtype if mask_probs.is_floating_point() else torch.float32
    boxes = boxes.to(dtype)
    x0, y0, x1, y1 = boxes[:, 0:1], boxes[:, 1:2], boxes[:, 2:3], boxes[:, 3:4]
    box_w = (x1 - x0).clamp(min=_MIN_BOX_SIZE_PX)
    box_h = (y1 - y0).clamp(min=_MIN_BOX_SIZE_PX)
    cells_y, cells_x = int(mask_probs.shape[1]), int(mask_probs.shape[2])
    weight_y = _tent_weights(y0, box_h, cells_y, int(height))  # [D, H, M]
    weight_x = _tent_weights(x0, box_w, cells_x, int(width))  # [D, W, M']
    rows = torch.bmm(weight_y, mask_probs.to(dtype))  # [D, H, M']
    return torch.bmm(rows, weight_x.transpose(1, 2))
