"""ros/params.py: node parameters validated at start-up, errors naming the parameter."""
from __future__ import annotations

import dataclasses

import pytest

from panoptic_perception.errors import ConfigError
from panoptic_perception.geometry.camera import Extrinsics
from panoptic_perception.geometry.projection import GridOverrideError, grid_config_with_overrides
from panoptic_perception.labels import load_label_space
from panoptic_perception.model.config import FusionConfig
from panoptic_perception.paths import CONFIG_DIR
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
        "grid": {"resolution_m": 0.1, "x_max_m": 40, "y_min_m": -15.0},
        "fusion": {"mode": "jsis", "overlap_threshold": 0.4},
        "approximate_sync": True, "sync_slop_s": 0.02, "compressed": True,
        "obstacle_classes": ["building", "pole"],
    })
    assert params.backend == "onnxruntime" and params.precision == "fp16"
    assert (params.input_width, params.input_height) == (1280, 384)
    assert params.extrinsics.pitch_deg == 2.0 and isinstance(params.extrinsics.pitch_deg, float)
    assert params.grid.x_max_m == 40.0 and isinstance(params.grid.x_max_m, float)
    assert params.obstacle_classes == ["building", "pole"]
    ext = params.extrinsics.to_extrinsics()
    assert isinstance(ext, Extrinsics) and (ext.height_m, ext.x_m, ext.pitch_deg) == (1.5, 1.2, 2.0)


def test_fusion_overrides_only_what_is_set():
    params = load_node_params({"fusion": {"mode": "jsis", "overlap_threshold": 0.4}})
    assert params.fusion.overrides() == {"mode": "jsis", "overlap_threshold": 0.4}
    model_fusion = FusionConfig(instance_score_threshold=0.7, stuff_area_px=1000)
    applied = dataclasses.replace(model_fusion, **params.fusion.overrides())
    assert (applied.mode, applied.overlap_threshold) == ("jsis", 0.4)
    assert (applied.instance_score_threshold, applied.stuff_area_px) == (0.7, 1000)  # model's kept
    assert dataclasses.replace(model_fusion, **load_node_params({}).fusion.overrides()) == model_fusion


