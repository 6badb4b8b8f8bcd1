"""Imported detectron2 weights give detectron2's answer: tools/detectron2_parity.py against a real build.

A developer reference: it needs detectron2 (built from source on CPU, see the script's docstring),
which the package never depends on, so it skips where detectron2 is not importable (CI). Run it in the
reference venv ($D2REF as in the script's docstring):

    PYTHONPATH=src:test/support:$D2REF/detectron2 OMP_NUM_THREADS=1 \\
        $D2REF/venv/bin/python -m pytest test/model/test_detectron2_parity.py -s

One KITTI-size synthetic frame (1242x375), seeded random detectron2 weights made realistic on it,
imported with import-weights, then detectron2's DefaultPredictor vs our Pipeline.process with the
torch and the onnxruntime backends. Cost: 2-7 min on one CPU core (by load), mostly the ONNX export of R-50 at
1344x416 and one onnxruntime frame.
"""
from __future__ import annotations

import sys

import pytest
from repo_paths import REPO_ROOT

pytest.importorskip("detectron2",
                    reason="detectron2 not importable (developer reference, see tools/detectron2_parity.py)")

pytestmark = pytest.mark.slow

TOOLS = REPO_ROOT / "tools"
MIN_PIXEL_AGREEMENT = 0.995
MAX_SCORE_DIFF = 1e-3
MIN_THINGS, MIN_STUFF = 5, 2  # the frame must exercise instances, stuff and their fusion


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    sys.path.insert(0, str(TOOLS))
    try:
        import detectron2_parity
    finally:
        sys.path.remove(str(TOOLS))
    result = detectron2_parity.run_parity(tmp_path_factory.mktemp("parity"))
    print(detectron2_parity.format_report(result))
    return result


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_imported_weights_give_detectron2s_panoptic_answer(report, backend):
    r = report["backends"][backend]
    p = r["panoptic"]
    assert p["things_ref"] >= MIN_THINGS and p["stuff_ref"] >= MIN_STUFF, \
        f"the weights must give a realistic mix on the frame: {p['things_ref']} things, {p['stuff_ref']} stuff"
    assert r["input_hw"]["ours"] == r["input_hw"]["ref"], "resized to another size than detectron2's"
    assert p["pixel_agreement"] >= MIN_PIXEL_AGREEMENT, f"{p['pixel_agreement']:.3%} of pixels agree"
    assert p["matched"] == p["segments_ref"], f"detectron2 segments without a match: {p['unmatched']}"
    assert p["max_score_diff"] <= MAX_SCORE_DIFF


def test_torch_stages_match_detectron2(report):
    r = report["backends"]["torch"]
    assert max(v["rel_err"] for v in r["features"].values()) <= 1e-4, r["features"]
    props = r["proposals"]
    assert props["identical"] == props["ref"], props
