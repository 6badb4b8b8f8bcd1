"""resize: fit_pad - detectron2's test-time input (one scale, bottom/right padding) and the crop back."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from panoptic_perception.geometry.camera import Camera, Extrinsics, Intrinsics
from panoptic_perception.model.checkpoint import save_checkpoint
from panoptic_perception.model.config import ModelConfig, load_model_config
from panoptic_perception.model.panoptic_fpn import build_model
from panoptic_perception.paths import CONFIG_DIR
from panoptic_perception.pipeline import Pipeline, PipelineConfig, fit_pad_size
from panoptic_perception.runtime.config import RuntimeConfig

D2_MEAN_BGR = (103.530, 116.280, 123.675)
RUNTIME = RuntimeConfig(backend="torch", device="cpu", warmup_frames=0)


@pytest.fixture(scope="module")
def fit_pad_pipeline(tmp_path_factory):
    """Light network at 256x128 with detectron2's input conventions (BGR, mean, std 1) and fit_pad."""
    config = dataclasses.replace(load_model_config(CONFIG_DIR / "model_light.yaml"), input_width=256,
                                 input_height=128, input_format="BGR", pixel_mean=D2_MEAN_BGR,
                                 pixel_std=(1.0, 1.0, 1.0), resize="fit_pad")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fit_pad") / "fit_pad.pt"
    save_checkpoint(path, build_model(config).state_dict(), config, {"note": "random weights, tests only"})
    return Pipeline(PipelineConfig(model_path=str(path), runtime=RUNTIME))


@pytest.fixture(scope="module")
def stretch_pipeline(tiny_model):
    return Pipeline(PipelineConfig(model_path=str(tiny_model), runtime=RUNTIME))


def _frame(width, height, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_fit_pad_size_follows_detectron2_resize_shortest_edge():
    # KITTI 1242x375: shortest edge 800 would make it 2650 wide; max 1333 -> 1333x402 (detectron2's size)
    assert fit_pad_size(375, 1242, 448, 1344, 800, 1333) == (402, 1333)
    # Cityscapes 2048x1024 -> detectron2's 1333x667 does not fit a 1344x448 input: capped to fit
    assert fit_pad_size(1024, 2048, 448, 1344, 800, 1333) == (448, 896)
    # without a shortest-edge rule the image is scaled (up or down) to fit
    assert fit_pad_size(375, 1242, 192, 640) == (192, 636)
    assert fit_pad_size(50, 100, 128, 256) == (128, 256)


def test_default_resize_is_stretch():
    assert ModelConfig().resize == "stretch"
    assert load_model_config(CONFIG_DIR / "model_light.yaml").resize == "stretch"
    assert load_model_config(CONFIG_DIR / "model_detectron2_r50.yaml").resize == "fit_pad"


def test_stretch_preprocess_unchanged(stretch_pipeline):
    rgb = _frame(300, 100)
    x = stretch_pipeline.preprocess(rgb)
    src = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    expected = torch.nn.functional.interpolate(src, size=(128, 256), mode="bilinear", align_corners=False,
                                               antialias=True)
    assert torch.equal(x, expected)
    assert stretch_pipeline.valid_size(100, 300) == (128, 256)
    outputs = {"segment_map": torch.zeros(128, 256, dtype=torch.int32)}
    assert stretch_pipeline.crop_outputs(outputs, 100, 300) is outputs


def test_fit_pad_preprocess_scales_once_and_pads_with_the_mean(fit_pad_pipeline):
    rgb = _frame(300, 100)  # 3:1 into 2:1 -> 256 wide, 85 high
    x = fit_pad_pipeline.preprocess(rgb)
    assert x.shape == (1, 3, 128, 256)
    valid_h, valid_w = fit_pad_pipeline.valid_size(100, 300)
    assert (valid_h, valid_w) == (85, 256)
    # detectron2's ResizeTransform on uint8: PIL's bilinear resize
    resized = np.asarray(Image.fromarray(rgb).resize((256, 85), Image.BILINEAR))
    assert torch.equal(x[:, :, :85, :], torch.from_numpy(resized).permute(2, 0, 1)[None].float())
    mean_rgb = torch.tensor(D2_MEAN_BGR[::-1]).reshape(1, 3, 1, 1)
    assert torch.equal(x[:, :, 85:, :], mean_rgb.expand(1, 3, 43, 256))
    # after the in-graph normalisation the padding is exactly 0, as detectron2 pads
    normalised = build_model(fit_pad_pipeline.model_config).preprocess(x)
    assert torch.count_nonzero(normalised[:, :, 85:, :]) == 0


def test_crop_hides_the_padding_from_postprocess(fit_pad_pipeline):
    # A segment that lives only in the padding must not reach the image-size map or the table.
    seg = torch.ones(128, 256, dtype=torch.int32)
    seg[85:] = 2
    outputs = {
        "segment_map": seg, "category_map": torch.where(seg == 1, 0, 13).to(torch.int32),
        "segment_category": torch.tensor([0, 13]), "segment_score": torch.tensor([0.9, 0.8]),
        "segment_valid": torch.tensor([True, True]), "sem_logits": torch.zeros(1, 19, 128, 256),
        "scores": torch.zeros(40),
    }
    cropped = fit_pad_pipeline.crop_outputs(outputs, 100, 300)
    assert cropped["segment_map"].shape == (85, 256) and cropped["sem_logits"].shape == (1, 19, 85, 256)
    assert cropped["scores"] is outputs["scores"]
    segment_map, category_map, segments = fit_pad_pipeline.postprocess(cropped, 100, 300)
    assert segment_map.shape == (100, 300) and np.all(segment_map == 1) and np.all(category_map == 0)
    assert [(s.id, s.area_px, s.bbox_xywh) for s in segments] == [(1, 30000, (0, 0, 300, 100))]


def test_fit_pad_process_end_to_end(fit_pad_pipeline):
    camera = Camera(Intrinsics.kitti().scaled(300, 100), Extrinsics(height_m=1.65))
    result = fit_pad_pipeline.process(_frame(300, 100), camera)
    assert result.segment_map.shape == (100, 300) and result.category_map.shape == (100, 300)
    ids, counts = np.unique(result.segment_map, return_counts=True)
    assert {s.id: s.area_px for s in result.segments} == {int(i): int(c) for i, c in zip(ids, counts) if i}
    geometry = fit_pad_pipeline.grid_config.grid.geometry()
    assert result.grid.occupancy.shape == (geometry.height, geometry.width)
