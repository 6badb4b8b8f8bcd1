"""detectron2 Panoptic FPN R-50 weights -> our checkpoint, against the real checkpoint's manifest.

test/fixtures/detectron2_panoptic_fpn_r50_manifest.json lists the names and shapes of the arrays in
the model zoo's model_final_c10459.pkl, derived from detectron2's source (see
detectron2_manifest_source.py there). The tests write random arrays with exactly those names and
shapes into a .pkl the way detectron2 does, import it, and check nothing is left over or missing.
"""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from detectron2_fakes import d2_cell_anchors, fake_detectron2_arrays, manifest_entries, write_model_zoo_pkl

from panoptic_perception.errors import ModelFileError
from panoptic_perception.labels import load_label_space
from panoptic_perception.model.checkpoint import load_checkpoint
from panoptic_perception.model.config import load_model_config
from panoptic_perception.model.detectron2_import import (
    CELL_ANCHORS,
    detectron2_to_state_dict,
    export_detectron2_state_dict,
    import_detectron2,
    read_detectron2_checkpoint,
)
from panoptic_perception.model.panoptic_fpn import build_model
from panoptic_perception.paths import CONFIG_DIR
from panoptic_perception.runtime.model_loader import build_eval_model


@pytest.fixture(scope="module")
def d2_config():
    return load_model_config(CONFIG_DIR / "model_detectron2_r50.yaml")


@pytest.fixture(scope="module")
def d2_arrays():
    return fake_detectron2_arrays()


@pytest.fixture(scope="module")
def imported(tmp_path_factory, d2_arrays, d2_config):
    """(pkl path, our checkpoint path) imported once for the module."""
    root = tmp_path_factory.mktemp("d2")
    pkl = write_model_zoo_pkl(root / "model_final_c10459.pkl", d2_arrays)
    out = root / "panoptic_fpn_r50_coco.pt"
    result = import_detectron2(pkl, out, d2_config)
    assert result.num_arrays == 335
    return pkl, out


def test_manifest_is_the_model_zoo_layout():
    entries = manifest_entries()
    names = [n for n, _ in entries]
    assert len(entries) == 335 == len(set(names))
    by_name = dict(entries)
    assert [n for n in names if n.startswith(CELL_ANCHORS)] == [f"{CELL_ANCHORS}{i}" for i in range(5)]
    assert by_name["roi_heads.box_predictor.cls_score.weight"] == (81, 1024)  # 80 things + background
    assert by_name["roi_heads.box_predictor.bbox_pred.weight"] == (320, 1024)  # class-specific
    assert by_name["roi_heads.mask_head.predictor.weight"] == (80, 256, 1, 1)
    assert by_name["sem_seg_head.predictor.weight"] == (54, 128, 1, 1)  # 53 stuff + things
    assert by_name["backbone.bottom_up.res3.0.conv1.weight"] == (128, 256, 1, 1)  # MSRA: stride in the 1x1
    frozen_bn = [n for n in names if n.endswith(".norm.running_var")]
    assert len(frozen_bn) == 53  # stem + 48 block convs + 4 shortcuts


def test_model_has_exactly_the_manifest_layout(d2_config):
    own = {k: tuple(v.shape) for k, v in build_model(d2_config).state_dict().items()}
    weights = {n: s for n, s in manifest_entries() if not n.startswith(CELL_ANCHORS)}
    assert own == weights  # anchors are derived from the config, not stored


@pytest.mark.slow
def test_import_consumes_every_key_and_fills_every_tensor(imported, d2_arrays, d2_config):
    _, out = imported
    state_dict, config, meta = load_checkpoint(out)
    assert config == d2_config  # the checkpoint carries its config: it loads with no other flag
    assert set(state_dict) == {k for k in d2_arrays if not k.startswith(CELL_ANCHORS)}
    assert meta["source"] == "detectron2" and meta["num_arrays"] == 335
    assert meta["source_file"] == "model_final_c10459.pkl" and meta["source_author"] == "Detectron2 Model Zoo"
    for name, value in d2_arrays.items():
        if not name.startswith(("sem_seg_head.predictor", CELL_ANCHORS)):
            assert torch.equal(state_dict[name], torch.from_numpy(value)), name
    build_eval_model(config, state_dict, str(out))  # strict load


def test_semantic_predictor_things_channel_moves_last(imported, d2_arrays):
    state_dict, config, _ = load_checkpoint(imported[1])
    labels = load_label_space(config.label_space)
    weight = state_dict["sem_seg_head.predictor.weight"].numpy()
    bias = state_dict["sem_seg_head.predictor.bias"].numpy()
    d2_weight, d2_bias = d2_arrays["sem_seg_head.predictor.weight"], d2_arrays["sem_seg_head.predictor.bias"]
    # detectron2: channel 0 "things", channel i = i-th stuff class; ours: stuff in id order, things last
    assert np.array_equal(weight[-1], d2_weight[0]) and bias[-1] == d2_bias[0]
    assert np.array_equal(weight[:-1], d2_weight[1:]) and np.array_equal(bias[:-1], d2_bias[1:])
    assert labels.stuff_ids == list(range(80, 133)) and labels.thing_ids == list(range(80))


def test_export_reproduces_the_detectron2_arrays_exactly(imported, d2_arrays):
    state_dict, config, _ = load_checkpoint(imported[1])
    exported = export_detectron2_state_dict(state_dict, config)
    assert set(exported) == set(d2_arrays)
    for name, value in d2_arrays.items():
        assert exported[name].dtype == value.dtype and exported[name].shape == value.shape, name
        assert np.array_equal(exported[name], value), name


