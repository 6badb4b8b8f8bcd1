"""`track`: the Pipeline's tracker over drives into KITTI tracking files that `eval --tracking` scores."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_paths import FIXTURES, REPO_ROOT

from panoptic_perception import cli
from panoptic_perception.tracking.kitti_tracking import read_tracking_file, read_velocity_file

KITTI_FIXTURE = FIXTURES / "kitti" / "2011_09_26"
FRAMES = 12


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter

    root = tmp_path_factory.mktemp("synth")
    DriveWriter(root, small_config(621, 188), seed=9801).write(FRAMES)
    return root


def test_track_truth_then_eval(synthetic_root, tiny_model, tmp_path, capsys):
    out = tmp_path / "tracks"
    assert cli.main(["track", "--truth", "--model", str(tiny_model), "--input", str(synthetic_root),
                     "--out", str(out), "--max-frames", str(FRAMES - 2)]) == 0
    printed = capsys.readouterr().out
    assert "no oxts" not in printed  # a synthetic drive has its exact ego poses
    drive = "2011_09_26_drive_0001_sync"
    labels = read_tracking_file(out / f"{drive}.txt")
    velocities = read_velocity_file(out / f"{drive}.velocity.json")
    assert velocities.num_frames == FRAMES - 2 and velocities.over_ground
    assert labels and {(lb.frame, lb.track_id) for lb in labels} == set(velocities.velocities_mps)
    assert max(lb.frame for lb in labels) < FRAMES - 2
    # only confirmed tracks are written: exact truth near the camera is sure (confirmed in its first
    # frame); without sure births, nothing before the hits_to_confirm-th frame
    from panoptic_perception.tracking.config import load_tracker_config

    assert min(lb.frame for lb in labels) == 0
    waiting = tmp_path / "waiting.yaml"
    waiting.write_text("\n".join(line for line in (REPO_ROOT / "config" / "tracker.yaml").read_text().splitlines()
                                 if not line.startswith("confirm_at_birth")))
    assert cli.main(["track", "--truth", "--model", str(tiny_model), "--input", str(synthetic_root), "--out",
                     str(tmp_path / "waited"), "--max-frames", str(FRAMES - 2), "--tracker-config", str(waiting)]) == 0
    waited = read_tracking_file(tmp_path / "waited" / f"{drive}.txt")
    assert min(lb.frame for lb in waited) == load_tracker_config(waiting).hits_to_confirm - 1

    scores = tmp_path / "scores.json"
    assert cli.main(["eval", "--tracking", "--tracks", str(out), "--data", str(synthetic_root),
                     "--json", str(scores)]) == 0
    report = json.loads(scores.read_text())
    everything = report["all"]
    assert report["drives"][drive]["frames"] == FRAMES - 2
    # the tracker on exact segments: written tracks sit on truth things (positions and frames right)
    assert everything["TP"] > 0 and everything["FP"] <= 0.1 * everything["TP"]
    assert everything["IDSW"] == 0 and everything["MOTA"] > 0.5


def test_a_real_drive_without_oxts_is_tracked_in_the_vehicle_frame(tiny_model, tmp_path, capsys):
    out = tmp_path / "tracks"
    assert cli.main(["track", "--model", str(tiny_model), "--backend", "torch", "--input", str(KITTI_FIXTURE),
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("has no oxts/") == 1 and "relative to the moving ego" in printed
    name = "2011_09_26_drive_0001_sync"
    read_tracking_file(out / f"{name}.txt")  # random weights: maybe no tracks, but a valid file
    velocities = read_velocity_file(out / f"{name}.velocity.json")
    assert velocities.num_frames == 2 and not velocities.over_ground


def test_truth_needs_a_drive_with_ground_truth(tiny_model, tmp_path, capsys):
    assert cli.main(["track", "--truth", "--model", str(tiny_model), "--input", str(KITTI_FIXTURE),
                     "--out", str(tmp_path / "tracks")]) == 2
    assert "has no gt/panoptic.json" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--max-frames", "0"], "--max-frames must be at least 1"),
    (["--camera", "03"], "holds no KITTI drive with camera 03"),
])
def test_bad_track_arguments_are_named(tmp_path, capsys, extra, message):
    assert cli.main(["track", "--input", str(KITTI_FIXTURE), "--out", str(tmp_path / "t")] + extra) == 2
    assert message in capsys.readouterr().err


def test_loose_images_are_not_a_drive(tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(b"")
    assert cli.main(["track", "--input", str(tmp_path), "--out", str(tmp_path / "t")]) == 2
    assert "tracking needs drives" in capsys.readouterr().err
