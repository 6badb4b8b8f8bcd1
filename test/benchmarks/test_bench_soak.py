"""`bench soak` (issue 15): one minute of the real node on a looping bag, RSS flat, diagnostics alive;
and the verdict's rules on made-up samples."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from panoptic_perception.benchmarks.soak import SoakSample, rss_growth, stuck_diagnostics


def _samples(rss, processed=None, level=0, age=0.5):
    processed = processed or [10 * (i + 1) for i in range(len(rss))]
    return [SoakSample(elapsed_s=30.0 * i, pid=1, rss_mb=r, frames_received=2 * p, frames_processed=p,
                       frames_dropped=p, frames_skipped=0, latency_median_ms=100.0, latency_p99_ms=150.0,
                       level=level, diagnostics_age_s=age, message="")
            for i, (r, p) in enumerate(zip(rss, processed))]


def test_flat_rss_with_noise_passes_and_a_leak_does_not():
    flat = rss_growth(_samples([900, 620, 601, 604, 599, 603, 600, 602, 598, 601]))  # warm-up samples ignored
    assert flat["growth_mb"] <= flat["allowed_mb"]
    leak = rss_growth(_samples([600 + 20 * i for i in range(10)]))  # 40 MB a minute, issue 15's sizes leak
    assert leak["growth_mb"] > leak["allowed_mb"] and leak["slope_mb_per_min"] == pytest.approx(40.0)


def test_stuck_diagnostics_are_named():
    assert stuck_diagnostics(_samples([600] * 4)) == []
    assert "stayed at 20" in stuck_diagnostics(_samples([600] * 4, processed=[10, 20, 20, 30]))[0]
    assert "s old" in stuck_diagnostics(_samples([600] * 3, age=9.0))[0]
    assert "final level 1" in stuck_diagnostics(_samples([600] * 3, level=1))[-1]


@pytest.mark.ros
@pytest.mark.slow
def test_one_minute_soak_holds_rss_and_keeps_diagnostics_moving(tiny_model, tmp_path):
    out, result = tmp_path / "soak", tmp_path / "soak.json"
    cmd = [sys.executable, "-m", "panoptic_perception", "bench", "soak", "--minutes", "1", "--interval-s", "5",
           "--model", str(tiny_model), "--backend", "torch", "--image-size", "320x96", "--frames", "8",
           "--rate", "3", "--out", str(out), "--no-record", "--json", str(result)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=480)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(result.read_text())
    row = data["rows"][0]
    assert row["samples"] >= 12 and row["processed"] > 0 and row["dropped"] > 0  # input faster than the node
    assert not row["rss_growth_beyond_noise"], data["rss"]
    assert not row["diagnostics_stuck"], data["stuck"]
    with open(out / "soak.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == row["samples"] and float(rows[-1]["rss_mb"]) > 0
    assert (out / "soak.png").stat().st_size > 1000
