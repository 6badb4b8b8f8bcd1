"""Runtime backends on CPU with a stand-in network: config, selection, torch / onnxruntime, fallbacks."""
from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from standin import standin_frame, standin_model

from panoptic_perception.config import from_dict
from panoptic_perception.errors import ConfigError, InputError, ModelFileError
from panoptic_perception.model.config import ModelConfig
from panoptic_perception.paths import CONFIG_DIR
from panoptic_perception.runtime import (
    RuntimeConfig,
    choose_backend,
    create_backend_for_module,
    load_runtime_config,
)

MODEL_CONFIG = ModelConfig(input_width=128, input_height=64)
SHAPE = (1, 3, 64, 128)


def _backend(tmp_path, **changes):
    config = RuntimeConfig(engine_cache_dir=str(tmp_path), warmup_frames=0, **changes)
    return create_backend_for_module(standin_model(), MODEL_CONFIG, config, weights_digest="w-standin")


def test_shipped_runtime_yaml_loads():
    config = load_runtime_config(CONFIG_DIR / "runtime.yaml")
    assert config.backend == "auto" and config.precision == "fp16" and config.require_full_compilation


@pytest.mark.parametrize("data, message", [
    ({"backend": "tensorrtt"}, "backend"),
    ({"precision": "fp8"}, "precision"),
    ({"workspace_gb": 0}, "workspace_gb"),
    ({"num_thread": 2}, "num_thread"),
    ({"cuda_graphs": "yes"}, "cuda_graphs"),
])
def test_bad_runtime_config_is_named(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(RuntimeConfig, data, where="runtime")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only choice; this machine has CUDA")
def test_auto_on_cpu_picks_a_cpu_backend_and_says_why():
    name, device, reason = choose_backend(RuntimeConfig(backend="auto"))
    assert device.type == "cpu" and name in ("onnxruntime", "torch")
    assert "no usable GPU" in reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_tensorrt_without_cuda_is_a_clear_error():
    with pytest.raises(ConfigError, match="tensorrt.*no CUDA device"):
        choose_backend(RuntimeConfig(backend="tensorrt"))
    with pytest.raises(ConfigError, match="cuda"):
        choose_backend(RuntimeConfig(backend="torch", device="cuda"))


def _assert_same_outputs(out, ref, atol):
    assert list(out) == list(ref)
    for key, value in ref.items():
        assert out[key].dtype == value.dtype, key
        assert out[key].shape == value.shape, key
        if value.is_floating_point():
            torch.testing.assert_close(out[key], value, atol=atol, rtol=1e-4, msg=key)
        else:
            assert torch.equal(out[key], value), key


def test_torch_backend_matches_eager(tmp_path):
    frame = standin_frame()
    with torch.no_grad():
        ref = standin_model()(frame)
    backend = _backend(tmp_path, backend="torch", device="cpu")
    assert backend.name == "torch" and backend.device == torch.device("cpu")
    assert backend.precision == "fp32", "fp16 on CPU must fall back to fp32"
    _assert_same_outputs(backend.infer(frame), ref, atol=0.0)


@pytest.mark.slow
def test_onnxruntime_backend_matches_eager_and_reuses_cache(tmp_path):
    frame = standin_frame()
    with torch.no_grad():
        ref = standin_model()(frame)
    first = _backend(tmp_path, backend="onnxruntime")
    assert first.name == "onnxruntime" and "exporter" in first.reason
    _assert_same_outputs(first.infer(frame), ref, atol=1e-4)
    second = _backend(tmp_path, backend="onnxruntime")
    assert "from cache" in second.reason
    _assert_same_outputs(second.infer(frame), ref, atol=1e-4)
    # a prebuilt file runs as is through onnx_path
    prebuilt = _backend(tmp_path / "other", backend="onnxruntime", onnx_path=str(first.artifact))
    assert "prebuilt" in prebuilt.reason
    _assert_same_outputs(prebuilt.infer(frame), ref, atol=1e-4)


def test_engine_path_places_artifact_and_manifest(tmp_path):
    target = tmp_path / "deploy" / "standin.onnx"
    backend = _backend(tmp_path, backend="onnxruntime", engine_path=str(target))
    assert backend.artifact == target and target.is_file() and (target.parent / "standin.json").is_file()
    with pytest.raises(ConfigError, match="must end with .onnx"):
        _backend(tmp_path, backend="onnxruntime", engine_path=str(tmp_path / "x.ep"))


def test_input_is_validated(tmp_path):
    backend = _backend(tmp_path, backend="torch", device="cpu")
    with pytest.raises(InputError, match="shape"):
        backend.infer(torch.zeros(1, 3, 32, 128))
    with pytest.raises(InputError, match="dtype"):
        backend.infer(torch.zeros(SHAPE, dtype=torch.uint8))
    with pytest.raises(InputError, match="torch.Tensor"):
        backend.infer(torch.zeros(SHAPE).numpy())


def test_missing_or_corrupt_onnx_file_is_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        _backend(tmp_path, backend="onnxruntime", onnx_path=str(tmp_path / "absent.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf")
    with pytest.raises(ModelFileError, match="bad.onnx"):
        _backend(tmp_path, backend="onnxruntime", onnx_path=str(bad))


def test_auto_falls_back_to_torch_when_onnx_export_fails(tmp_path, monkeypatch, caplog):
    import panoptic_perception.runtime.onnx_export as onnx_export

    def broken_export(*args, **kwargs):
        raise ModelFileError("ONNX export failed with both exporters: simulated")

    monkeypatch.setattr(onnx_export, "export_onnx", broken_export)
    monkeypatch.setattr("panoptic_perception.runtime.select.choose_backend",
                        lambda cfg: ("onnxruntime", torch.device("cpu"), "auto: test"))
    with caplog.at_level(logging.WARNING, logger="panoptic_perception.runtime"):
        backend = _backend(tmp_path, backend="auto")
    assert backend.name == "torch"
    assert "onnxruntime failed" in backend.reason and "simulated" in backend.reason
    # named explicitly, the same failure is an error, never a silent substitution
    with pytest.raises(ModelFileError, match="simulated"):
        _backend(tmp_path, backend="onnxruntime")


def test_int8_is_refused_with_reason(tmp_path):
    with pytest.raises(ConfigError, match="int8"):
        _backend(tmp_path, backend="torch", device="cpu", precision="int8")


def test_runtime_config_round_trips_through_dict():
    config = RuntimeConfig(backend="torch", num_threads=2, engine_path="/x/y.ep")
    assert from_dict(RuntimeConfig, dataclasses.asdict(config)) == config


@pytest.mark.slow
def test_truncated_engine_is_rebuilt_and_the_reason_says_why(tmp_path):
    target = tmp_path / "deploy" / "standin.onnx"
    _backend(tmp_path, backend="onnxruntime", engine_path=str(target))
    size = target.stat().st_size
    target.write_bytes(target.read_bytes()[:100])  # a copy cut short
    backend = _backend(tmp_path, backend="onnxruntime", engine_path=str(target))
    # Backend.reason is what the node logs on screen at start-up and publishes as backend_reason
    assert f"has 100 bytes, manifest says {size} (truncated?)" in backend.reason
    assert "from cache" in _backend(tmp_path, backend="onnxruntime", engine_path=str(target)).reason
