"""predict writes COCO panoptic that eval reads; bad frames are skipped, not fatal."""
from __future__ import annotations

import dataclasses
import json

import pytest

from panoptic_perception import cli


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter

    writer = DriveWriter(tmp_path_factory.mktemp("synth"), small_config(320, 96), seed=3)
    writer.write(2)
    return writer.drive


def test_predict_then_eval(drive, tiny_model, tmp_path, capsys):
    out = tmp_path / "pred"
    assert cli.main(["predict", "--model", str(tiny_model), "--input", str(drive), "--out", str(out),
                     "--backend", "torch"]) == 0
    data = json.loads((out / "panoptic.json").read_text())
    assert [a["image_id"] for a in data["annotations"]] == ["0000000000", "0000000001"]
    assert (out / "panoptic" / "0000000001.png").is_file()
    gt = drive / "gt"
    assert cli.main(["eval", "--gt-json", str(gt / "panoptic.json"), "--gt-dir", str(gt / "panoptic"),
                     "--pred-json", str(out / "panoptic.json"), "--pred-dir", str(out / "panoptic"),
                     "--json", str(tmp_path / "pq.json")]) == 0
    scores = json.loads((tmp_path / "pq.json").read_text())
    assert scores["num_images"] == 2 and 0.0 <= scores["All"]["pq"] <= 100.0


def test_truncated_image_is_skipped_with_its_name(drive, tiny_model, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes((drive / "image_02" / "data" / "0000000000.png").read_bytes())
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert cli.main(["predict", "--model", str(tiny_model), "--input", str(folder), "--out",
                     str(tmp_path / "pred"), "--backend", "torch"]) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "b.png" in printed
    assert json.loads((tmp_path / "pred" / "panoptic.json").read_text())["images"][0]["id"] == "a"


def test_bad_arguments_are_named(tmp_path, capsys):
    assert cli.main(["predict", "--input", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_eval_of_a_model_on_a_dataset(drive, tiny_model, tmp_path):
    out = tmp_path / "pq.json"
    assert cli.main(["eval", "--model", str(tiny_model), "--data", str(drive), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["num_images"] == 2 and scores["model"] == str(tiny_model)


def test_eval_arguments_must_pick_one_mode(tiny_model, tmp_path, capsys):
    assert cli.main(["eval", "--model", str(tiny_model), "--gt-json", "x"]) == 2
    assert "--model needs --data" in capsys.readouterr().err


def test_predict_takes_the_folder_synth_writes(tiny_model, tmp_path):
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter

    root = tmp_path / "synth_out"  # synth --out root: DATE/DATE_drive_XXXX_sync for each drive
    for number, seed in ((1, 3), (2, 4)):
        config = dataclasses.replace(small_config(320, 96), drive=number)
        DriveWriter(root, config, seed=seed).write(1)
    out = tmp_path / "pred"
    assert cli.main(["predict", "--model", str(tiny_model), "--input", str(root), "--out", str(out),
                     "--backend", "torch"]) == 0
    ids = [a["image_id"] for a in json.loads((out / "panoptic.json").read_text())["annotations"]]
    assert ids == ["2011_09_26_drive_0001_sync_0000000000", "2011_09_26_drive_0002_sync_0000000000"]
