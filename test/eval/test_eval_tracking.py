"""Tracking evaluation: truth as tracks scores 1, hand-built mistakes score what the definitions and TrackEval say."""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest

from panoptic_perception import cli
from panoptic_perception.data import kitti
from panoptic_perception.errors import InputError
from panoptic_perception.eval import tracking as et
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.tracking.kitti_tracking import (
    KittiBoxConverter,
    TrackVelocities,
    VehicleBox,
    write_tracking_file,
    write_velocity_file,
)

FRAMES = 10
SIZES = {"car": (4.4, 1.8, 1.5), "truck": (7.0, 2.5, 3.0), "person": (0.5, 0.6, 1.75)}
DRIVE = "2011_09_26_drive_0001_sync"


def _truth(track_id: int, category: str, x_m: float, y_m: float, velocity=(0.0, 0.0), visible_px: int = 1000) -> dict:
    size = SIZES[category]
    return {"track_id": track_id, "segment_id": 0, "category_id": 0, "category": category,
            "center_m": [x_m, y_m, size[2] / 2], "size_m": list(size), "yaw_rad": 0.0,
            "speed_mps": math.hypot(*velocity), "velocity_mps": list(velocity), "visible_px": visible_px}


def _scene(k: int) -> List[dict]:
    """Car A drives ahead at 5 m/s (0.5 m per 10 Hz frame), car B is parked."""
    return [_truth(1, "car", 15.0 + 0.5 * k, -2.0, (5.0, 0.0)), _truth(2, "car", 22.0, 3.0)]


def _make_drive(root: Path, frames: Sequence[List[dict]], name: str = DRIVE) -> Path:
    date = root / "2011_09_26"
    if not (date / kitti.CAM_TO_CAM).is_file():
        kitti.write_calibration(date, Camera())
    drive = date / name
    (drive / "gt" / "objects").mkdir(parents=True)
    for k, objects in enumerate(frames):
        (drive / "gt" / "objects" / f"{k:010d}.json").write_text(
            json.dumps({"frame": k, "frame_id": "vehicle", "objects": objects}))
    return drive


Row = Tuple[int, str, float, float, Tuple[float, float]]  # track id, category, x, y, velocity


def _as_tracks(frames: Sequence[List[dict]], ids: Optional[Dict[int, int]] = None) -> List[List[Row]]:
    """Truth written as tracks: track ids = truth id + 100 (or `ids`)."""
    ids = ids or {}
    return [[(ids.get(o["track_id"], o["track_id"] + 100), o["category"], o["center_m"][0], o["center_m"][1],
              tuple(o["velocity_mps"])) for o in objects] for objects in frames]


def _write_tracks(out: Path, drive: Path, rows: Sequence[List[Row]], over_ground: Optional[bool] = True) -> None:
    converter = KittiBoxConverter(kitti.KittiCalibration.read(drive.parent))
    labels, velocities = [], {}
    for k, frame in enumerate(rows):
        for track_id, category, x_m, y_m, velocity in frame:
            size = SIZES[category]
            label = converter.label(VehicleBox((x_m, y_m, size[2] / 2), size, 0.0), k, track_id,
                                    {"car": "Car", "truck": "Truck", "person": "Pedestrian"}[category], 0.9)
            assert label is not None, "a test track outside the picture"
            labels.append(label)
            velocities[(k, track_id)] = velocity
    out.mkdir(parents=True, exist_ok=True)
    write_tracking_file(out / f"{drive.name}.txt", labels)
    if over_ground is not None:
        write_velocity_file(out / f"{drive.name}.velocity.json",
                            TrackVelocities(drive.name, len(rows), over_ground, velocities, {}))


def _score(tmp_path: Path, truth: Sequence[List[dict]], tracks: Sequence[List[Row]], **kwargs) -> dict:
    drive = _make_drive(tmp_path / "data", truth)
    _write_tracks(tmp_path / "tracks", drive, tracks, **kwargs)
    return et.evaluate_folder(tmp_path / "tracks", tmp_path / "data")


