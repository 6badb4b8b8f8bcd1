"""`bench gpu`: without CUDA it measures nothing; its acceptance steps run on the CPU with stand-ins
(torch fp32 as the reference, onnxruntime through the same engine cache as the engine)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from repo_paths import REPO_ROOT

from panoptic_perception.benchmarks.gpu import BenchModel, Variant, acceptance

pytestmark = pytest.mark.slow


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: bench gpu would measure")
def test_without_cuda_it_says_so_and_records_nothing(tmp_path: Path) -> None:
    results = REPO_ROOT / "bench" / "RESULTS.md"
    before = results.read_text()
    done = subprocess.run([sys.executable, "-m", "panoptic_perception", "bench", "gpu", "--json",
                           str(tmp_path / "gpu.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout
    assert results.read_text() == before
    assert '"rows": []' in (tmp_path / "gpu.json").read_text()


def test_acceptance_steps_on_cpu_stand_ins(tiny_model: Path, tmp_path: Path) -> None:
    reference = Variant("torch fp32", "torch", "fp32")
    engine = Variant("onnxruntime (engine stand-in)", "onnxruntime", "fp32")
    model = BenchModel("tiny", tiny_model, (320, 120))
    out = acceptance([model], [reference, engine], reference, engine, [engine], "cpu", tmp_path / "cache",
                     warmup=1, count=2)
    build, = out["builds"]
    assert build["loaded_from_cache"] and build["build_s"] > build["cached_load_s"] > 0
    check, = out["equivalence"]
    assert check["variant"] == engine.name and check["vs"] == reference.name
    assert check["reference_segments"] > 0
    assert check["passed"], check  # onnxruntime agrees with torch on the same weights
    assert [row["variant"] for row in out["latency"]] == [reference.name, engine.name]
    for row in out["latency"]:
        assert row["total_median_ms"] >= row["network_median_ms"] > 0
        assert row["total_p99_ms"] >= row["total_median_ms"]


def test_segment_agreement_counts_pixels_and_unmatched_segments() -> None:
    import numpy as np

    from panoptic_perception.benchmarks.gpu import segment_agreement
    from panoptic_perception.data.panoptic_io import Segment
    from panoptic_perception.pipeline import FrameResult

    def result(segment_map: np.ndarray, categories: dict) -> FrameResult:
        category_map = np.zeros_like(segment_map, dtype=np.uint8)
        segments = []
        for seg_id, category in categories.items():
            category_map[segment_map == seg_id] = category
            segments.append(Segment(seg_id, category, int((segment_map == seg_id).sum()), (0, 0, 1, 1),
                                    category_name=str(category), is_thing=category >= 11))
        return FrameResult(segment_map.astype(np.int32), category_map, segments)

    reference = np.zeros((10, 10), np.int32)
    reference[:, 5:] = 1
    reference[2:4, 1:3] = 2
    same = segment_agreement(result(reference, {0: 0, 1: 13, 2: 11}), result(reference, {0: 0, 1: 13, 2: 11}))
    assert same == {"pixel_agreement_pct": 100.0, "reference_segments": 3, "unmatched_segments": 0}
    moved = reference.copy()
    moved[2:4, 1:3] = 0  # the small thing is lost
    moved[6:8, 1:3] = 2
    differs = segment_agreement(result(reference, {0: 0, 1: 13, 2: 11}), result(moved, {0: 0, 1: 13, 2: 11}))
    assert differs["unmatched_segments"] == 1 and differs["pixel_agreement_pct"] == 92.0
