"""Greedy non-maximum suppression with static shapes (matrix fixed-point form, "Cluster-NMS").

Greedy NMS visits boxes by descending score and keeps a box unless a previously KEPT box overlaps
it with IoU > threshold. Write P[i, j] = "box i precedes box j in the greedy order and
IoU(i, j) > threshold". Then the greedy result g is the solution of

    g[j] = valid[j] and not any_i (g[i] and P[i, j])                                      (*)

P is strictly upper-triangular in greedy order (a DAG), so (*) determines g[j] from the boxes
before j alone: the solution exists and is unique. We find it by iterating k <- f(k) from
k = valid, where f is the right-hand side of (*) (one masked matrix-vector product per step).

Why this equals greedy, and the bound: call depth(j) the number of boxes on the longest chain
i1 -> i2 -> ... -> j of P edges ending at j. A box of depth 1 (nothing precedes and overlaps it)
is correct after one step; if every predecessor of j is correct after t steps, j is correct after
t + 1. So after t steps every box of depth <= t is final, and N steps are always enough. In real
detections chains are short (a handful of steps; Cluster-NMS, Zheng et al. 2020), so the default
runs a fixed `max_iterations` and also reports `converged`: the last step changed nothing, so k
is a fixed point of f, and since the fixed point is unique it IS the greedy result. A result with
converged=False is still a valid suppression of overlapping pairs along short chains, and
`max_iterations=None` runs N steps, which is exact for every input.

The greedy order needs no sort: i precedes j iff score[i] > score[j], or the scores tie and
i < j (the order a stable descending sort gives). That avoids sort/argsort in the graph (TensorRT
converts topk only up to k = 3840) and makes ties deterministic.

Everything works on leading batch dimensions ([..., N, 4]), e.g. one NMS per FPN level or image.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from panoptic_perception.model.box_ops import box_iou
from panoptic_perception.model.capture import is_capturing

# Enough for every box set we have measured (random dense sets and detector outputs need < 10);
# `converged` tells a caller when it was not.
DEFAULT_MAX_ITERATIONS = 24


def suppression_matrix(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    labels: Optional[torch.Tensor] = None,
    valid: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """bool [..., N, N]: P[i, j] = box i comes first in greedy order and suppresses box j if kept.

    With `labels`, only boxes of the same label suppress each other (per-class NMS). Invalid
    (padding) boxes suppress nothing.
    """
    num = scores.shape[-1]
    order = torch.arange(num, device=scores.device)
    s_i = scores[..., :, None]
    s_j = scores[..., None, :]
    precedes = (s_i > s_j) | ((s_i == s_j) & (order[:, None] < order[None, :]))
    suppress = (box_iou(boxes, boxes) > iou_threshold) & precedes
    if labels is not None:
        suppress = suppress & (labels[..., :, None] == labels[..., None, :])
    if valid is not None:
        suppress = suppress & valid[..., :, None]
    return suppress


def solve_keep(
    suppress: torch.Tensor,
    valid: torch.Tensor,
    max_iterations: Optional[int] = DEFAULT_MAX_ITERATIONS,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fixed point of keep[j] = valid[j] & ~any_i(keep[i] & suppress[i, j]) -> (keep, converged).

    suppress [..., N, N] must be acyclic (see `suppression_matrix`). converged [...] is True where
    the last iteration changed nothing, which certifies keep equals greedy NMS.
    """
    num = suppress.shape[-1]
    steps = num if max_iterations is None else max(1, min(int(max_iterations), num))
    # A float matmul counts kept suppressors; it is the fastest form on CPU, GPU and TensorRT.
    weights = suppress.to(torch.float32)
    keep = valid
    previous = keep
    eager = not is_capturing()
    for _ in range(steps):
        previous = keep
        suppressed = torch.matmul(keep.to(torch.float32)[..., None, :], weights)[..., 0, :] > 0.5
        keep = valid & ~suppressed
        if eager and torch.equal(keep, previous):
            break  # the unique fixed point: more steps change nothing (a captured graph runs them all)
    converged = (keep == previous).all(dim=-1)
    if steps >= num:
        converged = torch.ones_like(converged)  # N steps are exact for any input (module docstring)
    return keep, converged


def nms_keep_mask_and_converged(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    labels: Optional[torch.Tensor] = None,
    valid: Optional[torch.Tensor] = None,
    max_iterations: Optional[int] = DEFAULT_MAX_ITERATIONS,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Greedy NMS keep mask [..., N] plus the exactness certificate `converged` [...]."""
    if valid is None:
        valid = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    suppress = suppression_matrix(boxes, scores, iou_threshold, labels=labels, valid=valid)
    return solve_keep(suppress, valid, max_iterations)


def nms_keep_mask(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    valid: Optional[torch.Tensor] = None,
    max_iterations: Optional[int] = DEFAULT_MAX_ITERATIONS,
) -> torch.Tensor:
    """bool [..., N]: boxes [..., N, 4] that greedy NMS keeps (IoU > iou_threshold suppresses).

    `valid` [..., N] marks real entries of a padded input: invalid boxes are neither kept nor
    suppress anything.
    """
    return nms_keep_mask_and_converged(boxes, scores, iou_threshold, None, valid, max_iterations)[0]


def batched_nms_keep_mask(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    iou_threshold: float,
    valid: Optional[torch.Tensor] = None,
    max_iterations: Optional[int] = DEFAULT_MAX_ITERATIONS,
) -> torch.Tensor:
    """Per-label greedy NMS (torchvision batched_nms semantics) as a keep mask [..., N]."""
    return nms_keep_mask_and_converged(boxes, scores, iou_threshold, labels, valid, max_iterations)[0]


def select_topk(keep: torch.Tensor, scores: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The k best kept entries by score -> (indices [..., k] int64, valid [..., k] bool).

    Kept entries come first in descending score; the remaining slots hold arbitrary (not kept)
    indices with valid=False, so gather with the indices is always in range. If k exceeds N the
    output is padded with index 0 and valid=False (k and N are static, so this is not data
    dependent).
    """
    num = scores.shape[-1]
    take = min(int(k), num)
    lowest = torch.finfo(scores.dtype).min
    # Kept entries are ranked by score; dropped ones sink below every kept score, even -inf ones.
    ranked = torch.where(keep, scores.clamp(min=lowest / 2), torch.full_like(scores, lowest))
    _, indices = torch.topk(ranked, take, dim=-1, largest=True, sorted=True)
    selected_valid = torch.gather(keep, -1, indices)
    if take < k:
        pad_shape = indices.shape[:-1] + (int(k) - take,)
        indices = torch.cat([indices, indices.new_zeros(pad_shape)], dim=-1)
        selected_valid = torch.cat([selected_valid, selected_valid.new_zeros(pad_shape)], dim=-1)
    return indices, selected_valid