def _trackeval(data: dict, threshold: float = 0.5) -> dict:
    """TrackEval's own numbers on a data dict built here by hand."""
    with contextlib.redirect_stdout(io.StringIO()):
        from trackeval.metrics import CLEAR, HOTA, Identity

        config = {"THRESHOLD": threshold, "PRINT_CONFIG": False}
        return {"CLEAR": CLEAR(config).eval_sequence(data), "Identity": Identity(config).eval_sequence(data),
                "HOTA": HOTA().eval_sequence(data)}


def _hand_data(gt_ids: List[List[int]], tracker_ids: List[List[int]]) -> dict:
    """Every truth exactly under one track each frame: similarity 1 where the rows' positions agree."""
    return {"num_timesteps": len(gt_ids), "gt_ids": [np.array(g) for g in gt_ids],
            "tracker_ids": [np.array(t) for t in tracker_ids],
            "similarity_scores": [np.eye(len(g), len(t)) for g, t in zip(gt_ids, tracker_ids)],
            "num_gt_ids": len({i for g in gt_ids for i in g}),
            "num_tracker_ids": len({i for t in tracker_ids for i in t}),
            "num_gt_dets": sum(map(len, gt_ids)), "num_tracker_dets": sum(map(len, tracker_ids))}


TRUTH = [_scene(k) for k in range(FRAMES)]


# ---------------------------------------------------------------------------- TrackEval's numbers
def test_truth_written_as_tracks_scores_one(tmp_path):
    report = _score(tmp_path, TRUTH, _as_tracks(TRUTH))
    everything = report["all"]
    assert everything["MOTA"] == everything["IDF1"] == everything["HOTA"] == 1.0
    assert (everything["TP"], everything["FN"], everything["FP"], everything["IDSW"]) == (20, 0, 0, 0)
    assert everything["idsw_per_100_track_frames"] == 0.0
    # both cars are within 30 m; a pair counts from its 5th frame in a row: frames 4..9, 6 each
    assert everything["velocity"]["samples"] == 12 and everything["velocity"]["median_error_mps"] == 0.0
    assert list(report["classes"]) == ["Car"] and report["drives"][DRIVE]["frames"] == FRAMES


def test_identities_swapped_halfway_count_what_trackeval_counts(tmp_path):
    swapped = _as_tracks(TRUTH[:5]) + _as_tracks(TRUTH[5:], ids={1: 102, 2: 101})
    report = _score(tmp_path, TRUTH, swapped)["all"]
    expected = _trackeval(_hand_data([[0, 1]] * FRAMES, [[0, 1]] * 5 + [[1, 0]] * 5))
    assert report["IDSW"] == expected["CLEAR"]["IDSW"] == 2  # each car changes track once
    assert report["MOTA"] == pytest.approx(expected["CLEAR"]["MOTA"]) == pytest.approx(1 - 2 / 20)
    # IDF1: each truth keeps one track for 5 of its 10 frames -> IDTP 10, IDFN 10, IDFP 10 -> 20 / 40
    assert report["IDF1"] == pytest.approx(expected["Identity"]["IDF1"]) == pytest.approx(0.5)
    assert report["HOTA"] == pytest.approx(float(np.mean(expected["HOTA"]["HOTA"])))
    assert report["HOTA"] < 1.0 and report["DetA"] == 1.0
    assert report["idsw_per_100_track_frames"] == pytest.approx(100 * 2 / 20)


