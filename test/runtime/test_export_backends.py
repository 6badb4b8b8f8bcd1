"""Equivalence of the real Panoptic FPN across backends on a synthetic street frame (CPU), and TensorRT
on a GPU when there is one.

Eager PyTorch, the torch.export program and ONNX Runtime must give the same segment-id map (identical,
or differing on at most MAX_SEGMENT_MISMATCH of the pixels: float reassociation can flip a mask
threshold or an argmax tie at mask edges) and close semantic logits. Weights are a seeded random
init: the graph, not the training, is under test, and random weights exercise every branch
(detections, masks, stuff, fusion).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from panoptic_perception.model.config import load_model_config
from panoptic_perception.paths import CONFIG_DIR
from panoptic_perception.runtime import RuntimeConfig, create_backend_for_module

WIDTH, HEIGHT = 256, 128
MAX_SEGMENT_MISMATCH = 1e-3  # fraction of pixels
LOGIT_ATOL = 1e-3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup():
    model_mod = pytest.importorskip("panoptic_perception.model.panoptic_fpn",
                                    reason="model.panoptic_fpn not available")
    synth = pytest.importorskip("panoptic_perception.data.synth", reason="data.synth not available")
    config = load_model_config(CONFIG_DIR / "model_resnet18.yaml")
    config = dataclasses.replace(config, input_width=WIDTH, input_height=HEIGHT)
    torch.manual_seed(0)
    model = model_mod.build_model(config).eval()
    frame = synth.StreetWorld(synth.small_config(WIDTH, HEIGHT), seed=3).render(0)
    image = torch.from_numpy(np.ascontiguousarray(frame.rgb)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        eager = model(image)
        program = torch.export.export(model, (image,), strict=False)
    return config, model, image, eager, program


def _compare(name, out, ref):
    assert set(out) == set(ref), f"{name}: keys differ: {set(out) ^ set(ref)}"
    for key in ref:
        assert out[key].dtype == ref[key].dtype, f"{name}: {key} dtype {out[key].dtype} vs {ref[key].dtype}"
        assert out[key].shape == ref[key].shape, f"{name}: {key} shape"
    mismatch = (out["segment_map"] != ref["segment_map"]).float().mean().item()
    assert mismatch <= MAX_SEGMENT_MISMATCH, f"{name}: segment_map differs on {mismatch:.4%} of pixels"
    torch.testing.assert_close(out["sem_logits"], ref["sem_logits"], atol=LOGIT_ATOL, rtol=1e-3)
    assert torch.equal(out["category_map"] != 0, ref["category_map"] != 0) or mismatch > 0
    return mismatch


def test_frame_exercises_the_graph(setup):
    _config, _model, _image, eager, _program = setup
    assert int(eager["segment_valid"].sum()) >= 2, "a street frame should produce several segments"
    assert eager["segment_map"].dtype == torch.int32


def test_exported_program_matches_eager(setup):
    _config, _model, image, eager, program = setup
    with torch.no_grad():
        out = program.module()(image)
    assert _compare("torch.export", out, eager) == 0.0


def test_onnxruntime_matches_eager(setup, tmp_path, onnx_export_from):
    config, model, image, eager, program = setup
    used = onnx_export_from(program)
    runtime = RuntimeConfig(backend="onnxruntime", engine_cache_dir=str(tmp_path), warmup_frames=0)
    backend = create_backend_for_module(model, config, runtime, weights_digest="seed0")
    mismatch = _compare("onnxruntime", backend.infer(image), eager)
    print(f"onnxruntime via the {used['exporter']} exporter: segment_map mismatch {mismatch:.5%}")


def test_tensorrt_matches_eager(setup, tmp_path):
    from panoptic_perception.runtime.tensorrt_backend import tensorrt_status

    usable, why = tensorrt_status()
    if not usable:
        pytest.skip(f"TensorRT backend not testable here: {why}")
    config, model, image, eager, _program = setup
    runtime = RuntimeConfig(backend="tensorrt", precision="fp32", engine_cache_dir=str(tmp_path))
    backend = create_backend_for_module(model, config, runtime, weights_digest="seed0")
    out = {k: v.cpu() for k, v in backend.infer(image.cuda()).items()}
    _compare("tensorrt", out, eager)
    again = create_backend_for_module(model, config, runtime, weights_digest="seed0")
    assert "loaded from cache" in again.reason
