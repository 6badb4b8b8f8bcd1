"""`synth` on disk: KITTI raw layout, calibration that reads back to the synthetic camera, and
ground truth files that match the in-memory frames."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from panoptic_perception.cli import main
from panoptic_perception.data import kitti
from panoptic_perception.data.panoptic_io import read_panoptic_json, read_panoptic_png
from panoptic_perception.data.synth import StreetWorld, small_config
from panoptic_perception.data.synth.bev import BevTruth
from panoptic_perception.data.synth.writer import DriveWriter


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    config = small_config(160, 48)
    writer = DriveWriter(out, config, seed=3)
    assert writer.write(3, workers=2) == 3
    return out, config, writer.drive


def test_kitti_raw_layout_and_timestamps(written):
    out, config, drive = written
    assert drive == out / "2011_09_26" / "2011_09_26_drive_0001_sync"
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        assert (out / "2011_09_26" / name).is_file()
    lines = (drive / "image_02" / "timestamps.txt").read_text().splitlines()
    assert lines == [
        "2011-09-26 13:02:25.964389445",
        "2011-09-26 13:02:26.064389445",
        "2011-09-26 13:02:26.164389445",
    ]
    read = kitti.read_drive(drive)
    assert [p.name for p in read.images["02"]] == [f"{i:010d}.png" for i in range(3)]


def test_calibration_reads_back_the_synthetic_camera(written):
    out, config, drive = written
    cam = kitti.read_drive(drive).camera("02")
    world_cam = StreetWorld(config, 3).camera
    np.testing.assert_allclose(cam.intrinsics.camera_matrix, world_cam.intrinsics.camera_matrix, atol=1e-9)
    np.testing.assert_allclose(cam.extrinsics.matrix(), world_cam.extrinsics.matrix(), atol=1e-9)


def test_ground_truth_files_match_the_rendered_frames(written):
    out, config, drive = written
    world = StreetWorld(config, 3)
    pano = read_panoptic_json(drive / "gt" / "panoptic.json")
    assert [a["image_id"] for a in pano["annotations"]] == [f"{i:010d}" for i in range(3)]
    assert len(pano["categories"]) == 19
    for i in (0, 2):
        frame = world.render(i)
        name = f"{i:010d}"
        rgb = cv2.imread(str(drive / "image_02" / "data" / f"{name}.png"))[:, :, ::-1]
        assert np.array_equal(rgb, frame.rgb)
        assert np.array_equal(read_panoptic_png(drive / "gt" / "panoptic" / f"{name}.png"), frame.panoptic)
        sem = cv2.imread(str(drive / "gt" / "semantic" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(sem, frame.semantic)
        ann = pano["annotations"][i]
        assert {s["id"]: s["area"] for s in ann["segments_info"]} == {s.id: s.area_px for s in frame.segments}
        bev = BevTruth.load_npz(drive / "gt" / "bev" / f"{name}.npz")
        assert np.array_equal(bev.footprint_ids, frame.bev.footprint_ids)
        objects = json.loads((drive / "gt" / "objects" / f"{name}.json").read_text())
        assert [o["track_id"] for o in objects["objects"]] == [o.track_id for o in frame.objects]
        assert objects["timestamp"] == kitti.format_timestamp_ns(frame.timestamp_ns)


def test_synth_command_with_camera_overrides(tmp_path, capsys):
    rc = main(
        [
            "synth",
            "--out",
            str(tmp_path),
            "--frames",
            "2",
            "--seed",
            "1",
            "--width",
            "96",
            "--height",
            "32",
            "--scale-intrinsics",
            "--pitch-deg",
            "1.5",
            "--height-m",
            "1.8",
            "--drive",
            "7",
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    drive = tmp_path / "2011_09_26" / "2011_09_26_drive_0007_sync"
    cam = kitti.read_drive(drive).camera("02")
    assert (cam.width, cam.height) == (96, 32)
    assert cam.intrinsics.camera_matrix[0, 0] == pytest.approx(721.5377 * 96 / 1242)
    assert cam.extrinsics.pitch_deg == pytest.approx(1.5) and cam.extrinsics.height_m == pytest.approx(1.8)
    assert "wrote 2 frames" in capsys.readouterr().out


def test_synth_command_rejects_bad_values(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--frames", "1", "--pitch-deg", "80"]) == 2
    assert "pitch_deg" in capsys.readouterr().err
