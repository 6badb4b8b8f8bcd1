"""The Pipeline end to end on a small random-weight model (structure, not accuracy)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from panoptic_perception.errors import ConfigError, InputError, ModelFileError
from panoptic_perception.geometry.camera import Camera, Extrinsics, Intrinsics
from panoptic_perception.pipeline import Pipeline, PipelineConfig
from panoptic_perception.runtime.config import RuntimeConfig


@pytest.fixture(scope="module")
def pipeline(tiny_model):
    return Pipeline(PipelineConfig(model_path=str(tiny_model),
                                   runtime=RuntimeConfig(backend="torch", device="cpu", warmup_frames=0)))


def _frame(width=300, height=100, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _camera(width=300, height=100):
    return Camera(Intrinsics.kitti().scaled(width, height), Extrinsics(height_m=1.65))


def test_outputs_at_image_size_and_table_matches_map(pipeline):
    result = pipeline.process(_frame(), _camera())
    assert result.segment_map.shape == (100, 300) and result.segment_map.dtype == np.int32
    assert result.category_map.shape == (100, 300) and result.category_map.dtype == np.uint8
    ids, counts = np.unique(result.segment_map, return_counts=True)
    measured = {int(i): int(c) for i, c in zip(ids, counts) if i != 0}
    assert {s.id: s.area_px for s in result.segments} == measured
    for seg in result.segments:
        ys, xs = np.nonzero(result.segment_map == seg.id)
        assert seg.bbox_xywh == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert np.all(result.category_map[ys, xs] == seg.category_id)
        assert seg.category_name == pipeline.label_space.names[seg.category_id]
        assert seg.is_thing == pipeline.label_space.categories[seg.category_id].is_thing
    void = result.segment_map == 0
    assert np.all(result.category_map[void] == pipeline.label_space.ignore_id)


def test_grid_has_configured_geometry_and_timings(pipeline):
    result = pipeline.process(_frame(), _camera())
    geometry = pipeline.grid_config.grid.geometry()
    assert result.grid.occupancy.shape == (geometry.height, geometry.width)
    assert set(np.unique(result.grid.occupancy)) <= {-1, 0, 100}
    stages = {"preprocess_ms", "network_ms", "postprocess_ms", "projection_ms", "total_ms"}
    assert stages <= set(result.timings_ms)


def test_no_camera_means_no_grid(pipeline):
    assert pipeline.process(_frame()).grid is None


@pytest.mark.parametrize("image, fragment", [
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 10), np.uint8), "uint8 RGB"),
    (np.zeros((10, 10, 3), np.float32), "uint8 RGB"),
])
def test_bad_images_are_named(pipeline, image, fragment):
    with pytest.raises(InputError, match=fragment):
        pipeline.process(image)


def test_camera_image_size_mismatch_is_named(pipeline):
    with pytest.raises(InputError, match="camera is 320x100 but the image is 300x100"):
        pipeline.process(_frame(), _camera(320, 100))


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(ModelFileError, match="nothing.pt"):
        Pipeline(PipelineConfig(model_path=str(tmp_path / "nothing.pt")))


def test_fusion_overrides_reach_the_compiled_model(tiny_model):
    config = PipelineConfig(model_path=str(tiny_model), fusion_overrides={"instance_score_threshold": 0.9},
                            runtime=RuntimeConfig(backend="torch", device="cpu", warmup_frames=0))
    assert Pipeline(config).model_config.fusion.instance_score_threshold == 0.9
    with pytest.raises(ConfigError, match="no_such_field"):
        Pipeline(dataclasses.replace(config, fusion_overrides={"no_such_field": 1}))


def test_fusion_mode_override_adds_or_drops_the_conv_head_weights(tiny_model):
    import pytest

    from panoptic_perception.errors import ConfigError
    from panoptic_perception.pipeline import Pipeline, PipelineConfig

    jsis = Pipeline(PipelineConfig(model_path=str(tiny_model), project_grid=False, fusion_overrides={"mode": "jsis"}))
    assert jsis.model_config.fusion.mode == "jsis"
    with pytest.raises(ConfigError, match="no trained panoptic head"):
        Pipeline(PipelineConfig(model_path=str(tiny_model), project_grid=False,
                                fusion_overrides={"mode": "conv_head"}))


def test_grid_to_numpy_returns_a_new_result_and_keeps_the_tensors():
    import torch

    from panoptic_perception.geometry.grid import GridGeometry
    from panoptic_perception.geometry.projection import GridResult

    tensors = GridResult(torch.zeros(2, 3, dtype=torch.int8), torch.full((2, 3), 255, dtype=torch.uint8),
                         torch.ones(2, 3), GridGeometry(0.2, 0.0, -0.3, 3, 2))
    host = tensors.to_numpy()
    assert host is not tensors and isinstance(tensors.occupancy, torch.Tensor)
    assert isinstance(host.occupancy, np.ndarray) and host.class_grid.dtype == np.uint8
    assert host.geometry == tensors.geometry and host.log_odds.sum() == 6
