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
            cats = {s.id: s.category_id for s in segs}
            crowd = [s.id for s in segs if s.iscrowd]
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


# -- eval --model --compare-fusion: Table 1 of the Inria report (per class) for several fusions of one checkpoint --


@pytest.fixture(scope="module")
def drives(tmp_path_factory):
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter

    root = tmp_path_factory.mktemp("synth_eval")
    DriveWriter(root, small_config(256, 128), seed=21).write(2)
    return root


LOW_SCORE = 0.05


@pytest.fixture(scope="module")
def head_model(tiny_model, tmp_path_factory):
    """The tiny network with a conv head whose weights are not the initial sharpening (fusion.mode conv_head)."""
    import dataclasses

    import torch

    from panoptic_perception.model.checkpoint import load_checkpoint, save_checkpoint
    from panoptic_perception.model.panoptic_fpn import build_model
    from panoptic_perception.model.panoptic_head import STATE_PREFIX

    state, config, _ = load_checkpoint(tiny_model)
    # a random network scores every class near 1/9: a low threshold lets its detections into the fusion
    config = dataclasses.replace(config, fusion=dataclasses.replace(config.fusion, mode="conv_head",
                                                                    instance_score_threshold=LOW_SCORE))
    head = build_model(config).fusion.conv_head
    with torch.no_grad():
        head.reduce_bias.fill_(-1.0)  # a lower threshold than 0.5: refined masks differ from jsis's
    state = {**state, **{STATE_PREFIX + k: v for k, v in head.state_dict().items()}}
    path = tmp_path_factory.mktemp("head") / "head.pt"
    save_checkpoint(path, state, config, {"note": "tests only"})
    return path


def _model_eval(model, drives, *extra, max_frames="2"):
    return ["eval", "--model", str(model), "--data", str(drives), "--max-frames", max_frames, *extra]


def _pipeline_eval(model, drives, **fusion_overrides) -> dict:
    import dataclasses

    from panoptic_perception.data.datasets import DatasetConfig, build_dataset
    from panoptic_perception.eval.report import result_to_dict
    from panoptic_perception.eval.run import evaluate_pipeline
    from panoptic_perception.pipeline import Pipeline, PipelineConfig, load_pipeline_config

    runtime = dataclasses.replace(load_pipeline_config().runtime, backend="torch", precision="fp32",
                                  warmup_frames=0)
    pipeline = Pipeline(PipelineConfig(model_path=str(model), runtime=runtime, project_grid=False,
                                       fusion_overrides=fusion_overrides))
    dataset = build_dataset(DatasetConfig(root=str(drives)))
    return json.loads(json.dumps(result_to_dict(evaluate_pipeline(pipeline, dataset, SPACE, 2))))


@pytest.mark.slow
def test_compare_fusion_scores_each_mode_as_plain_eval_does(head_model, tiny_model, drives, tmp_path, capsys):
    modes = "panoptic_fpn,jsis,conv_head"
    out_json, out_md = tmp_path / "cmp.json", tmp_path / "cmp.md"
    assert cli.main(_model_eval(head_model, drives, "--compare-fusion", modes, "--json", str(out_json),
                                "--markdown", str(out_md))) == 0
    text = capsys.readouterr().out
    assert "PQ panoptic_fpn" in text and "IoU conv_head" in text and "road" in text
    data = json.loads(out_json.read_text())
    assert data["modes"] == modes.split(",") and data["model"] == str(head_model)
    results = data["results"]
    assert all(results[m]["num_images"] == 2 for m in data["modes"])

    # Each mode scores as the Pipeline loading a checkpoint of that fusion does (same runtime):
    # conv_head is the head checkpoint's own fusion, panoptic_fpn the network checkpoint.
    assert _pipeline_eval(head_model, drives)["per_class"] == results["conv_head"]["per_class"]
    fpn = _pipeline_eval(tiny_model, drives, instance_score_threshold=LOW_SCORE)
    assert fpn["per_class"] == results["panoptic_fpn"]["per_class"]
    # the rules differ: this head claims pixels the jsis rule leaves to stuff
    thing_counts = [[(c["tp"], c["fp"], c["iou"]) for c in results[m]["per_class"] if c["isthing"]]
                    for m in data["modes"]]
    assert thing_counts[1] != thing_counts[2]

    markdown = out_md.read_text()
    assert "| class | kind | GT | PQ panoptic_fpn | PQ jsis | PQ conv_head |" in markdown
    assert "| fusion | PQ | SQ | RQ |" in markdown and "| conv_head |" in markdown


