"""ros/params.py: node parameters validated at start-up, errors naming the parameter."""
from __future__ import annotations

import dataclasses

import pytest

from panoptic_perception.errors import ConfigError
from panoptic_perception.geometry.camera import Extrinsics
from panoptic_perception.model.config import FusionConfig
from panoptic_perception.ros.params import (
    PUBLISHED_PARAM_KEYS,
    NodeParams,
    iter_params,
    load_node_params,
    params_markdown_table,
)


def test_empty_namespace_gives_the_documented_defaults():
    params = load_node_params({})
    assert params == NodeParams()
    assert params.vehicle_frame == "base_link"
    assert params.queue_size == 1
    assert params.buff_size_bytes >= 2**24
    assert load_node_params(None) == NodeParams()


def test_nested_namespaces_as_rospy_returns_them():
    # rospy.get_param("~") returns sub-namespaces as nested dicts.
    params = load_node_params({
        "model_file": "/models/r18.pt", "backend": "onnxruntime", "precision": "fp16",
        "input_width": 1280, "input_height": 384, "vehicle_frame": "ego",
        "extrinsics": {"height_m": 1.5, "pitch_deg": 2, "x_m": 1.2},
        "grid": {"resolution_m": 0.1, "width": 400, "height": 300, "origin_y_m": -15},
        "fusion": {"mode": "jsis", "overlap_threshold": 0.4},
        "approximate_sync": True, "sync_slop_s": 0.02, "compressed": True,
        "occupied_classes": ["car", "person"],
    })
    assert params.backend == "onnxruntime" and params.precision == "fp16"
    assert (params.input_width, params.input_height) == (1280, 384)
    assert params.extrinsics.pitch_deg == 2.0 and isinstance(params.extrinsics.pitch_deg, float)
    assert params.grid.length_x_m == pytest.approx(40.0) and params.grid.length_y_m == pytest.approx(30.0)
    assert params.grid.origin_y_m == -15.0
    assert params.occupied_classes == ["car", "person"]
    ext = params.extrinsics.to_extrinsics()
    assert isinstance(ext, Extrinsics) and (ext.height_m, ext.x_m, ext.pitch_deg) == (1.5, 1.2, 2.0)


def test_fusion_overrides_only_what_is_set():
    params = load_node_params({"fusion": {"mode": "jsis", "overlap_threshold": 0.4}})
    assert params.fusion.overrides() == {"mode": "jsis", "overlap_threshold": 0.4}
    model_fusion = FusionConfig(instance_score_threshold=0.7, stuff_area_px=1000)
    applied = params.fusion.apply_to(model_fusion)
    assert (applied.mode, applied.overlap_threshold) == ("jsis", 0.4)
    assert (applied.instance_score_threshold, applied.stuff_area_px) == (0.7, 1000)  # model's kept
    assert load_node_params({}).fusion.apply_to(model_fusion) == model_fusion


@pytest.mark.parametrize("params, needle", [
    ({"grid": {"resolution_m": -0.1}}, "~grid/resolution_m must be > 0"),
    ({"grid": {"resolution_m": "fine"}}, "~grid/resolution_m: expected a number"),
    ({"grid": {"width": 0}}, "~grid/width must be"),
    ({"grid": {"width": 2.5}}, "~grid/width: expected an integer"),
    ({"input_width": 100}, "~input_width must be 0"),
    ({"backend": "trt"}, "~backend: 'trt' is not one of"),
    ({"precision": "int8"}, "~precision"),
    ({"extrinsics": {"pitch_deg": 95}}, "~extrinsics/pitch_deg must be within"),
    ({"extrinsics": {"height_m": 0}}, "~extrinsics/height_m must be > 0"),
    ({"fusion": {"mode": "nms"}}, "~fusion/mode"),
    ({"fusion": {"overlap_threshold": 1.5}}, "~fusion/overlap_threshold must be within"),
    ({"approximate_sync": "yes"}, "~approximate_sync: expected true or false"),
    ({"sync_slop_s": 0}, "~sync_slop_s must be"),
    ({"queue_size": 0}, "~queue_size must be"),
    ({"buff_size_bytes": 65536}, "~buff_size_bytes must be"),
    ({"vehicle_frame": "/base_link"}, "~vehicle_frame must be"),
    ({"vehicle_frame": ""}, "~vehicle_frame must be"),
    ({"overlay_alpha": 2}, "~overlay_alpha must be"),
    ({"occupied_classes": ["car"], "free_classes": ["road", "car"]}, "~occupied_classes has classes also"),
    ({"modelfile": "x.pt"}, "unknown key(s) modelfile"),
    ({"grid": {"resolution": 0.1}}, "~grid: unknown key(s) resolution"),
])
def test_bad_values_name_the_parameter(params, needle):
    with pytest.raises(ConfigError) as exc:
        load_node_params(params)
    assert needle in str(exc.value)
    assert str(exc.value).startswith("bad node parameter")


def test_keys_the_node_publishes_itself_are_not_settings():
    data = {key: ["anything"] for key in PUBLISHED_PARAM_KEYS}
    data["grid"] = {"width": 10}
    assert load_node_params(data).grid.width == 10


def test_markdown_table_lists_every_leaf_parameter_with_its_default():
    table = params_markdown_table()
    lines = table.strip().splitlines()
    assert lines[0].startswith("| parameter | type | unit | default | meaning |")
    leaves = list(iter_params())
    assert len(lines) == 2 + len(leaves)

    def count_leaves(cls):
        total = 0
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            total += count_leaves(type(default)) if dataclasses.is_dataclass(default) else 1
        return total

    assert len(leaves) == count_leaves(NodeParams)
    row = next(line for line in lines if line.startswith("| `~grid/resolution_m`"))
    assert "| double | m | `0.2` |" in row
    row = next(line for line in lines if line.startswith("| `~extrinsics/pitch_deg`"))
    assert "| deg |" in row and "looks down" in row
    row = next(line for line in lines if line.startswith("| `~backend`"))
    assert "`tensorrt`" in row and "`onnxruntime`" in row
    assert all(doc for *_, doc in leaves), "every parameter needs a meaning for the README"
    # Every table default is what an empty namespace loads.
    defaults = load_node_params({})
    assert f"`{defaults.grid.width}`" in next(line for line in lines if "`~grid/width`" in line)
