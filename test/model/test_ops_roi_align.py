from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from panoptic_perception.errors import InputError
from panoptic_perception.model.roi_align import assign_boxes_to_levels, multilevel_roi_align, roi_align


def _bilinear(fmap: np.ndarray, y: float, x: float) -> np.ndarray:
    channels, height, width = fmap.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(channels)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * fmap[:, y_low, x_low] + hy * lx * fmap[:, y_low, x_high]
            + ly * hx * fmap[:, y_high, x_low] + ly * lx * fmap[:, y_high, x_high])


def roi_align_reference(features, boxes, batch_index, out_h, out_w, scale, sampling_ratio, aligned):
    """Loop-for-loop transcription of the RoIAlign kernel's description, in float64."""
    feats = features.double().numpy()
    result = np.zeros((len(boxes), feats.shape[1], out_h, out_w))
    offset = 0.5 if aligned else 0.0
    for k, (box, b) in enumerate(zip(boxes.double().tolist(), batch_index.tolist())):
        x1, y1, x2, y2 = (v * scale - offset for v in box)
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / out_h, roi_w / out_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / out_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / out_w)
        count = max(grid_h * grid_w, 1)
        for ph in range(out_h):
            for pw in range(out_w):
                acc = np.zeros(feats.shape[1])
                for iy in range(grid_h):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        acc += _bilinear(feats[b], y, x)
                result[k, :, ph, pw] = acc / count
    return torch.from_numpy(result)


def _random_rois(num: int, height: float, width: float, gen: torch.Generator) -> torch.Tensor:
    # Boxes partly outside the image, tiny, zero-size and inverted ones included.
    xy = torch.rand(num, 2, generator=gen) * torch.tensor([width * 1.2, height * 1.2]) - 0.1 * torch.tensor(
        [width, height])
    wh = torch.rand(num, 2, generator=gen) * torch.tensor([width, height]) * 0.6
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[0] = torch.tensor([3.0, 3.0, 3.0, 3.0])
    boxes[1] = torch.tensor([5.0, 6.0, 5.5, 6.2])
    boxes[2] = torch.tensor([-20.0, -20.0, width + 20, height + 20])
    boxes[3] = torch.tensor([8.0, 8.0, 4.0, 4.0])
    return boxes


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2])
def test_roi_align_matches_loop_reference(aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(sampling_ratio * 2 + int(aligned))
    features = torch.randn(2, 3, 11, 14, generator=gen)
    scale = 0.5
    boxes = _random_rois(12, 22.0, 28.0, gen)
    batch_index = torch.randint(0, 2, (12,), generator=gen)
    # A generous bound so that every ROI's adaptive count is within it (exact regime).
    got = roi_align(features, boxes, batch_index, (3, 4), scale, sampling_ratio, aligned,
                    max_adaptive_samples=12)
    want = roi_align_reference(features, boxes, batch_index, 3, 4, scale, sampling_ratio, aligned)
    assert got.shape == (12, 3, 3, 4)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    if sampling_ratio == 0 and aligned:
        assert got[3].abs().max() == 0  # inverted box: the adaptive count is zero, so no samples


def test_adaptive_sampling_beyond_bound_is_capped_not_broken():
    gen = torch.Generator().manual_seed(5)
    features = torch.randn(1, 2, 16, 16, generator=gen)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [2.0, 2.0, 6.0, 5.0]])
    index = torch.zeros(2, dtype=torch.int64)
    capped = roi_align(features, boxes, index, (2, 2), 1.0, 0, True, max_adaptive_samples=2)
    exact = roi_align_reference(features, boxes, index, 2, 2, 1.0, 0, True)
    # The small box needs <= 2 samples per axis: exact. The big one (8 per axis) gets 2, as
    # with sampling_ratio=2.
    torch.testing.assert_close(capped[1].double(), exact[1], rtol=1e-4, atol=1e-5)
    fixed = roi_align_reference(features, boxes[:1], index[:1], 2, 2, 1.0, 2, True)
    torch.testing.assert_close(capped[:1].double(), fixed, rtol=1e-4, atol=1e-5)


def test_roi_align_of_constant_map_inside_is_constant():
    features = torch.full((1, 1, 8, 8), 3.0)
    out = roi_align(features, torch.tensor([[4.0, 4.0, 12.0, 12.0]]), torch.zeros(1, dtype=torch.int64),
                    7, 0.5, 2, True)
    torch.testing.assert_close(out, torch.full((1, 1, 7, 7), 3.0))


def test_roi_align_rejects_bad_shapes():
    with pytest.raises(InputError, match="boxes"):
        roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(3, 5), torch.zeros(3, dtype=torch.int64), 2, 1.0)
    with pytest.raises(InputError, match="batch_index"):
        roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(3, 4), torch.zeros(2, dtype=torch.int64), 2, 1.0)


def test_assign_boxes_to_levels_matches_fpn_formula():
    sides = [10.0, 111.0, 112.0, 224.0, 447.0, 448.0, 2000.0]
    boxes = torch.tensor([[0.0, 0.0, s, s] for s in sides])
    got = assign_boxes_to_levels(boxes, 2, 5).tolist()
    want = [min(max(math.floor(4 + math.log2(s / 224 + 1e-8)), 2), 5) - 2 for s in sides]
    assert got == want
    assert got == [0, 0, 1, 2, 2, 3, 3]


