"""Anchors, IoU matching and balanced sampling (detectron2 semantics)."""
from __future__ import annotations

import math

import pytest
import torch

from panoptic_perception.errors import ConfigError
from panoptic_perception.model.anchors import AnchorGenerator, cell_anchors, grid_anchors
from panoptic_perception.model.matcher import BACKGROUND, FOREGROUND, IGNORE, Matcher, subsample_labels


def test_cell_anchors_have_requested_area_and_ratio():
    ratios = (0.5, 1.0, 2.0)
    cells = cell_anchors(32, ratios)
    widths = cells[:, 2] - cells[:, 0]
    heights = cells[:, 3] - cells[:, 1]
    assert torch.allclose(widths * heights, torch.full((3,), 32.0 ** 2))
    assert torch.allclose(heights / widths, torch.tensor(ratios))
    # centred on the origin
    assert torch.allclose(cells[:, :2] + cells[:, 2:], torch.zeros(3, 2), atol=1e-5)


def test_grid_anchor_order_is_y_x_anchor():
    cells = cell_anchors(8, (0.5, 1.0, 2.0))
    anchors = grid_anchors(cells, (2, 3), stride_px=4)
    assert anchors.shape == (2 * 3 * 3, 4)
    # row (y * W + x) * A + a is cell (y, x) shifted by (x, y) * stride
    y, x, a = 1, 2, 1
    row = anchors[(y * 3 + x) * 3 + a]
    centre = (row[:2] + row[2:]) / 2
    assert torch.allclose(centre, torch.tensor([x * 4.0, y * 4.0]))
    assert torch.allclose(row - torch.tensor([x * 4.0, y * 4.0, x * 4.0, y * 4.0]), cells[a])


def test_generator_levels_and_sizes():
    gen = AnchorGenerator((16, 32), (1.0,), (4, 8))
    out = gen([(4, 5), (2, 3)])
    assert [o.shape[0] for o in out] == [20, 6]
    sizes = [float(o[0, 2] - o[0, 0]) for o in out]
    assert sizes == pytest.approx([16.0, 32.0])
    assert "cells_0" not in gen.state_dict()  # derived from config, not a checkpoint


def test_generator_rejects_mismatched_config():
    with pytest.raises(ConfigError, match="anchor_sizes"):
        AnchorGenerator((16, 32, 64), (1.0,), (4, 8))
    with pytest.raises(ConfigError, match="positive"):
        cell_anchors(-1, (1.0,))


def test_matcher_thresholds_and_low_quality():
    matcher = Matcher((0.3, 0.7), (BACKGROUND, IGNORE, FOREGROUND), allow_low_quality_matches=True)
    iou = torch.tensor([[0.9, 0.5, 0.1, 0.0],
                        [0.2, 0.6, 0.25, 0.0]])
    matched, labels = matcher(iou)
    assert matched.tolist() == [0, 1, 1, 0]
    # col 1: 0.6 is between thresholds but is gt 1's best match -> foreground by low-quality rule
    assert labels.tolist() == [FOREGROUND, FOREGROUND, BACKGROUND, BACKGROUND]
    strict = Matcher((0.3, 0.7), (BACKGROUND, IGNORE, FOREGROUND))
    assert strict(iou)[1].tolist() == [FOREGROUND, IGNORE, BACKGROUND, BACKGROUND]


def test_matcher_without_ground_truth_is_background():
    matched, labels = Matcher((0.5,), (0, 1))(torch.zeros(0, 6))
    assert labels.tolist() == [BACKGROUND] * 6 and matched.shape == (6,)


def test_matcher_rejects_bad_config():
    with pytest.raises(ConfigError):
        Matcher((0.7, 0.3), (0, -1, 1))
    with pytest.raises(ConfigError):
        Matcher((0.5,), (0, 1, 1))


def test_subsample_balances_and_caps():
    labels = torch.tensor([1] * 50 + [0] * 500 + [-1] * 10)
    gen = torch.Generator().manual_seed(0)
    pos, neg = subsample_labels(labels, 64, 0.25, generator=gen)
    assert pos.numel() == 16 and neg.numel() == 48
    assert bool((labels[pos] == 1).all()) and bool((labels[neg] == 0).all())
    assert len(set(pos.tolist())) == 16
    # few positives: negatives fill the batch
    pos, neg = subsample_labels(torch.tensor([1] * 3 + [0] * 100), 20, 0.5, generator=gen)
    assert pos.numel() == 3 and neg.numel() == 17


def test_cell_anchor_area_for_every_size():
    for size in (16, 64, 512):
        c = cell_anchors(size, (0.5,))
        assert math.isclose(float((c[0, 2] - c[0, 0]) * (c[0, 3] - c[0, 1])), size ** 2, rel_tol=1e-5)
