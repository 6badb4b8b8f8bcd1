"""Launch files and rviz config: they parse with their args, and what they put on the parameter
server is accepted by the node's parameter loader (roslaunch itself does the parsing)."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from repo_paths import REPO_ROOT

from panoptic_perception.errors import ConfigError
from panoptic_perception.ros.params import load_node_params

NODE = "/panoptic_perception"

pytestmark = pytest.mark.skipif(shutil.which("roslaunch") is None,
                                reason="roslaunch not installed (run `make setup`)")


def _roslaunch(*argv: str) -> str:
    done = subprocess.run(["roslaunch", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"roslaunch {' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _node_params(launch: str, *args: str) -> dict:
    dumped = yaml.safe_load(_roslaunch("--dump-params", "panoptic_perception", launch, *args)) or {}
    prefix = NODE + "/"
    flat = {k[len(prefix):]: v for k, v in dumped.items() if k.startswith(prefix)}
    nested: dict = {}
    for key, value in flat.items():  # what rospy.get_param("~") returns: sub-namespaces nested
        *parents, leaf = key.split("/")
        target = nested
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return {"all": dumped, "node": nested}


@pytest.mark.parametrize("launch, args, nodes", [
    ("camera.launch", (), {NODE}),
    ("camera.launch", ("rviz:=true",), {NODE, "/panoptic_rviz"}),
    ("kitti.launch", ("bag:=/tmp/drive.bag", "rviz:=false"), {NODE, "/kitti_player"}),
    ("kitti.launch", ("bag:=/tmp/drive.bag", "record:=/tmp/out.bag"),
     {NODE, "/kitti_player", "/panoptic_rviz", "/panoptic_recorder"}),
    ("demo.launch", ("rviz:=false",), {NODE, "/kitti_player"}),
])
def test_launch_files_list_their_nodes(launch, args, nodes):
    listed = set(_roslaunch("--nodes", "panoptic_perception", launch, *args).split())
    assert listed == nodes


def test_camera_launch_parameters_load_into_node_params():
    dumped = _node_params("camera.launch", "camera_pitch_deg:=0", "camera_height_m:=1.4",
                          "vehicle_frame:=ego", "backend:=onnxruntime", "approximate_sync:=true")
    params = load_node_params(dumped["node"])
    assert params.vehicle_frame == "ego" and params.backend == "onnxruntime"
    assert params.extrinsics.height_m == 1.4 and params.extrinsics.pitch_deg == 0.0
    assert params.approximate_sync is True
    # Empty runtime args leave the runtime YAML in charge (not set on the server at all).
    defaults = _node_params("camera.launch")["node"]
    assert "backend" not in defaults and "precision" not in defaults
    assert load_node_params(defaults).backend is None


def test_camera_launch_rejects_a_bad_arg_at_node_start_up():
    # roslaunch passes the value on; the node's loader names the parameter.
    dumped = _node_params("camera.launch", "camera_height_m:=-2")
    with pytest.raises(ConfigError, match="~extrinsics/height_m must be > 0"):
        load_node_params(dumped["node"])


def _skip_without_node():
    if not (REPO_ROOT / "nodes" / "panoptic_node").is_file():
        pytest.skip("nodes/panoptic_node is not written yet: roslaunch --args needs the executable")


def test_camera_launch_remaps_topics_from_the_namespace():
    _skip_without_node()
    args = _roslaunch("--args", NODE, "panoptic_perception", "camera.launch", "camera:=/front")
    assert "image:=/front/image_rect_color" in args and "camera_info:=/front/camera_info" in args
    args = _roslaunch("--args", NODE, "panoptic_perception", "camera.launch", "image:=/cam/img",
                      "camera_info:=/cam/info")
    assert "image:=/cam/img" in args and "camera_info:=/cam/info" in args


def test_camera_launch_loads_an_extra_params_file(tmp_path):
    extra = tmp_path / "node.yaml"
    extra.write_text("grid: {resolution_m: 0.5}\nfusion: {mode: jsis}\n")
    params = load_node_params(_node_params("camera.launch", f"params:={extra}")["node"])
    assert params.grid.resolution_m == 0.5 and params.fusion.mode == "jsis"


@pytest.mark.slow
def test_kitti_launch_plays_with_clock_rate_and_loop():
    dumped = _node_params("kitti.launch", "bag:=/tmp/drive.bag")
    assert dumped["all"]["/use_sim_time"] is True
    play = _roslaunch("--args", "/kitti_player", "panoptic_perception", "kitti.launch", "bag:=/tmp/drive.bag",
                      "rate:=2.5")
    assert "--clock" in play and "-r 2.5" in play and play.rstrip().split()[-2] == "/tmp/drive.bag"
    assert "--loop" not in play
    looped = _roslaunch("--args", "/kitti_player", "panoptic_perception", "kitti.launch", "bag:=/tmp/d.bag",
                        "loop:=true")
    assert "--loop" in looped
    record = _roslaunch("--args", "/panoptic_recorder", "panoptic_perception", "kitti.launch",
                        "bag:=/tmp/d.bag", "record:=/tmp/out.bag")
    for topic in ("/panoptic_perception/panoptic", "/panoptic_perception/grid", "/diagnostics", "/tf_static"):
        assert topic in record.split()


def test_kitti_launch_remaps_the_kitti2bag_topics():
    _skip_without_node()
    remap = _roslaunch("--args", NODE, "panoptic_perception", "kitti.launch", "bag:=/tmp/d.bag")
    assert "image:=/kitti/camera_color_left/image_rect_color" in remap
    assert "camera_info:=/kitti/camera_color_left/camera_info" in remap


def test_kitti_launch_requires_a_bag():
    done = subprocess.run(["roslaunch", "--nodes", "panoptic_perception", "kitti.launch"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "bag" in (done.stdout + done.stderr)


def test_demo_launch_uses_kitti_launch_on_the_demo_drive():
    play = _roslaunch("--args", "/kitti_player", "panoptic_perception", "demo.launch")
    assert play.rstrip().split()[-2].endswith("out/demo/drive.bag")
    assert "--loop" in play
    params = load_node_params(_node_params("demo.launch")["node"])
    assert params.vehicle_frame == "base_link"


def test_rviz_config_shows_the_node_outputs_in_the_vehicle_frame():
    config = yaml.safe_load((REPO_ROOT / "rviz" / "panoptic.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == load_node_params({}).vehicle_frame
    displays = {d["Class"]: d for d in manager["Displays"] if d["Class"] != "rviz/Map"}
    maps = {d["Topic"]: d for d in manager["Displays"] if d["Class"] == "rviz/Map"}
    assert displays["rviz/Image"]["Image Topic"] == "/panoptic_perception/overlay"
    markers = {d["Marker Topic"]: d for d in manager["Displays"] if d["Class"] == "rviz/MarkerArray"}
    assert set(markers) == {"/panoptic_perception/markers", "/panoptic_perception/track_markers"}
    from panoptic_perception.ros import visualization as vis

    assert set(markers["/panoptic_perception/track_markers"]["Namespaces"]) == {
        vis.TRACK_NS, vis.TRACK_LABEL_NS, vis.VELOCITY_NS}
    assert "rviz/TF" in displays
    assert maps["/panoptic_perception/grid"]["Enabled"] is True
    assert "/panoptic_perception/class_grid" in maps
    assert "/panoptic_perception/fused_grid" in maps
