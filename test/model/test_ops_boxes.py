from __future__ import annotations

import math

import pytest
import torch

from panoptic_perception.model.box_ops import (
    DEFAULT_SCALE_CLAMP,
    box_area,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    nonempty_boxes,
)


def _random_boxes(n: int, generator: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size
    wh = torch.rand(n, 2, generator=generator) * size / 2
    return torch.cat([xy, xy + wh], dim=1)


def _iou_reference(a: list, b: list) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def test_box_area_of_hand_boxes():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 3.0], [1.0, 1.0, 1.0, 5.0], [5.0, 5.0, 2.0, 2.0]])
    assert box_area(boxes).tolist() == [12.0, 0.0, 0.0]


def test_box_iou_matches_pairwise_reference():
    gen = torch.Generator().manual_seed(0)
    a = _random_boxes(20, gen, size=30)
    b = _random_boxes(15, gen, size=30)
    b[3] = b[3, :2].repeat(2)  # zero-area box
    iou = box_iou(a, b)
    assert iou.shape == (20, 15)
    expected = torch.tensor([[_iou_reference(x, y) for y in b.tolist()] for x in a.tolist()])
    torch.testing.assert_close(iou, expected, rtol=1e-5, atol=1e-6)


def test_box_iou_zero_area_pairs_are_zero_not_nan():
    point = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    iou = box_iou(point, point)
    assert torch.isfinite(iou).all()
    assert iou.item() == 0.0
    same = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert box_iou(same, same).item() == pytest.approx(1.0)


def test_encode_decode_round_trip_with_weights():
    gen = torch.Generator().manual_seed(1)
    proposals = _random_boxes(50, gen) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    gt = _random_boxes(50, gen) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    weights = (10.0, 10.0, 5.0, 5.0)
    deltas = encode_boxes(gt, proposals, weights)
    torch.testing.assert_close(decode_boxes(deltas, proposals, weights), gt, rtol=1e-4, atol=1e-4)


def test_encode_of_hand_example_follows_box2box_transform():
    proposal = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    gt = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # centre (12, 14), size 20 x 20
    deltas = encode_boxes(gt, proposal, (10.0, 10.0, 5.0, 5.0))
    expected = torch.tensor([[10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 0.0]])
    torch.testing.assert_close(deltas, expected)


def test_decode_clamps_size_deltas():
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    huge = torch.tensor([[0.0, 0.0, 50.0, 50.0]])
    decoded = decode_boxes(huge, box)
    size = decoded[0, 2] - decoded[0, 0]
    assert size.item() == pytest.approx(16 * math.exp(DEFAULT_SCALE_CLAMP), rel=1e-5)
    assert torch.isfinite(decoded).all()


def test_decode_broadcasts_class_specific_deltas():
    gen = torch.Generator().manual_seed(2)
    boxes = _random_boxes(6, gen) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    deltas = torch.randn(6, 3 * 4, generator=gen) * 0.2
    per_class = decode_boxes(deltas.view(6, 3, 4), boxes[:, None, :])
    assert per_class.shape == (6, 3, 4)
    for k in range(3):
        torch.testing.assert_close(per_class[:, k], decode_boxes(deltas[:, 4 * k:4 * k + 4], boxes))


def test_clip_boxes_to_image():
    boxes = torch.tensor([[-5.0, -2.0, 50.0, 30.0], [3.0, 4.0, 5.0, 6.0]])
    clipped = clip_boxes(boxes, height=20, width=40)
    assert clipped.tolist() == [[0.0, 0.0, 40.0, 20.0], [3.0, 4.0, 5.0, 6.0]]


def test_nonempty_boxes():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 2.0, 0.5]])
    assert nonempty_boxes(boxes).tolist() == [True, False, True]
    assert nonempty_boxes(boxes, min_size=0.6).tolist() == [True, False, False]


def test_box_ops_export():
    class Decode(torch.nn.Module):
        def forward(self, deltas, boxes, others):
            decoded = clip_boxes(decode_boxes(deltas, boxes, (10.0, 10.0, 5.0, 5.0)), 100, 200)
            return decoded, box_iou(decoded, others)

    gen = torch.Generator().manual_seed(3)
    args = (torch.randn(8, 4, generator=gen), _random_boxes(8, gen) + 1, _random_boxes(5, gen))
    program = torch.export.export(Decode(), args)
    for got, want in zip(program.module()(*args), Decode()(*args)):
        torch.testing.assert_close(got, want)
