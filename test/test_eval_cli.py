"""`python -m panoptic_perception eval` end to end on COCO panoptic files the test writes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from panoptic_perception import cli
from panoptic_perception.benchmarks.eval import synth_frame
from panoptic_perception.data.panoptic_io import PanopticWriter, segments_from_map
from panoptic_perception.errors import InputError
from panoptic_perception.eval.pq import PQAccumulator, evaluate_dirs
from panoptic_perception.labels import load_label_space

SPACE = load_label_space("cityscapes")


def _write(tmp_path, frames, kind):
    with PanopticWriter(tmp_path / f"{kind}.json", tmp_path / kind, SPACE) as writer:
        for name, ids, segs in frames:
            cats = {s["id"]: s["category_id"] for s in segs}
            crowd = [s["id"] for s in segs if s.get("iscrowd")]
            writer.add(name, f"{name}.jpg", ids, segments_from_map(ids, cats, crowd=crowd))
    return tmp_path / f"{kind}.json", tmp_path / kind


@pytest.fixture()
def dataset(tmp_path):
    rng = np.random.default_rng(3)
    gts, preds, acc = [], [], PQAccumulator(SPACE)
    for i in range(4):
        gt, gt_segs, pred, pred_segs = synth_frame(rng, 60, 160)
        gts.append((f"f{i}", gt, gt_segs))
        preds.append((f"f{i}", pred, pred_segs))
        acc.add(gt, gt_segs, pred, pred_segs)
    gt_json, gt_dir = _write(tmp_path, gts, "gt")
    pred_json, pred_dir = _write(tmp_path, preds, "pred")
    return tmp_path, gt_json, gt_dir, pred_json, pred_dir, acc.result()


def _argv(gt_json, gt_dir, pred_json, pred_dir, *extra):
    return ["eval", "--gt-json", str(gt_json), "--gt-dir", str(gt_dir), "--pred-json", str(pred_json),
            "--pred-dir", str(pred_dir), *extra]


def test_cli_prints_and_writes_the_in_memory_numbers(dataset, capsys):
    tmp_path, gt_json, gt_dir, pred_json, pred_dir, expected = dataset
    out_json = tmp_path / "out" / "pq.json"
    argv = _argv(gt_json, gt_dir, pred_json, pred_dir, "--json", str(out_json), "--workers", "2")
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "Things" in text and "Stuff" in text and "mIoU" in text and "car" in text
    assert f"{expected.all.pq:.2f}" in text
    data = json.loads(out_json.read_text())
    assert data["All"]["pq"] == pytest.approx(expected.all.pq, abs=1e-5)
    assert data["Things"]["sq"] == pytest.approx(expected.things.sq, abs=1e-5)
    assert data["miou"] == pytest.approx(expected.miou, abs=1e-5)
    assert data["num_images"] == 4
    car = next(c for c in data["per_class"] if c["name"] == "car")
    assert car["tp"] == expected.class_by_name("car").tp
    assert 0 < expected.all.pq < 100


def test_gt_against_itself_is_100(dataset):
    _, gt_json, gt_dir, _, _, _ = dataset
    res = evaluate_dirs(gt_json, gt_dir, gt_json, gt_dir, workers=1)
    assert res.all.pq == pytest.approx(100.0, abs=1e-9) and res.miou == pytest.approx(100.0, abs=1e-9)


def test_missing_files_are_named(dataset, capsys):
    tmp_path, gt_json, gt_dir, pred_json, pred_dir, _ = dataset
    assert cli.main(_argv(gt_json, gt_dir, tmp_path / "nope.json", pred_dir)) == 2
    assert "nope.json" in capsys.readouterr().err
    (pred_dir / "f2.png").unlink()
    with pytest.raises(InputError, match="prediction PNG for image f2 not found"):
        evaluate_dirs(gt_json, gt_dir, pred_json, pred_dir)
    with pytest.raises(InputError, match="folder not found"):
        evaluate_dirs(gt_json, tmp_path / "nodir", pred_json, pred_dir)


def test_image_without_prediction_is_named(dataset):
    _, gt_json, gt_dir, pred_json, pred_dir, _ = dataset
    data = json.loads(pred_json.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != "f1"]
    pred_json.write_text(json.dumps(data))
    with pytest.raises(InputError, match="image f1 .* has no prediction"):
        evaluate_dirs(gt_json, gt_dir, pred_json, pred_dir)


def test_segment_without_info_and_unknown_category_are_named(dataset):
    _, gt_json, gt_dir, pred_json, pred_dir, _ = dataset
    data = json.loads(pred_json.read_text())
    removed = data["annotations"][0]["segments_info"].pop()
    pred_json.write_text(json.dumps(data))
    with pytest.raises(InputError, match=rf"image f0: segment id\(s\) \[{removed['id']}\].*no segments_info"):
        evaluate_dirs(gt_json, gt_dir, pred_json, pred_dir, workers=2)
    data["annotations"][0]["segments_info"].append(dict(removed, category_id=99))
    pred_json.write_text(json.dumps(data))
    with pytest.raises(InputError, match="unknown category id 99"):
        evaluate_dirs(gt_json, gt_dir, pred_json, pred_dir)


def test_size_mismatch_is_named(dataset):
    _, gt_json, gt_dir, pred_json, pred_dir, _ = dataset
    from PIL import Image

    png = pred_dir / "f3.png"
    Image.open(png).crop((0, 0, 100, 60)).save(png)
    with pytest.raises(InputError, match=r"f3.png is 100x60"):
        evaluate_dirs(gt_json, gt_dir, pred_json, pred_dir)