def test_multilevel_roi_align_uses_each_boxes_level():
    gen = torch.Generator().manual_seed(9)
    strides = [4, 8, 16, 32]
    height, width = 128, 192
    features = [torch.randn(2, 3, height // s, width // s, generator=gen) for s in strides]
    sides = torch.tensor([20.0, 60.0, 130.0, 250.0, 90.0, 180.0, 500.0, 8.0])
    x1 = torch.rand(8, generator=gen) * 100
    y1 = torch.rand(8, generator=gen) * 60
    boxes = torch.stack([x1, y1, x1 + sides, y1 + sides * 0.7], dim=1)
    batch_index = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    got = multilevel_roi_align(features, strides, boxes, batch_index, (5, 5), sampling_ratio=0,
                               max_adaptive_samples=16)
    levels = assign_boxes_to_levels(boxes, 2, 5)
    assert len(set(levels.tolist())) >= 3, "fixture must spread boxes over levels"
    for k in range(8):
        lv = int(levels[k])
        want = roi_align_reference(features[lv], boxes[k:k + 1], batch_index[k:k + 1], 5, 5,
                                   1.0 / strides[lv], 0, True)
        torch.testing.assert_close(got[k:k + 1].double(), want, rtol=1e-4, atol=1e-5)


def test_slots_make_elongated_and_coarsest_level_rois_exact_with_the_default_bound():
    """Default max_adaptive_samples (4): an ROI needing 8 x 2 samples fits the 16 slots, and on the
    coarsest level every box clipped to the canvas is exact (the slots cover its whole map), as
    detectron2's adaptive sampling_ratio=0 pools the large boxes it sends there."""
    gen = torch.Generator().manual_seed(3)
    strides = [4, 8, 16, 32]
    height, width = 256, 1344  # P5 is 8 x 42: a whole-canvas box needs ceil(42 / 7) = 6 samples on x
    features = [torch.randn(1, 2, height // s, width // s, generator=gen) for s in strides]
    boxes = torch.tensor([[0.0, 0.0, 1344.0, 256.0],  # P5, 6 x 2 samples
                          [100.0, 10.0, 1200.0, 210.0],  # P5, 5 x 1
                          [10.0, 40.0, 230.0, 52.0]])  # P2, elongated: 8 x 1 (55 x 3 feature px)
    index = torch.zeros(3, dtype=torch.int64)
    got = multilevel_roi_align(features, strides, boxes, index, (7, 7), sampling_ratio=0)
    levels = assign_boxes_to_levels(boxes, 2, 5).tolist()
    assert levels == [3, 3, 0]
    for k, lv in enumerate(levels):
        want = roi_align_reference(features[lv], boxes[k:k + 1], index[k:k + 1], 7, 7, 1.0 / strides[lv], 0, True)
        torch.testing.assert_close(got[k:k + 1].double(), want, rtol=1e-4, atol=1e-5)


def test_second_pass_makes_the_rois_needing_most_samples_exact():
    """Among 32 ROIs the 2 needing the most samples (1/16) get up to 8 x 8: a 66 x 147 px box on P2
    (3 x 6 samples, beyond the 16 slots of the first pass) pools exactly, as detectron2's."""
    gen = torch.Generator().manual_seed(4)
    strides = [4, 8, 16, 32]
    features = [torch.randn(1, 2, 256 // s, 512 // s, generator=gen) for s in strides]
    small = torch.tensor([[10.0, 10.0, 40.0, 30.0]]).repeat(30, 1) + torch.rand(30, 1, generator=gen) * 50
    boxes = torch.cat([torch.tensor([[0.0, 64.8, 66.2, 212.0], [100.0, 20.0, 300.0, 60.0]]), small])
    index = torch.zeros(32, dtype=torch.int64)
    assert assign_boxes_to_levels(boxes[:2], 2, 5).tolist() == [0, 0]
    got = multilevel_roi_align(features, strides, boxes, index, (7, 7), sampling_ratio=0)
    for k in (0, 1, 2):
        want = roi_align_reference(features[0], boxes[k:k + 1], index[k:k + 1], 7, 7, 0.25, 0, True)
        torch.testing.assert_close(got[k:k + 1].double(), want, rtol=1e-4, atol=1e-5)


def test_multilevel_rejects_bad_strides():
    feats = [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 2, 2)]
    with pytest.raises(InputError, match="strides"):
        multilevel_roi_align(feats, [4, 16], torch.zeros(1, 4), torch.zeros(1, dtype=torch.int64), 2)


def test_roi_align_gradients_flow_to_features():
    features = torch.randn(1, 2, 8, 8, requires_grad=True)
    box = torch.tensor([[1.0, 1.0, 6.0, 6.0]])
    out = roi_align(features, box, torch.zeros(1, dtype=torch.int64), 2, 1.0, 2)
    out.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_multilevel_roi_align_export_equals_eager():
    class Pool(torch.nn.Module):
        def forward(self, p2, p3, p4, p5, boxes, batch_index):
            return multilevel_roi_align([p2, p3, p4, p5], [4, 8, 16, 32], boxes, batch_index, (7, 7), 0)

    gen = torch.Generator().manual_seed(1)
    feats = tuple(torch.randn(1, 4, 64 // s, 96 // s, generator=gen) for s in (4, 8, 16, 32))
    boxes = _random_rois(10, 64.0, 96.0, gen)
    args = feats + (boxes, torch.zeros(10, dtype=torch.int64))
    program = torch.export.export(Pool(), args)
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any("grid_sampler" in op for op in ops)
    assert not any("nonzero" in op for op in ops)
    torch.testing.assert_close(program.module()(*args), Pool()(*args))