@pytest.mark.slow
@pytest.mark.parametrize("width_px, height_px", [(448, 128), (256, 128)], ids=["kitti", "cityscapes"])
def test_forward_runs_at_street_camera_sizes(imported, width_px, height_px):
    # KITTI (~3.3:1) and Cityscapes (2:1) aspect ratios, small enough for a CPU test.
    state_dict, config, _ = load_checkpoint(imported[1])
    assert config.fusion.resolution == "image"  # detectron2's postprocessing: the graph ends before the fusion
    image = torch.rand(1, 3, height_px, width_px, generator=torch.Generator().manual_seed(0)) * 255
    raw_config = dataclasses.replace(config, input_width=width_px, input_height=height_px)
    with torch.no_grad():
        raw = build_eval_model(raw_config, state_dict, "imported")(image)
    assert "segment_map" not in raw and raw["mask_rois"].shape == (100, 28, 28)
    # the same network with the fusion in the graph, at the network's size
    config = dataclasses.replace(raw_config, fusion=dataclasses.replace(config.fusion, resolution="network"))
    model = build_eval_model(config, state_dict, "imported")
    with torch.no_grad():
        out = model(image)
    torch.testing.assert_close(out["scores"], raw["scores"])
    assert out["sem_logits"].shape == (1, 54, height_px, width_px)
    assert bool(torch.isfinite(out["sem_logits"]).all()) and bool(torch.isfinite(out["mask_probs"]).all())
    assert out["segment_map"].shape == (height_px, width_px)
    classes = out["classes"][out["valid"]]
    assert bool(((classes >= 0) & (classes < 80)).all())
    categories = out["category_map"].unique()
    assert bool((((categories >= 0) & (categories < 133)) | (categories == 255)).all())


def test_pth_state_dict_with_pixel_stats(tmp_path, d2_arrays, d2_config):
    # A detectron2 training checkpoint: torch zip, {"model": tensors, ...}; some detectron2 versions
    # keep pixel_mean / pixel_std as buffers - they go into the config.
    tensors = {k: torch.from_numpy(v) for k, v in d2_arrays.items()}
    tensors["pixel_mean"] = torch.tensor([100.0, 110.0, 120.0]).view(3, 1, 1)
    tensors["pixel_std"] = torch.tensor([57.0, 57.0, 58.0]).view(3, 1, 1)
    pth = tmp_path / "model_final.pth"
    torch.save({"model": tensors, "iteration": 89999, "optimizer": {"lr": 0.02}}, pth)
    result = import_detectron2(pth, tmp_path / "out.pt", d2_config)
    assert result.config.pixel_mean == (100.0, 110.0, 120.0)
    assert result.config.pixel_std == (57.0, 57.0, 58.0)
    state_dict, config, meta = load_checkpoint(result.out_path)
    assert meta["source_format"] == "pth" and config.pixel_mean == (100.0, 110.0, 120.0)
    assert torch.equal(state_dict["backbone.fpn_output3.weight"], tensors["backbone.fpn_output3.weight"])


def _mapping_error(arrays, config) -> str:
    with pytest.raises(ModelFileError) as info:
        detectron2_to_state_dict(arrays, config, source="test.pkl")
    return str(info.value)


def test_extra_key_is_listed(d2_arrays, d2_config):
    arrays = dict(d2_arrays)
    arrays["roi_heads.keypoint_head.conv_fcn1.weight"] = np.zeros((512, 256, 3, 3), np.float32)
    message = _mapping_error(arrays, d2_config)
    assert "not consumed (1)" in message and "roi_heads.keypoint_head.conv_fcn1.weight" in message


def test_missing_key_is_listed(d2_arrays, d2_config):
    arrays = {k: v for k, v in d2_arrays.items() if not k.startswith("roi_heads.mask_head.deconv")}
    message = _mapping_error(arrays, d2_config)
    assert "not filled (2)" in message
    assert "roi_heads.mask_head.deconv.weight" in message and "roi_heads.mask_head.deconv.bias" in message


def test_wrong_shape_is_listed(d2_arrays, d2_config):
    arrays = dict(d2_arrays)
    arrays["roi_heads.box_predictor.cls_score.weight"] = np.zeros((9, 1024), np.float32)
    arrays["roi_heads.box_predictor.cls_score.bias"] = np.zeros((9,), np.float32)
    message = _mapping_error(arrays, d2_config)
    assert "shape mismatches (2)" in message
    assert "roi_heads.box_predictor.cls_score.weight (9, 1024) vs model (81, 1024)" in message


def test_checkpoint_anchors_must_match_the_config(d2_arrays, d2_config):
    arrays = dict(d2_arrays)
    arrays[f"{CELL_ANCHORS}0"] = d2_cell_anchors(16)
    assert f"{CELL_ANCHORS}0 holds other anchors" in _mapping_error(arrays, d2_config)
    arrays = dict(d2_arrays)
    arrays[f"{CELL_ANCHORS}5"] = d2_cell_anchors(1024)
    assert f"not consumed (1): {CELL_ANCHORS}5" in _mapping_error(arrays, d2_config)


def test_files_without_anchor_buffers_import(d2_arrays, d2_config):
    # later detectron2 versions do not save the anchors: they are optional
    arrays = {k: v for k, v in d2_arrays.items() if not k.startswith(CELL_ANCHORS)}
    state_dict = detectron2_to_state_dict(arrays, d2_config)
    assert len(state_dict) == 330


def test_code_carrying_pkl_is_refused(tmp_path, d2_config):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": np.zeros(1)}, "__author__": Payload()}))
    with pytest.raises(ModelFileError, match="refused"):
        read_detectron2_checkpoint(path)
    assert not marker.exists()