def test_a_dropped_track_lowers_mota_by_its_missed_frames(tmp_path):
    dropped = _as_tracks(TRUTH[:5]) + [[row for row in frame if row[0] != 102] for frame in _as_tracks(TRUTH[5:])]
    report = _score(tmp_path, TRUTH, dropped)["all"]
    # MOTA = 1 - (FN + FP + IDSW) / truth detections = 1 - (5 + 0 + 0) / 20
    assert (report["TP"], report["FN"], report["FP"], report["IDSW"]) == (15, 5, 0, 0)
    assert report["MOTA"] == pytest.approx(0.75)
    expected = _trackeval(_hand_data([[0, 1]] * FRAMES, [[0, 1]] * 5 + [[0]] * 5))
    assert report["MOTA"] == pytest.approx(expected["CLEAR"]["MOTA"])
    assert report["IDF1"] == pytest.approx(expected["Identity"]["IDF1"]) == pytest.approx(2 * 15 / (2 * 15 + 5))


def test_a_false_track_in_range_is_a_false_positive(tmp_path):
    extra = [frame + [(300, "car", 30.0, -8.0, (0.0, 0.0))] for frame in _as_tracks(TRUTH)]
    report = _score(tmp_path, TRUTH, extra)["all"]
    assert (report["FP"], report["MOTA"]) == (10, pytest.approx(1 - 10 / 20))


# ---------------------------------------------------------------------------- what counts
def test_matching_is_within_two_metres(tmp_path):
    near = [[(i, c, x + 1.9, y, v) for i, c, x, y, v in frame] for frame in _as_tracks(TRUTH)]
    report = _score(tmp_path / "near", TRUTH, near)["all"]
    assert report["MOTA"] == 1.0 and report["HOTA"] < 0.5  # matched, but HOTA's alphas above 0.05 miss
    far = [[(i, c, x + 2.1, y, v) for i, c, x, y, v in frame] for frame in _as_tracks(TRUTH)]
    report = _score(tmp_path / "far", TRUTH, far)["all"]
    assert (report["TP"], report["FN"], report["FP"]) == (0, 20, 20) and report["MOTA"] == pytest.approx(-1.0)


def test_a_track_of_another_class_does_not_match(tmp_path):
    tracks = [[(i, "truck" if i == 102 else c, x, y, v) for i, c, x, y, v in frame] for frame in _as_tracks(TRUTH)]
    report = _score(tmp_path, TRUTH, tracks)
    # 1 - (FN + FP) / truth detections = 1 - (10 + 10) / 20
    assert (report["all"]["FN"], report["all"]["FP"], report["all"]["MOTA"]) == (10, 10, pytest.approx(0.0))
    assert report["classes"]["Truck"]["FP"] == 10 and report["classes"]["Car"]["MOTA"] == pytest.approx(0.5)


def test_unseen_and_distant_truth_does_not_count_and_tracks_on_it_are_not_false(tmp_path):
    truth = [_scene(k) + [_truth(3, "car", 18.0, 6.0, visible_px=20),  # barely in the picture
                          _truth(4, "car", 60.0, 0.5),  # beyond the 50 m range of cars
                          _truth(5, "person", 42.0, -3.0)]  # beyond the 40 m of pedestrians
             for k in range(FRAMES)]
    tracks = [frame + [(203, "car", 18.2, 6.0, (0.0, 0.0)), (206, "car", 70.0, 9.0, (0.0, 0.0))]
              for frame in _as_tracks([_scene(k) for k in range(FRAMES)])]
    report = _score(tmp_path, truth, tracks)["all"]
    assert (report["TP"], report["FN"], report["FP"], report["MOTA"]) == (20, 0, 0, 1.0)


def test_velocity_error_is_scored_within_30_m_after_5_frames(tmp_path):
    truth = [[_truth(1, "car", 15.0 + 0.5 * k, -2.0, (5.0, 0.0)), _truth(2, "car", 35.0, 3.0)] for k in range(FRAMES)]
    tracks = [[(i, c, x, y, (v[0] + 0.3, v[1] - 0.4)) for i, c, x, y, v in frame] for frame in _as_tracks(truth)]
    velocity = _score(tmp_path, truth, tracks)["all"]["velocity"]
    assert velocity["samples"] == 6  # car A in frames 4..9; car B is 35 m away
    assert velocity["median_error_mps"] == pytest.approx(0.5)