def test_compare_fusion_without_a_trained_head_names_the_training_config(tiny_model, drives, capsys):
    assert cli.main(_model_eval(tiny_model, drives, "--compare-fusion", "jsis,conv_head")) == 2
    assert "train_panoptic_head.yaml" in capsys.readouterr().err


def test_compare_fusion_arguments_are_checked(tiny_model, drives, capsys):
    assert cli.main(_model_eval(tiny_model, drives, "--compare-fusion", "jsis,heuristic")) == 2
    assert "heuristic" in capsys.readouterr().err
    assert cli.main(_model_eval(tiny_model, drives, "--compare-fusion", "jsis,jsis")) == 2
    assert "twice" in capsys.readouterr().err
    assert cli.main(["eval", "--model", str(tiny_model), "--data", str(drives), "--markdown", "x.md"]) == 2
    assert "--compare-fusion" in capsys.readouterr().err


def test_comparison_tables_mark_the_best_fusion_per_class(dataset):
    from panoptic_perception.eval.report import comparison_to_dict, format_comparison, format_comparison_markdown

    *_, noisy = dataset
    rng = np.random.default_rng(3)
    perfect = PQAccumulator(SPACE)
    for _ in range(4):
        gt, gt_segs, _, _ = synth_frame(rng, 60, 160)
        perfect.add(gt, gt_segs, gt, gt_segs)
    results = {"exact": perfect.result(), "noisy": noisy}
    markdown = format_comparison_markdown(results)
    car = next(line for line in markdown.splitlines() if line.startswith("| car |"))
    cells = [c.strip() for c in car.strip("|").split("|")]
    assert cells[3] == "**100.00**" and not cells[4].startswith("**")  # PQ exact, PQ noisy
    assert cells[5] == "**100.00**"  # IoU exact
    absent = [c.name for c in noisy.per_class if c.tp + c.fp + c.fn == 0
              and results["exact"].class_by_name(c.name).tp == 0]
    assert absent and all(f"| {name} |" not in markdown for name in absent)
    text = format_comparison(results)
    assert "100.00*" in text and f"{noisy.all.pq:.2f}" in text
    data = comparison_to_dict(results)
    assert data["modes"] == ["exact", "noisy"] and data["results"]["exact"]["All"]["pq"] == pytest.approx(100.0)


def test_prediction_json_without_categories_is_scored_with_the_ground_truths(dataset, capsys):
    tmp_path, gt_json, gt_dir, pred_json, pred_dir, expected = dataset
    data = json.loads(pred_json.read_text())
    del data["categories"]  # panopticapi takes the categories from the ground truth
    bare = tmp_path / "pred_bare.json"
    bare.write_text(json.dumps(data))
    assert cli.main(_argv(gt_json, gt_dir, bare, pred_dir, "--json", str(tmp_path / "pq.json"))) == 0
    scores = json.loads((tmp_path / "pq.json").read_text())
    assert scores["All"]["pq"] == pytest.approx(expected.all.pq, abs=1e-5)  # JSON keeps 6 decimals
    del data["annotations"]
    bare.write_text(json.dumps(data))
    assert cli.main(_argv(gt_json, gt_dir, bare, pred_dir)) == 2
    assert "no 'annotations' list" in capsys.readouterr().err


def test_min_thing_area_is_checked_reported_and_recorded(tiny_model, drives, tmp_path, capsys):
    out_json = tmp_path / "small.json"
    assert cli.main(_model_eval(tiny_model, drives, "--min-thing-area-px", "64", "--json", str(out_json),
                                max_frames="1")) == 0
    assert "ground-truth things under 64 px counted as crowd (void)" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["min_thing_area_px"] == 64
    assert cli.main(_model_eval(tiny_model, drives, "--min-thing-area-px", "-1")) == 2
    assert "--min-thing-area-px must be >= 0" in capsys.readouterr().err
    assert cli.main(_model_eval(tiny_model, drives, "--min-thing-area-px", "64", "--compare-fusion", "jsis")) == 2
    assert "--min-thing-area-px goes with --model" in capsys.readouterr().err
