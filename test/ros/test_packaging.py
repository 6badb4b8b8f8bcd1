"""The package installs and runs the ROS way: rosrun finds exactly one node, and a catkin install space
holds every Python subpackage, the node, the launch files and the configs, and runs on its own."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest
from repo_paths import REPO_ROOT
from rosharness import stop_process

pytestmark = [pytest.mark.ros, pytest.mark.slow]
NODE_TOPIC = "/panoptic_perception/panoptic"


def _wait_for_topic(env: Dict[str, str], topic: str, process: subprocess.Popen, timeout_s: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        listed = subprocess.run(["rostopic", "list"], env=env, capture_output=True, text=True, timeout=30)
        if topic in listed.stdout.split():
            return True
        time.sleep(1.0)
    return False


def _run_node(command: List[str], env: Dict[str, str], log: Path) -> bool:
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return _wait_for_topic(env, NODE_TOPIC, process)
    finally:
        stop_process(process)


@pytest.mark.skipif(shutil.which("rosrun") is None, reason="rosrun not installed (run `make setup`)")
def test_rosrun_finds_exactly_one_node_and_runs_it(ros_master, tiny_model, tmp_path):
    env = {**ros_master.env, "ROS_NAMESPACE": "/"}
    found = subprocess.run(["rosrun", "--debug", "panoptic_perception", "panoptic_node", "__name:=probe",
                            "_model_file:=/nonexistent/model.pt"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert "non-unique" not in found.stdout and "loop" not in found.stderr, found.stdout + found.stderr
    assert found.stdout.count("[rosrun] Running") == 1
    assert found.returncode == 1 and "nonexistent/model.pt" in found.stdout + found.stderr  # ran: its own error
    command = ["rosrun", "panoptic_perception", "panoptic_node", f"_model_file:={tiny_model}"]
    assert _run_node(command, env, tmp_path / "node.log"), (tmp_path / "node.log").read_text()[-3000:]


def _install_space(tmp_path: Path) -> Path:
    """catkin_make install of this checkout in a fresh workspace; the install prefix."""
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "panoptic_perception").symlink_to(REPO_ROOT)
    python = REPO_ROOT / ".venv" / "bin" / "python3"
    done = subprocess.run(["catkin_make", "-C", str(workspace), "install", f"-DPYTHON_EXECUTABLE={python}",
                           "-DCATKIN_ENABLE_TESTING=OFF"],
                          cwd=workspace, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workspace / "install"


def _install_env(install: Path, base: Dict[str, str]) -> Dict[str, str]:
    """The environment `. install/setup.sh` gives, starting from one that knows no catkin workspace or
    source folder. PATH keeps the venv: the installed node runs `/usr/bin/env python3` (catkin's rule),
    which must be the interpreter that has torch."""
    clean = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "ROS_PACKAGE_PATH", "CMAKE_PREFIX_PATH",
                                                      "LD_LIBRARY_PATH", "PKG_CONFIG_PATH")}
    dumped = subprocess.run(["bash", "-c", f'. "{install}/setup.sh" && env -0'], env=clean, capture_output=True,
                            timeout=60, check=True).stdout
    return dict(item.split("=", 1) for item in dumped.decode().split("\0") if "=" in item)


@pytest.mark.skipif(shutil.which("catkin_make") is None, reason="catkin not installed (run `make setup`)")
def test_install_space_holds_and_runs_the_whole_package(ros_master, tiny_model, tmp_path):
    install = _install_space(tmp_path)
    env = _install_env(install, ros_master.env)
    probe = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "python3"), "-c",
         "import pkgutil, panoptic_perception as p, panoptic_perception.msg, panoptic_perception.data.synth, "
         "panoptic_perception.training.trainer, panoptic_perception.benchmarks.gpu; "
         "from panoptic_perception.paths import CONFIG_DIR; print(p.__file__); print(CONFIG_DIR)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    module_file, config_dir = probe.stdout.split()
    assert module_file.startswith(str(install)) and Path(config_dir, "model_light.yaml").is_file()
    cli = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "python3"), "-m", "panoptic_perception", "--help"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "import-weights" in cli.stdout, cli.stderr[-2000:]
    for shipped in ("share/panoptic_perception/launch/camera.launch", "share/panoptic_perception/models",
                    "lib/panoptic_perception/panoptic_node"):
        assert (install / shipped).exists(), shipped
    command = ["rosrun", "panoptic_perception", "panoptic_node", f"_model_file:={tiny_model}"]
    assert _run_node(command, env, tmp_path / "node.log"), (tmp_path / "node.log").read_text()[-3000:]
