"""`python -m panoptic_perception import-weights`: files, file:// URLs, bad input; the result in the Pipeline."""
from __future__ import annotations

import numpy as np
import pytest
from detectron2_fakes import fake_detectron2_arrays, write_model_zoo_pkl

from panoptic_perception.cli import build_parser, main
from panoptic_perception.geometry.camera import Camera, Extrinsics, Intrinsics
from panoptic_perception.model.checkpoint import load_checkpoint
from panoptic_perception.pipeline import Pipeline, PipelineConfig
from panoptic_perception.runtime.config import RuntimeConfig


@pytest.fixture(scope="module")
def model_zoo_pkl(tmp_path_factory):
    return write_model_zoo_pkl(tmp_path_factory.mktemp("zoo") / "model_final_c10459.pkl", fake_detectron2_arrays())


@pytest.fixture(scope="module")
def imported_pt(tmp_path_factory, model_zoo_pkl):
    out = tmp_path_factory.mktemp("models") / "panoptic_fpn_r50_coco.pt"
    assert main(["import-weights", "--from", "detectron2", str(model_zoo_pkl), "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_import_from_file_writes_a_self_describing_checkpoint(imported_pt, capsys):
    _, config, meta = load_checkpoint(imported_pt)
    assert config.label_space == "coco_panoptic" and config.input_format == "BGR"
    assert (config.input_width, config.input_height, config.resize) == (1344, 416, "fit_pad")
    assert meta["source"] == "detectron2" and meta["source_url"] is None


def test_import_from_file_url(tmp_path, model_zoo_pkl, capsys):
    out = tmp_path / "from_url.pt"
    url = model_zoo_pkl.resolve().as_uri()
    assert main(["import-weights", "--from", "detectron2", "--url", url, "--out", str(out),
                 "--input-size", "1024x512", "--download-dir", str(tmp_path / "dl")]) == 0
    assert "all consumed" in capsys.readouterr().out
    _, config, meta = load_checkpoint(out)
    assert meta["source_url"] == url and (config.input_width, config.input_height) == (1024, 512)
    assert (tmp_path / "dl" / "model_final_c10459.pkl").is_file()


@pytest.mark.parametrize("make_args, fragment", [
    (lambda d, pkl: [str(d / "absent.pkl")], "not found"),
    (lambda d, pkl: [str(_write(d / "cut.pkl", pkl.read_bytes()[:4096]))], "truncated or corrupt"),
    (lambda d, pkl: [str(_write(d / "junk.pth", b"PK\x03\x04 not a zip at all"))], "truncated or corrupt"),
    (lambda d, pkl: ["--url", (d / "absent.pkl").as_uri()], "could not download"),
    (lambda d, pkl: ["--url", "ftp://example.org/x.pkl"], "http(s):// or file://"),
    (lambda d, pkl: [str(pkl), "--url", pkl.as_uri()], "exactly one of"),
    (lambda d, pkl: [], "exactly one of"),
    (lambda d, pkl: [str(pkl), "--config", "no_such_model"], "unknown model config"),
    (lambda d, pkl: [str(pkl), "--input-size", "1000x448"], "multiple of 32"),
])
def test_bad_input_fails_with_a_named_reason(tmp_path, model_zoo_pkl, capsys, make_args, fragment):
    out = tmp_path / "out.pt"
    code = main(["import-weights", "--from", "detectron2", *make_args(tmp_path, model_zoo_pkl), "--out", str(out)])
    assert code != 0
    assert fragment in capsys.readouterr().err
    assert not out.exists()


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.slow
def test_wrong_layout_lists_the_names(tmp_path, capsys):
    arrays = fake_detectron2_arrays()
    arrays.pop("backbone.fpn_output4.bias")
    arrays["roi_heads.keypoint_head.score_lowres.weight"] = np.zeros((512, 17, 4, 4), np.float32)
    pkl = write_model_zoo_pkl(tmp_path / "keypoints.pkl", arrays)
    assert main(["import-weights", "--from", "detectron2", str(pkl), "--out", str(tmp_path / "o.pt")]) != 0
    err = capsys.readouterr().err
    assert "backbone.fpn_output4.bias" in err and "roi_heads.keypoint_head.score_lowres.weight" in err


def test_argparse_rejects_unknown_source_and_non_pt_out(tmp_path, model_zoo_pkl, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["import-weights", "--from", "mmdet", str(model_zoo_pkl), "--out", "x.pt"])
    assert info.value.code != 0
    assert main(["import-weights", "--from", "detectron2", str(model_zoo_pkl), "--out", str(tmp_path / "x.pkl")]) != 0
    assert "--out must be a .pt" in capsys.readouterr().err


@pytest.mark.slow
def test_imported_model_runs_in_the_pipeline_with_coco_names(imported_pt, drawn_texts):
    # The checkpoint alone configures everything (label space, BGR, mean, fit_pad); only the input size
    # is made small for a CPU test.
    pipeline = Pipeline(PipelineConfig(model_path=str(imported_pt), input_width=448, input_height=192,
                                       runtime=RuntimeConfig(backend="torch", device="cpu", warmup_frames=0)))
    assert pipeline.label_space.name == "coco_panoptic" and pipeline.label_space.num_classes == 133
    assert pipeline.grid_config_path().endswith("grid_coco_panoptic.yaml")
    rgb = np.random.default_rng(0).integers(0, 256, (375, 1242, 3), dtype=np.uint8)  # a KITTI frame
    camera = Camera(Intrinsics.kitti(), Extrinsics(height_m=1.65))
    result = pipeline.process(rgb, camera)  # projection with the COCO grid classes
    assert result.segment_map.shape == (375, 1242)
    assert set(np.unique(result.grid.occupancy)) <= {-1, 0, 100}
    names = pipeline.label_space.names
    assert all(s.category_name == names[s.category_id] for s in result.segments)
    things = [s for s in result.segments if s.is_thing]
    assert things, "random weights still give confident detections; none would leave the overlay untested"

    from panoptic_perception.ros.visualization import draw_overlay

    texts = drawn_texts
    overlay = draw_overlay(rgb, result.category_map, result.segment_map, result.segments, pipeline.label_space)
    assert overlay.shape == rgb.shape
    drawn = {text.rsplit(" ", 1)[0] for text in texts}
    assert drawn == {s.category_name for s in things} and drawn <= set(names[:80])
