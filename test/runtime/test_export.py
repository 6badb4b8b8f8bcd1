"""torch.export captures the whole inference graph (network + fusion) and matches eager outputs."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from panoptic_perception.model.config import load_model_config
from panoptic_perception.model.panoptic_fpn import build_model
from panoptic_perception.paths import CONFIG_DIR

EXACT_KEYS = ("valid", "classes", "segment_map", "category_map", "segment_category", "segment_is_thing",
              "segment_area", "segment_valid")


def _export_and_compare(config, seed: int = 0) -> None:
    torch.manual_seed(seed)
    model = build_model(config).eval()
    shape = (1, 3, config.input_height, config.input_width)
    example = torch.rand(shape) * 255.0
    with torch.no_grad():
        program = torch.export.export(model, (example,))
        exported = program.module()
        for image in (example, torch.rand(shape) * 255.0):  # a second image: nothing was specialised
            eager_out = model(image)
            export_out = exported(image)
            assert set(export_out) == set(eager_out)
            for key, eager_value in eager_out.items():
                got = export_out[key]
                assert got.shape == eager_value.shape and got.dtype == eager_value.dtype, key
                if key in EXACT_KEYS:
                    assert torch.equal(got, eager_value), key
                else:
                    torch.testing.assert_close(got, eager_value, rtol=1e-4, atol=1e-4, msg=key)
            # random weights still detect: the comparison covers NMS, masks and fusion, not just padding
            assert bool(eager_out["valid"].any())
    # no data-dependent shapes: every output size is a constant of the graph
    for node in program.graph.nodes:
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor):
            assert all(isinstance(d, int) for d in value.shape), node


@pytest.mark.slow
def test_export_light_resnet18_matches_eager():
    config = load_model_config(CONFIG_DIR / "model_resnet18.yaml")
    assert (config.input_width, config.input_height) == (640, 192)
    _export_and_compare(config)


@pytest.mark.slow
def test_export_shipped_light_model_matches_eager():
    _export_and_compare(load_model_config(CONFIG_DIR / "model_light.yaml"))


@pytest.mark.slow
def test_export_resnet50_matches_eager():
    config = load_model_config(CONFIG_DIR / "model_resnet50.yaml")
    # The detectron2 R-50 layout at a small input, with fewer proposals/detections to keep CPU time low.
    config = dataclasses.replace(
        config, input_width=256, input_height=128,
        rpn=dataclasses.replace(config.rpn, post_nms_topk_test=200),
        roi_heads=dataclasses.replace(config.roi_heads, max_detections=20),
    )
    assert config.backbone.name == "resnet50"
    _export_and_compare(config)
