"""`make setup GPU=1` refuses clearly, before installing anything, where there is no NVIDIA driver."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from repo_paths import REPO_ROOT

HAS_DRIVER = Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


@pytest.mark.skipif(HAS_DRIVER, reason="an NVIDIA driver is present: the script would install the CUDA wheels")
def test_gpu_setup_refuses_without_a_driver(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(REPO_ROOT / "tools" / "setup_gpu.sh")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PIP_NO_INDEX": "1"})
    assert done.returncode == 2
    assert "no NVIDIA driver" in done.stderr and "nothing installed" in done.stderr
    assert "pip" not in done.stdout  # refused before any install step


def test_gpu_pins_match_the_cpu_pins() -> None:
    cpu = dict(line.split("==") for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
               if "==" in line and not line.startswith("#"))
    gpu = dict(line.split("==") for line in (REPO_ROOT / "requirements-gpu.txt").read_text().splitlines()
               if "==" in line and not line.startswith("#"))
    assert gpu["torch"] == cpu["torch"]  # the CUDA build of the same torch the CPU tests run
    assert gpu["torch-tensorrt"].split(".")[:2] == cpu["torch"].split(".")[:2]  # built against that torch
