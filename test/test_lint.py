import shutil
import subprocess

import pytest
from repo_paths import REPO_ROOT


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed (run `make setup`)")
def test_ruff_clean():
    # nodes/ holds extension-less Python scripts: name them explicitly so ruff checks them.
    targets = ["src", "test", *[str(p) for p in sorted((REPO_ROOT / "nodes").glob("*")) if p.is_file()]]
    done = subprocess.run(["ruff", "check", *targets], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
