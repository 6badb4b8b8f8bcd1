from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_perception.model.box_ops import box_iou
from panoptic_perception.model.nms import (
    batched_nms_keep_mask,
    nms_keep_mask,
    nms_keep_mask_and_converged,
    select_topk,
)


def greedy_nms_reference(iou: np.ndarray, scores: np.ndarray, valid: np.ndarray, threshold: float,
                         labels: np.ndarray | None = None) -> np.ndarray:
    """Textbook greedy NMS: visit by descending score (ties: lower index first), keep unless a kept
    box of the same label overlaps with IoU > threshold (compared in float32, as torch does)."""
    threshold = np.float32(threshold)
    order = sorted((i for i in range(len(scores)) if valid[i]), key=lambda i: (-scores[i], i))
    keep = np.zeros(len(scores), dtype=bool)
    kept: list = []
    for i in order:
        if all(iou[j, i] <= threshold or (labels is not None and labels[j] != labels[i]) for j in kept):
            keep[i] = True
            kept.append(i)
    return keep


def _random_box_sets(num_sets: int, num_boxes: int, seed: int):
    """Dense random sets with ties, duplicates, zero-area boxes and padding."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 40, (num_sets, num_boxes, 2), generator=gen).float()
    wh = torch.randint(0, 25, (num_sets, num_boxes, 2), generator=gen).float()
    boxes = torch.cat([xy, xy + wh], dim=-1)
    # Duplicates: copy a random earlier box into ~15% of the slots.
    dup = torch.rand(num_sets, num_boxes, generator=gen) < 0.15
    src = torch.randint(0, num_boxes, (num_sets, num_boxes), generator=gen)
    boxes = torch.where(dup[..., None], torch.gather(boxes, 1, src[..., None].expand(-1, -1, 4)), boxes)
    # Ties: scores from only 6 levels.
    scores = torch.randint(0, 6, (num_sets, num_boxes), generator=gen).float() / 5
    valid = torch.rand(num_sets, num_boxes, generator=gen) < 0.9
    labels = torch.randint(0, 3, (num_sets, num_boxes), generator=gen)
    return boxes, scores, valid, labels


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_equals_greedy_on_thousands_of_random_sets(threshold):
    boxes, scores, valid, _ = _random_box_sets(1200, 24, seed=int(threshold * 10))
    assert (boxes[..., 2] == boxes[..., 0]).any(), "fixture must contain zero-area boxes"
    keep, converged = nms_keep_mask_and_converged(boxes, scores, threshold, valid=valid)
    iou = box_iou(boxes, boxes).numpy()
    assert converged.all()
    for s in range(boxes.shape[0]):
        expected = greedy_nms_reference(iou[s], scores[s].numpy(), valid[s].numpy(), threshold)
        np.testing.assert_array_equal(keep[s].numpy(), expected, err_msg=f"set {s}")


def test_batched_nms_equals_per_label_greedy():
    boxes, scores, valid, labels = _random_box_sets(1000, 20, seed=7)
    keep = batched_nms_keep_mask(boxes, scores, labels, 0.5, valid=valid)
    iou = box_iou(boxes, boxes).numpy()
    for s in range(boxes.shape[0]):
        expected = greedy_nms_reference(iou[s], scores[s].numpy(), valid[s].numpy(), 0.5, labels[s].numpy())
        np.testing.assert_array_equal(keep[s].numpy(), expected, err_msg=f"set {s}")


def _chain(num: int) -> tuple:
    # Each box overlaps only its neighbours above 0.5 IoU: greedy keeps every second one, and the
    # fixed point needs `num` steps to get there (the worst case of the bound).
    x = torch.arange(num, dtype=torch.float32) * 2
    boxes = torch.stack([x, torch.zeros(num), x + 10, torch.full((num,), 10.0)], dim=1)
    scores = torch.linspace(1.0, 0.1, num)
    return boxes, scores


def test_long_chain_is_reported_unconverged_and_exact_with_full_bound():
    boxes, scores = _chain(20)
    expected = np.arange(20) % 2 == 0
    keep, converged = nms_keep_mask_and_converged(boxes, scores, 0.5, max_iterations=3)
    assert not bool(converged)
    keep_full, converged_full = nms_keep_mask_and_converged(boxes, scores, 0.5, max_iterations=None)
    assert bool(converged_full)
    np.testing.assert_array_equal(keep_full.numpy(), expected)
    # Short bounds stay correct on the boxes within reach of the chain's head.
    np.testing.assert_array_equal(keep[:3].numpy(), expected[:3])


def test_converged_flag_certifies_exactness_with_small_bounds():
    boxes, scores, valid, _ = _random_box_sets(600, 24, seed=11)
    iou = box_iou(boxes, boxes).numpy()
    converged_counts = []
    for steps in (1, 2, 3):
        keep, converged = nms_keep_mask_and_converged(boxes, scores, 0.5, valid=valid, max_iterations=steps)
        converged_counts.append(int(converged.sum()))
        for s in torch.nonzero(converged).flatten().tolist():
            expected = greedy_nms_reference(iou[s], scores[s].numpy(), valid[s].numpy(), 0.5)
            np.testing.assert_array_equal(keep[s].numpy(), expected)
    # The flag is informative: one step certifies few sets, more steps certify more.
    assert converged_counts[0] < converged_counts[-1] < 600 or converged_counts[-1] == 600
    assert converged_counts[0] < 600


def test_invalid_boxes_neither_kept_nor_suppress():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms_keep_mask(boxes, scores, 0.5).tolist() == [True, False, False]
    valid = torch.tensor([False, True, True])
    assert nms_keep_mask(boxes, scores, 0.5, valid=valid).tolist() == [False, True, False]


def test_equal_scores_keep_the_lower_index():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    scores = torch.tensor([0.5, 0.7, 0.7])
    assert nms_keep_mask(boxes, scores, 0.5).tolist() == [False, True, False]


def test_select_topk_orders_kept_by_score_and_pads():
    scores = torch.tensor([0.1, 0.9, 0.5, float("-inf"), 0.7])
    keep = torch.tensor([True, False, True, True, True])
    indices, valid = select_topk(keep, scores, 3)
    assert indices.tolist() == [4, 2, 0]
    assert valid.tolist() == [True, True, True]
    indices, valid = select_topk(keep, scores, 7)
    assert indices.shape == (7,)
    assert valid.tolist() == [True, True, True, True, False, False, False]
    assert set(indices[:4].tolist()) == {4, 2, 0, 3}
    assert indices[:3].tolist() == [4, 2, 0]


def test_nms_and_topk_export_equal_eager():
    class Detect(torch.nn.Module):
        def forward(self, boxes, scores, labels):
            keep = batched_nms_keep_mask(boxes, scores, labels, 0.5)
            return select_topk(keep, scores, 8)

    boxes, scores, _, labels = _random_box_sets(1, 30, seed=3)
    args = (boxes[0], scores[0] + torch.rand(30) * 0.01, labels[0])
    program = torch.export.export(Detect(), args)
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any(name in op for op in ops for name in ("nonzero", "masked_select", "unique", "sort"))
    for got, want in zip(program.module()(*args), Detect()(*args)):
        torch.testing.assert_close(got, want)
