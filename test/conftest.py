from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from rosharness import RosMaster

ROS_TOOLS = ("roscore", "roslaunch", "rosbag", "rostopic")


def _terminate_as_interrupt(signum, frame):
    # A killed test run (CI time-out, Ctrl-C from a wrapper) must still tear down its fixtures:
    # roscore, roslaunch and the node run in their own sessions and would otherwise outlive it.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _terminate_as_interrupt)


def _holds_other_checkout(entry: str, root: Path) -> bool:
    """True for a ROS_PACKAGE_PATH entry or catkin workspace (CMAKE_PREFIX_PATH) whose
    panoptic_perception is another checkout than `root`."""
    path = Path(entry)
    sources = [path]
    if (path / ".catkin").is_file():  # a devel space: its source folders are listed there
        sources = [Path(s) for s in (path / ".catkin").read_text().split(";") if s]
    for source in sources:
        package = source / "panoptic_perception"
        if (package / "package.xml").is_file() and package.resolve() != root:
            return True
    return False


def _child_processes_run_this_checkout() -> None:
    # pytest's `pythonpath` puts this checkout's src/ first for the test process only. roslaunch, the
    # node it starts and `python -m panoptic_perception` children would otherwise import, and find
    # launch files and node scripts in, whichever checkout the catkin workspace links to (a git
    # worktree is not that one). Messages still come from the workspace's devel space on PYTHONPATH.
    import panoptic_perception

    src = Path(panoptic_perception.__file__).resolve().parents[1]
    root = src.parent
    python_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(src), *python_path])
    for var in ("ROS_PACKAGE_PATH", "CMAKE_PREFIX_PATH"):
        entries = [e for e in os.environ.get(var, "").split(os.pathsep) if e]
        kept = [e for e in entries if not _holds_other_checkout(e, root)]
        if var == "ROS_PACKAGE_PATH" and kept != entries:
            kept.insert(0, str(root))
        if kept != entries:
            os.environ[var] = os.pathsep.join(kept)


_child_processes_run_this_checkout()


def _missing_ros_tools():
    return [tool for tool in ROS_TOOLS if shutil.which(tool) is None]


@pytest.fixture(scope="session")
def ros_master(tmp_path_factory):
    """One real roscore for the session's ROS tests; stopped by its own pids at the end."""
    missing = _missing_ros_tools()
    if missing:
        pytest.skip(f"ROS tools not installed: {', '.join(missing)} (run `make setup`)")
    master = RosMaster(tmp_path_factory.mktemp("ros_home")).start()
    yield master
    master.stop()


@pytest.fixture(scope="session")
def rospy_node(ros_master):
    """This test process as a ROS node (rospy allows one init per process)."""
    import rospy

    os.environ.update({k: v for k, v in ros_master.env.items() if k.startswith("ROS")})
    rospy.init_node("pytest_probe", anonymous=True, disable_signals=True)
    yield rospy
    rospy.signal_shutdown("tests done")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A random-weight light model at 256x128, saved as a real checkpoint (structure tests only)."""
    import dataclasses

    import torch

    from panoptic_perception.model.checkpoint import save_checkpoint
    from panoptic_perception.model.config import load_model_config
    from panoptic_perception.model.panoptic_fpn import build_model
    from panoptic_perception.paths import CONFIG_DIR

    config = dataclasses.replace(load_model_config(CONFIG_DIR / "model_light.yaml"),
                                 input_width=256, input_height=128)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, build_model(config).state_dict(), config, {"note": "random weights, tests only"})
    return path


@pytest.fixture
def drawn_texts(monkeypatch):
    """The strings cv2.putText draws from now on in this test (overlay labels), in order."""
    import cv2

    texts = []
    real_put_text = cv2.putText

    def recording_put_text(image, text, *args, **kwargs):
        texts.append(text)
        return real_put_text(image, text, *args, **kwargs)

    monkeypatch.setattr(cv2, "putText", recording_put_text)
    return texts


@pytest.fixture
def onnx_export_from(monkeypatch):
    """reuse(program) -> dict: later ONNX exports start from this torch.export program (traced once per
    test module); the dict's "exporter" says which exporter ran."""
    import panoptic_perception.runtime.onnx_export as onnx_export

    real_export = onnx_export.export_onnx

    def reuse(program) -> dict:
        used = {}

        def export_reusing_program(*args, **kwargs):
            used["exporter"] = real_export(*args, exported=program, **kwargs)
            return used["exporter"]

        monkeypatch.setattr(onnx_export, "export_onnx", export_reusing_program)
        return used

    return reuse
