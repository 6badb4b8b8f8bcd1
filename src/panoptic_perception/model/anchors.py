"""Per-level RPN anchors (detectron2 DefaultAnchorGenerator layout, offset 0).

Each FPN level gets one anchor size and every aspect ratio, so A = len(aspect_ratios) anchors per
feature-map cell. Anchors of a level are ordered (y, x, anchor), matching the RPN head's outputs
after `permute(0, 2, 3, 1)`: anchor i of cell (y, x) is row (y * W + x) * A + i.

The feature sizes are Python ints known at trace time (the input size is fixed), so the grid is
built from `arange` and folds into constants in an exported graph.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
from torch import nn

from panoptic_perception.errors import ConfigError


def cell_anchors(size_px: float, aspect_ratios: Sequence[float]) -> torch.Tensor:
    """Anchors [A, 4] (x1, y1, x2, y2) centred on 0 with area size_px**2 and height/width = ratio."""
    if size_px <= 0:
        raise ConfigError(f"anchor size must be positive, got {size_px}")
    rows = []
    area = float(size_px) ** 2
    for ratio in aspect_ratios:
        if ratio <= 0:
            raise ConfigError(f"anchor aspect ratio must be positive, got {ratio}")
        width = math.sqrt(area / ratio)
        height = ratio * width
        rows.append((-width / 2.0, -height / 2.0, width / 2.0, height / 2.0))
    return torch.tensor(rows, dtype=torch.float32)


def grid_anchors(cells: torch.Tensor, grid_hw: Tuple[int, int], stride_px: int) -> torch.Tensor:
    """Anchors [H*W*A, 4] of one level: `cells` [A, 4] shifted to every cell's top-left corner."""
    height, width = int(grid_hw[0]), int(grid_hw[1])
    shifts_x = torch.arange(width, dtype=torch.float32, device=cells.device) * float(stride_px)
    shifts_y = torch.arange(height, dtype=torch.float32, device=cells.device) * float(stride_px)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x = shift_x.reshape(-1)
    shift_y = shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    return (shifts[:, None, :] + cells[None, :, :]).reshape(-1, 4)


class AnchorGenerator(nn.Module):
    """Anchors for every FPN level: one size per level, all aspect ratios at each size."""

    def __init__(self, sizes_px: Sequence[float], aspect_ratios: Sequence[float],
                 strides_px: Sequence[int]) -> None:
        super().__init__()
        if len(sizes_px) != len(strides_px):
            raise ConfigError(
                f"rpn.anchor_sizes has {len(sizes_px)} entries but the FPN has {len(strides_px)} levels"
            )
        if not aspect_ratios:
            raise ConfigError("rpn.aspect_ratios must not be empty")
        self.strides_px = [int(s) for s in strides_px]
        self.num_anchors_per_cell = len(aspect_ratios)
        for level, size in enumerate(sizes_px):
            # Not persistent: anchors are derived from the config, never from a checkpoint.
            self.register_buffer(f"cells_{level}", cell_anchors(size, aspect_ratios), persistent=False)

    def level_cells(self, level: int) -> torch.Tensor:
        return getattr(self, f"cells_{level}")

    def forward(self, grid_sizes: Sequence[Tuple[int, int]]) -> List[torch.Tensor]:
        """One [H*W*A, 4] anchor tensor per level for feature maps of the given (H, W)."""
        if len(grid_sizes) != len(self.strides_px):
            raise ValueError(f"expected {len(self.strides_px)} feature maps, got {len(grid_sizes)}")
        return [grid_anchors(self.level_cells(i), hw, stride)
                for i, (hw, stride) in enumerate(zip(grid_sizes, self.strides_px))]
