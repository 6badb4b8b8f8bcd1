"""`eval --footprints`: thing cells of the grid against the synthetic world's exact footprints."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from panoptic_perception import cli
from panoptic_perception.data.panoptic_io import Segment
from panoptic_perception.data.synth.bev import BevTruth
from panoptic_perception.errors import InputError
from panoptic_perception.eval.footprints import FootprintScore, score_frame
from panoptic_perception.labels import load_label_space

SPACE = load_label_space("cityscapes")
CAR, PERSON, BUILDING, ROAD = (SPACE.id_of(n) for n in ("car", "person", "building", "road"))
UNKNOWN_CLASS = 255


def _truth(footprint_ids_rows_cols: np.ndarray) -> BevTruth:
    ids = footprint_ids_rows_cols.T  # BevTruth is [x, y]
    shape = ids.shape
    return BevTruth(np.zeros(shape, bool), np.ones(shape, bool), ids.astype(np.int32), np.zeros(shape, np.uint8),
                    0.2, 0.0, -0.4)


def test_a_frame_counts_thing_cells_against_the_footprints_of_imaged_things():
    # rows = y, cols = x: a car (segment 7) in the top-left, a person (9) top-right, a car hidden from the
    # image (segment 5: no segment of the frame) bottom-right
    ids = np.array([[7, 7, 0, 9],
                    [7, 7, 0, 0],
                    [0, 0, 5, 5]])
    occupancy = np.array([[100, 100, 100, 0],
                          [100, 0, -1, 100],
                          [0, 0, 100, 100]], dtype=np.int8)
    classes = np.array([[CAR, CAR, CAR, ROAD],
                        [CAR, ROAD, UNKNOWN_CLASS, BUILDING],
                        [ROAD, ROAD, CAR, CAR]], dtype=np.uint8)
    segments = [Segment(7, CAR, 100), Segment(9, PERSON, 20), Segment(3, ROAD, 500)]
    frame = score_frame("f", occupancy, classes, _truth(ids), segments, SPACE)
    # thing cells: (0,0) (0,1) (0,2) (1,0) (2,2) (2,3); the building's occupied cell is no thing
    assert frame.predicted_cells == 6
    assert frame.truth_cells == 5  # car 4 + person 1; the hidden car is nobody's to find
    assert frame.intersection_cells == 3
    assert frame.iou == pytest.approx(3 / 8)
    assert frame.missed_by_class == {"car": 1, "person": 1}
    assert frame.extra_by_class == {"car": 3}  # (0,2) and the hidden car's two cells


def test_pooled_iou_sums_cells_over_frames_and_frames_without_things_have_none():
    ids = np.array([[7, 7], [0, 0]])
    truth, segments = _truth(ids), [Segment(7, CAR, 10)]
    classes = np.full((2, 2), CAR, np.uint8)
    score = FootprintScore()
    score.add(score_frame("a", np.array([[100, 100], [0, 0]], np.int8), classes, truth, segments, SPACE))
    score.add(score_frame("b", np.array([[100, 0], [100, 100]], np.int8), classes, truth, segments, SPACE))
    score.add(score_frame("c", np.zeros((2, 2), np.int8), classes, _truth(np.zeros((2, 2))), [], SPACE))
    assert score.pooled_iou == pytest.approx((2 + 1) / (2 + 4))
    assert score.per_frame_iou().tolist() == pytest.approx([1.0, 0.25])
    assert score.to_dict()["frames"] == 3 and score.to_dict()["frames_scored"] == 2


def test_a_grid_of_another_size_than_the_truth_is_refused_by_name():
    with pytest.raises(InputError, match="frame 3: grid"):
        score_frame("frame 3", np.zeros((3, 3), np.int8), np.zeros((3, 3), np.uint8), _truth(np.zeros((2, 2))), [],
                    SPACE)


@pytest.fixture(scope="module")
def fresh_drives(tmp_path_factory):
    """Two streets from seeds nothing else uses, 8 frames each half a second apart (4 m of driving)."""
    from panoptic_perception.data.synth.config import SynthConfig
    from panoptic_perception.data.synth.writer import DriveWriter

    root = tmp_path_factory.mktemp("fresh")
    for seed in (31337, 27182):
        config = dataclasses.replace(SynthConfig(), frame_rate_hz=2.0, drive=seed % 1000)
        DriveWriter(root, config, seed=seed).write(8)
    return root


@pytest.mark.slow
def test_thing_cells_cover_true_footprints_on_fresh_seeds(fresh_drives, tmp_path, capsys):
    """The projection of exact panoptic truth puts things where they stand: pooled IoU >= 0.6 (0.63 and
    0.65 on these seeds before footprints cut by the image border grew toward the camera; 0.69 / 0.66
    with it)."""
    out = tmp_path / "footprints.json"
    assert cli.main(["eval", "--footprints", "--data", str(fresh_drives), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["frames"] == 16 and report["source"] == "truth"
    assert report["pooled_iou"] >= 0.6
    assert report["per_frame_iou"]["median"] >= 0.6
    assert "thing footprints: pooled IoU" in capsys.readouterr().out


def test_footprints_cli_names_what_is_missing(tmp_path, capsys):
    assert cli.main(["eval", "--footprints"]) == 2
    assert "--footprints needs --data" in capsys.readouterr().err
    assert cli.main(["eval", "--footprints", "--data", str(tmp_path), "--tracks", str(tmp_path)]) == 2
    assert "--footprints excludes --tracks" in capsys.readouterr().err
    assert cli.main(["eval", "--footprints", "--data", str(tmp_path)]) == 2
    assert "no drive" in capsys.readouterr().err
