import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed (run `make setup`)")
def test_ruff_clean():
    # nodes/ holds extension-less Python scripts: name them explicitly so ruff checks them.
    targets = ["src", "test", *[str(p) for p in sorted((ROOT / "nodes").glob("*")) if p.is_file()]]
    done = subprocess.run(["ruff", "check", *targets], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