def test_velocities_relative_to_the_ego_or_missing_are_not_scored(tmp_path):
    report = _score(tmp_path / "relative", TRUTH, _as_tracks(TRUTH), over_ground=False)["all"]
    assert report["velocity"]["samples"] == 0 and "relative to the ego" in report["velocity"]["note"]
    report = _score(tmp_path / "none", TRUTH, _as_tracks(TRUTH), over_ground=None)["all"]
    assert report["velocity"]["median_error_mps"] is None and "no velocity file" in report["velocity"]["note"]
    assert report["MOTA"] == 1.0


def test_a_run_over_the_first_frames_is_scored_on_those(tmp_path):
    report = _score(tmp_path, TRUTH, _as_tracks(TRUTH[:4]))  # the velocity file says 4 frames
    assert report["drives"][DRIVE]["frames"] == 4 and report["all"]["TP"] == 8 and report["all"]["MOTA"] == 1.0


# ---------------------------------------------------------------------------- folders and the command
def test_eval_command_scores_every_drive_with_tracks(tmp_path, capsys):
    data = tmp_path / "data"
    first = _make_drive(data, TRUTH)
    _make_drive(data, TRUTH, name="2011_09_26_drive_0002_sync")
    _write_tracks(tmp_path / "tracks", first, _as_tracks(TRUTH))
    out = tmp_path / "scores.json"
    assert cli.main(["eval", "--tracking", "--tracks", str(tmp_path / "tracks"), "--data", str(data),
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no tracks for drive 2011_09_26_drive_0002_sync" in printed and "MOTA" in printed
    report = json.loads(out.read_text())
    assert report["not_scored"] == ["2011_09_26_drive_0002_sync"] and report["all"]["MOTA"] == 1.0
    assert report["settings"]["match_distance_m"] == 2.0 and list(report["drives"]) == [DRIVE]


@pytest.mark.parametrize("argv, message", [
    (["--tracking", "--data", "x"], "--tracking needs --tracks"),
    (["--tracks", "x", "--data", "y"], "--tracks goes with --tracking"),
    (["--tracking", "--tracks", "x", "--data", "y", "--model", "m"], "--tracking excludes --model"),
])
def test_eval_tracking_arguments_are_checked(argv, message, capsys):
    assert cli.main(["eval"] + argv) == 2
    assert message in capsys.readouterr().err


def test_tracks_past_the_drive_or_without_velocity_are_named(tmp_path):
    drive = _make_drive(tmp_path / "data", TRUTH[:3])
    _write_tracks(tmp_path / "tracks", drive, _as_tracks(TRUTH[:3]))
    side = tmp_path / "tracks" / f"{DRIVE}.velocity.json"
    data = json.loads(side.read_text())
    data["velocities"] = data["velocities"][1:]
    side.write_text(json.dumps(data))
    with pytest.raises(InputError, match="track 101 in frame 0 has no velocity"):
        et.evaluate_folder(tmp_path / "tracks", tmp_path / "data")
    side.unlink()
    _write_tracks(tmp_path / "tracks", drive, _as_tracks(TRUTH[:4]), over_ground=None)
    with pytest.raises(InputError, match="frame 3 is past the drive's 3 frames"):
        et.evaluate_folder(tmp_path / "tracks", tmp_path / "data")


def test_folders_without_truth_or_tracks_are_named(tmp_path):
    with pytest.raises(InputError, match="no drive with gt/objects/"):
        et.evaluate_folder(tmp_path, tmp_path)
    _make_drive(tmp_path / "data", TRUTH[:2])
    (tmp_path / "tracks").mkdir()
    with pytest.raises(InputError, match="none of the drives"):
        et.evaluate_folder(tmp_path / "tracks", tmp_path / "data")
