"""Checkpoints: round trip, refusal of code-executing pickles, clear errors for broken files."""
from __future__ import annotations

import os
import pickle
import zipfile

import pytest
import torch

from panoptic_perception.config import to_dict
from panoptic_perception.errors import InputError, ModelFileError
from panoptic_perception.model.checkpoint import apply_state_dict, load_checkpoint, save_checkpoint
from panoptic_perception.model.config import BackboneConfig, FPNConfig, ModelConfig
from panoptic_perception.model.fpn import build_fpn_backbone


def _small_model_and_config():
    cfg = ModelConfig(input_width=128, input_height=64, backbone=BackboneConfig(name="resnet18", freeze_at=2),
                      fpn=FPNConfig(channels=32))
    torch.manual_seed(0)
    return build_fpn_backbone(cfg), cfg


def test_round_trip_restores_weights_config_and_meta(tmp_path):
    model, cfg = _small_model_and_config()
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model.state_dict(), cfg,
                           {"iteration": 1200, "dataset": "synth", "pq": 0.91, "tags": ["a", "b"]})
    state, loaded_cfg, meta = load_checkpoint(path)
    assert loaded_cfg == cfg and to_dict(loaded_cfg) == to_dict(cfg)
    assert meta == {"iteration": 1200, "dataset": "synth", "pq": 0.91, "tags": ["a", "b"]}
    assert set(state) == set(model.state_dict())
    fresh, _ = _small_model_and_config()
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)  # make it differ, so the load below has to do the work
    apply_state_dict(fresh, state, str(path))
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x)["p2"], model.eval()(x)["p2"])
    assert not [p for p in tmp_path.rglob("*.tmp")]  # atomic write leaves no temp file


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ModelFileError, match="nothere.pt"):
        load_checkpoint(tmp_path / "nothere.pt")


def test_truncated_and_garbage_files_are_model_file_errors(tmp_path):
    model, cfg = _small_model_and_config()
    good = save_checkpoint(tmp_path / "good.pt", model.state_dict(), cfg, {})
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint at all" * 10)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (truncated, garbage, empty):
        with pytest.raises(ModelFileError, match=path.name):
            load_checkpoint(path)


def test_foreign_and_config_invalid_files_are_refused(tmp_path):
    plain = tmp_path / "plain_state_dict.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    with pytest.raises(ModelFileError, match="not a panoptic_perception checkpoint"):
        load_checkpoint(plain)
    model, cfg = _small_model_and_config()
    bad_cfg = to_dict(cfg)
    bad_cfg["backbone"]["name"] = "vgg16"
    bad = tmp_path / "badcfg.pt"
    torch.save({"format": "panoptic_perception.checkpoint", "version": 1, "state_dict": {},
                "config": bad_cfg, "meta": {}}, bad)
    with pytest.raises(ModelFileError, match=r"badcfg\.pt.*vgg16"):
        load_checkpoint(bad)
    future = tmp_path / "future.pt"
    torch.save({"format": "panoptic_perception.checkpoint", "version": 99, "state_dict": {},
                "config": to_dict(cfg), "meta": {}}, future)
    with pytest.raises(ModelFileError, match="version 99"):
        load_checkpoint(future)


class _Payload:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_code_executing_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    _, cfg = _small_model_and_config()
    evil_zip = tmp_path / "evil.pt"
    torch.save({"format": "panoptic_perception.checkpoint", "version": 1, "state_dict": {},
                "config": to_dict(cfg), "meta": {"x": _Payload(str(marker))}}, evil_zip)
    evil_raw = tmp_path / "evil_raw.pkl"
    evil_raw.write_bytes(pickle.dumps(_Payload(str(marker)), protocol=2))
    assert zipfile.is_zipfile(evil_zip) and not marker.exists()
    for path in (evil_zip, evil_raw):
        with pytest.raises(ModelFileError, match=rf"{path.name} refused.*GLOBAL"):
            load_checkpoint(path)
        assert not marker.exists()
    # Sanity: the payload really does execute under a plain unpickler, so the test can fail.
    pickle.loads(evil_raw.read_bytes())
    assert marker.exists()


def test_save_rejects_non_plain_meta_and_non_tensors(tmp_path):
    model, cfg = _small_model_and_config()
    with pytest.raises(InputError, match="meta.obj"):
        save_checkpoint(tmp_path / "a.pt", model.state_dict(), cfg, {"obj": object()})
    with pytest.raises(InputError, match="'x'"):
        save_checkpoint(tmp_path / "b.pt", {"x": [1, 2]}, cfg, {})
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "b.pt").exists()


def test_apply_state_dict_names_missing_and_mismatched(tmp_path):
    model, _ = _small_model_and_config()
    state = dict(model.state_dict())
    state.pop("fpn_lateral2.weight")
    state["fpn_output2.bias"] = torch.zeros(7)
    state["extra.weight"] = torch.zeros(1)
    pattern = r"src\.pt.*missing: fpn_lateral2\.weight.*unexpected: extra\.weight.*fpn_output2\.bias"
    with pytest.raises(ModelFileError, match=pattern):
        apply_state_dict(model, state, "src.pt")
