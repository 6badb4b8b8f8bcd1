"""Op coverage: the exported graph uses only ATen ops torch-tensorrt converts (checked without TensorRT)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from standin import standin_frame, standin_model
from torch import nn

from panoptic_perception.model.config import load_model_config
from panoptic_perception.paths import CONFIG_DIR
from panoptic_perception.runtime import trt_supported_ops
from panoptic_perception.runtime.op_coverage import (
    coverage_report,
    export_for_tensorrt,
    find_unsupported,
    graph_ops,
)


class UsesCumprod(nn.Module):
    """cumprod has no torch-tensorrt converter; the constant branch is folded by torch-tensorrt."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.register_buffer("table", torch.arange(1.0, 5.0))

    def forward(self, x):
        y = self.conv(x)
        constant = torch.cumprod(self.table, 0)  # depends on weights only: constant-folded
        return torch.cumprod(y, dim=1) + constant.view(1, 4, 1, 1)


class BigTopk(nn.Module):
    def forward(self, x):
        return torch.topk(x.flatten(), k=4000).values


def test_supported_list_names_its_source():
    assert trt_supported_ops.SOURCE["commit"] and "aten_ops_converters.py" in trt_supported_ops.SOURCE["file"]
    for op in ("aten.convolution.default", "aten.grid_sampler_2d.default", "aten.topk.default",
               "aten.native_group_norm.default", "aten.gather.default"):
        assert op in trt_supported_ops.SUPPORTED_OPS
    assert "aten.cumprod.default" not in trt_supported_ops.SUPPORTED_OPS


def test_unsupported_op_is_named_with_its_location():
    problems = find_unsupported(export_for_tensorrt(UsesCumprod(), torch.zeros(1, 3, 8, 8)))
    assert [p.op for p in problems] == ["aten.cumprod.default"], coverage_report(problems)
    assert len(problems[0].locations) == 1, "the weights-only cumprod must count as constant-folded"
    assert "test_op_coverage.py" in problems[0].locations[0]
    assert "aten.cumprod.default" in coverage_report(problems)


def test_converter_conditions_are_checked():
    problems = find_unsupported(export_for_tensorrt(BigTopk(), torch.zeros(1, 3, 64, 64)))
    flagged = [p for p in problems if p.op == "aten.topk.default" and "3840" in p.reason]
    assert flagged, coverage_report(problems)


def test_standin_converts_whole():
    program = export_for_tensorrt(standin_model(), standin_frame())
    assert "aten.convolution.default" in graph_ops(program)
    assert find_unsupported(program) == [], coverage_report(find_unsupported(program))


@pytest.mark.slow
def test_real_model_uses_only_converted_ops():
    model_mod = pytest.importorskip("panoptic_perception.model.panoptic_fpn",
                                    reason="model.panoptic_fpn not available")
    config = dataclasses.replace(load_model_config(CONFIG_DIR / "model_resnet18.yaml"),
                                 input_width=256, input_height=128)
    torch.manual_seed(0)
    model = model_mod.build_model(config).eval()
    # with the image_size input as the TensorRT backend builds it (boxes clipped to a runtime size)
    program = export_for_tensorrt(model, torch.rand(1, 3, 128, 256) * 255, torch.tensor([100.0, 250.0]))
    ops = graph_ops(program)
    assert "aten.convolution.default" in ops and "aten.topk.default" in ops, "not the full graph"
    problems = find_unsupported(program)
    assert not problems, "the model would not compile to one TensorRT engine; " + coverage_report(problems)


@pytest.mark.slow
def test_export_check_ops_command_passes_the_model_and_names_a_bad_op(tiny_model, tmp_path):
    import subprocess
    import sys

    from panoptic_perception.model.checkpoint import load_checkpoint, save_checkpoint

    done = subprocess.run([sys.executable, "-m", "panoptic_perception", "export", "--backend", "tensorrt",
                           "--model", str(tiny_model), "--check-ops"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all ops have torch-tensorrt converters" in done.stdout
    # The same model with an op no converter exists for (a top-k above TensorRT's limit) fails it.
    state, config, meta = load_checkpoint(tiny_model)
    config = dataclasses.replace(config, rpn=dataclasses.replace(config.rpn, pre_nms_topk_test=5000))
    bad = save_checkpoint(tmp_path / "bad.pt", state, config, meta)
    done = subprocess.run([sys.executable, "-m", "panoptic_perception", "export", "--backend", "tensorrt",
                           "--model", str(bad), "--check-ops"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "topk" in done.stdout, done.stdout + done.stderr
