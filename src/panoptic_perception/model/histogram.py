"""Histograms of small integer ids with matmuls only (static shapes, TensorRT-convertible).

The fusion needs per-segment pixel counts and per-segment sums over a map of ~10^5 pixels with
~50 ids. The direct forms are bad everywhere: a
[S, P] one-hot comparison is ~5 M elements per statistic (and its bool reductions are slow on
CPU), and scatter-add / bincount have no torch-tensorrt converter. Instead write
id = high * base + low with base = ceil(sqrt(S)); a pixel's one-hot over S ids is the outer
product of two one-hots over `base` values, so

    counts[high, low] = sum_p A[p, high] * B[p, low] = (A^T @ B)[high, low]

with A, B of shape [P, base] (~8 columns): looked up once per map (one embedding gather from a
[num_bins, base] table each), then one matmul per statistic. Weighted sums put the weights into B.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F


class IdHistograms:
    """Statistics of one id map [H, W] (ids in [0, num_bins)); float32 results, exact up to 2^24 counts."""

    def __init__(self, ids_2d: torch.Tensor, num_bins: int) -> None:
        self.height, self.width = int(ids_2d.shape[0]), int(ids_2d.shape[1])
        self.num_bins = int(num_bins)
        self.base = base = max(1, int(math.ceil(math.sqrt(self.num_bins))))
        bins = torch.arange(self.num_bins, device=ids_2d.device)
        values = torch.arange(base, device=ids_2d.device)
        high_table = (torch.div(bins, base, rounding_mode="floor")[:, None] == values).to(torch.float32)
        low_table = (torch.remainder(bins, base)[:, None] == values).to(torch.float32)
        ids_2d = ids_2d.to(torch.int64)
        self._high = F.embedding(ids_2d, high_table)  # [H, W, base]
        self._low = F.embedding(ids_2d, low_table)

    def _bins(self, products: torch.Tensor) -> torch.Tensor:
        """[..., base, base] -> [..., num_bins]."""
        flat = products.reshape(products.shape[:-2] + (self.base * self.base,))
        return flat[..., : self.num_bins]

    def counts(self, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[num_bins]: pixels per id, or the sum of `weights` [H, W] over each id's pixels."""
        pixels = self.height * self.width
        low = self._low if weights is None else self._low * weights.to(torch.float32)[..., None]
        return self._bins(torch.matmul(self._high.reshape(pixels, self.base).transpose(0, 1),
                                       low.reshape(pixels, self.base)))
