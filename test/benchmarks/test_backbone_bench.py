"""`bench backbone`: the FLOP count agrees with a per-conv hand count; the suite returns its table."""
from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from panoptic_perception.benchmarks import backbone as bench
from panoptic_perception.model.backbone import build_backbone
from panoptic_perception.model.config import BackboneConfig


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_flop_count_equals_sum_of_conv_multiply_adds(name):
    model = build_backbone(BackboneConfig(name=name)).eval()
    macs = []

    def hook(conv: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        kh, kw = conv.kernel_size
        macs.append(output.numel() * (conv.in_channels // conv.groups) * kh * kw)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    image = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        model(image)
    for h in handles:
        h.remove()
    assert bench._count_flops(model, image) == 2 * sum(macs)


def test_round_up_64():
    assert bench.round_up_64((1242, 375)) == (1280, 384)
    assert bench.round_up_64((640, 192)) == (640, 192)


@pytest.mark.slow
def test_suite_returns_rows_for_each_backbone_and_size():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--backbones", "resnet18", "--sizes", "100x60,192x64",
                              "--repeats", "1", "--warmup", "0", "--train-repeats", "1",
                              "--fpn-channels", "32"])
    result = bench.run(args)
    rows = result["rows"]
    assert [(r["backbone"], r["input"]) for r in rows] == [("resnet18", "128x64"), ("resnet18", "192x64")]
    # Same network, 1.5x the pixels: the conv FLOPs scale with the area.
    assert rows[1]["GFLOPs"] == pytest.approx(1.5 * rows[0]["GFLOPs"], rel=1e-6)
    for row in rows:
        assert row["GFLOPs"] > row["bottom_up_GFLOPs"] > 0
        assert row["params_M"] > row["bottom_up_params_M"] > 0
        for key in ("nchw_median_ms", "nhwc_median_ms", "train_step_ms"):
            assert row[key] > 0
    assert "GFLOPs" in result["notes"] and result["title"]