@pytest.mark.parametrize("params, needle", [
    ({"grid": {"resolution_m": -0.1}}, "~grid/resolution_m must be > 0"),
    ({"grid": {"resolution_m": "fine"}}, "~grid/resolution_m: expected a number"),
    ({"grid": {"x_min_m": 10, "x_max_m": 5}}, "~grid/x_max_m must be > x_min_m"),
    ({"num_threads": 1.5}, "~num_threads: expected an integer"),
    ({"input_width": 100}, "~input_width must be 0"),
    ({"backend": "trt"}, "~backend: 'trt' is not one of"),
    ({"precision": "fp8"}, "~precision"),
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
    ({"obstacle_classes": ["wall"], "free_classes": ["road", "wall"]}, "~obstacle_classes has classes also"),
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
    data["grid"] = {"x_max_m": 10}
    assert load_node_params(data).grid.x_max_m == 10.0


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
    assert "| double or null | m | null |" in row
    row = next(line for line in lines if line.startswith("| `~tf_timeout_s`"))
    assert "| double | s | `0.05` |" in row
    row = next(line for line in lines if line.startswith("| `~extrinsics/pitch_deg`"))
    assert "| deg |" in row and "looks down" in row
    row = next(line for line in lines if line.startswith("| `~backend`"))
    assert "or null" in row
    assert "`tensorrt`" in row and "`onnxruntime`" in row
    assert all(doc for *_, doc in leaves), "every parameter needs a meaning for the README"
    # Every table default is what an empty namespace loads.
    defaults = load_node_params({})
    assert f"`{defaults.queue_size}`" in next(line for line in lines if "`~queue_size`" in line)


def test_runtime_config_follows_the_parameters(tmp_path):
    from panoptic_perception.ros.node import pipeline_config_from_params
    from panoptic_perception.runtime.config import RuntimeConfig

    params = load_node_params({"backend": "torch", "device": "cpu", "precision": "fp32", "num_threads": 2,
                               "engine_path": "/tmp/e.ep"})
    runtime = params.runtime_config_with_overrides(RuntimeConfig())
    assert isinstance(runtime, RuntimeConfig)
    assert (runtime.backend, runtime.device, runtime.precision) == ("torch", "cpu", "fp32")
    assert runtime.num_threads == 2
    assert runtime.engine_path == "/tmp/e.ep"
    default = pipeline_config_from_params(load_node_params({})).runtime
    assert default.engine_path is None and default.num_threads == 0
    custom = tmp_path / "runtime.yaml"
    custom.write_text("backend: onnxruntime\nprecision: fp32\n")
    params = load_node_params({"runtime_config": str(custom), "device": "cpu"})
    from_file = pipeline_config_from_params(params).runtime
    assert (from_file.backend, from_file.precision, from_file.device) == ("onnxruntime", "fp32", "cpu")


def test_grid_overrides_follow_the_parameters():
    from panoptic_perception.geometry.grid import load_grid_config
    from panoptic_perception.ros.node import pipeline_config_from_params

    shipped = load_grid_config()
    cityscapes = load_label_space("cityscapes")

    def grid_of(private_params: dict, path: str = str(CONFIG_DIR / "grid.yaml")):
        config = pipeline_config_from_params(load_node_params(private_params))
        return grid_config_with_overrides(config.grid_config_path if private_params.get("grid_config") else path,
                                          config.grid_overrides, cityscapes)

    assert load_node_params({}).grid_overrides() == {}
    assert grid_of({}) == shipped
    grid = grid_of({"grid": {"resolution_m": 0.5, "x_max_m": 30.0}, "free_classes": ["road"]})
    geometry = grid.grid.geometry()
    assert (geometry.resolution_m, geometry.width) == (0.5, 60)
    assert grid.grid.y_min_m == shipped.grid.y_min_m  # not overridden: the file's
    assert grid.free_classes == ("road",) and grid.obstacle_classes == shipped.obstacle_classes
    # An override that contradicts the file names the key it came from.
    with pytest.raises(GridOverrideError, match="grid_overrides grid") as raised:
        grid_of({"grid": {"x_max_m": -5.0}})
    assert raised.value.key == "grid"


def test_pipeline_yaml_grid_overrides_reach_the_node_and_unknown_keys_are_refused(tmp_path):
    from panoptic_perception.ros.node import pipeline_config_from_params

    pipeline_yaml = tmp_path / "pipeline.yaml"
    pipeline_yaml.write_text("grid_overrides: {grid: {resolution_m: 0.4}, obstacle_classes: [wall]}\n")
    config = pipeline_config_from_params(load_node_params({"pipeline_config": str(pipeline_yaml),
                                                           "free_classes": ["road"]}))
    # the file's overrides and the node's parameters both apply
    assert config.grid_overrides == {"grid": {"resolution_m": 0.4}, "obstacle_classes": ["wall"],
                                     "free_classes": ["road"]}
    grid = grid_config_with_overrides(str(CONFIG_DIR / "grid.yaml"), config.grid_overrides,
                                      load_label_space("cityscapes"))
    assert (grid.grid.resolution_m, grid.obstacle_classes, grid.free_classes) == (0.4, ("wall",), ("road",))
    with pytest.raises(ConfigError, match="unknown keys free_clases"):
        grid_config_with_overrides(str(CONFIG_DIR / "grid.yaml"), {"free_clases": ["road"]},
                                   load_label_space("cityscapes"))


def test_readme_parameter_table_is_the_generated_one():
    from panoptic_perception.paths import SHARE_ROOT
    from panoptic_perception.ros.params import params_markdown_table

    readme = (SHARE_ROOT / "README.md").read_text()
    assert params_markdown_table().strip() in readme, "regenerate the README table with params_markdown_table()"


def test_a_value_changed_in_pipeline_yaml_reaches_the_node(tmp_path):
    """The node reads its settings through the same loader as every other entry point."""
    import yaml

    from panoptic_perception.pipeline import load_pipeline_config
    from panoptic_perception.ros.node import pipeline_config_from_params

    runtime = tmp_path / "runtime.yaml"
    runtime.write_text(yaml.safe_dump({"backend": "onnxruntime", "num_threads": 1, "warmup_frames": 0}))
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"runtime_config": str(runtime), "project_grid": False,
                                        "fusion_overrides": {"instance_score_threshold": 0.8}}))
    node = pipeline_config_from_params(load_node_params({"pipeline_config": str(pipeline)}))
    cli = load_pipeline_config(pipeline)
    assert node == cli  # no parameters set: exactly what predict / eval / bench get
    assert (node.runtime.backend, node.runtime.num_threads, node.project_grid) == ("onnxruntime", 1, False)
    assert node.fusion_overrides == {"instance_score_threshold": 0.8}
    # ROS parameters override the file, field by field
    node = pipeline_config_from_params(load_node_params({"pipeline_config": str(pipeline), "backend": "torch",
                                                         "fusion": {"mode": "jsis"}}))
    assert (node.runtime.backend, node.runtime.num_threads) == ("torch", 1)
    assert node.fusion_overrides == {"instance_score_threshold": 0.8, "mode": "jsis"}
    # the shipped file names the runtime file instead of repeating it
    assert load_pipeline_config().runtime == load_pipeline_config(runtime_config="config/runtime.yaml").runtime


def test_pipeline_yaml_with_an_inline_runtime_block_is_refused(tmp_path):
    from panoptic_perception.errors import ConfigError
    from panoptic_perception.pipeline import load_pipeline_config

    path = tmp_path / "pipeline.yaml"
    path.write_text("runtime: {backend: torch}\n")
    with pytest.raises(ConfigError, match="runtime_config"):
        load_pipeline_config(path)
