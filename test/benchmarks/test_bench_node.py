"""`bench node`: a real roscore + camera.launch fed by the bench, outputs counted, a row comes back."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_node_times_a_real_node_and_the_pipeline(tiny_model, tmp_path):
    out = tmp_path / "node.json"
    cmd = [sys.executable, "-m", "panoptic_perception", "bench", "node", "--model", str(tiny_model),
           "--frames", "3", "--warmup", "1", "--backend", "torch", "--no-record", "--json", str(out),
           "--timeout-s", "240", "--input-size", "192x64"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    row = json.loads(out.read_text())["rows"][0]
    assert row["backend"] == "torch"  # read back from the node's own /diagnostics
    assert row["node_fps"] > 0 and row["pipeline_fps"] > 0
    assert row["node_vs_pipeline_pct"] == pytest.approx(100.0 * row["node_fps"] / row["pipeline_fps"])
    assert row["node_total_median_ms"] > 0  # the node measured its own per-frame stages
    # the tiny model's own input is 256x128: both ran at the requested size, the node says so itself
    assert row["input"] == row["pipeline_input"] == "192x64"
