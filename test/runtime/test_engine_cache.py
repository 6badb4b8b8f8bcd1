"""Engine cache: build once, load after, rebuild (with the reason) on key change or a damaged file."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from panoptic_perception.errors import ModelFileError
from panoptic_perception.model.config import ModelConfig
from panoptic_perception.runtime.engine_cache import EngineCache, make_cache_key, state_dict_digest


class StandInCompiler:
    """Counts builds; the 'engine' is a text file holding the key it was built for."""

    def __init__(self, payload: str = "engine"):
        self.builds = 0
        self.loads = 0
        self.payload = payload

    def build(self, path: Path) -> None:
        self.builds += 1
        path.write_text(f"{self.payload}#{self.builds}")

    def load(self, path: Path) -> str:
        self.loads += 1
        text = path.read_text()
        if not text.startswith(self.payload):
            raise ValueError(f"not an engine: {text[:20]!r}")
        return text


def _key(**changes) -> dict:
    fields = dict(backend="tensorrt", weights_digest="w0", model_config=ModelConfig(),
                  input_shape=(1, 3, 192, 640), precision="fp16",
                  environment={"gpu": "A", "tensorrt": "10.1"})
    fields.update(changes)
    return make_cache_key(**fields)


def test_builds_once_then_loads_from_cache(tmp_path):
    cache, compiler = EngineCache(tmp_path), StandInCompiler()
    first = cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    second = cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    assert (first.built, second.built) == (True, False)
    assert compiler.builds == 1 and second.value == first.value == "engine#1"
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["key"] == _key() and manifest["artifact"] == "m.ep"
    assert not list(tmp_path.glob("*.tmp*")), "temporary build files left behind"


@pytest.mark.parametrize("field, change, expect", [
    ("precision", "fp32", "precision fp16 -> fp32"),
    ("weights_digest", "w1", "weights w0 -> w1"),
    ("input_shape", (1, 3, 128, 256), "input_shape 1x3x192x640 -> 1x3x128x256"),
    ("environment", {"gpu": "B", "tensorrt": "10.1"}, "gpu A -> B"),
    ("model_config", ModelConfig(input_width=1280), "model_config"),
])
def test_key_change_rebuilds_and_says_why(tmp_path, caplog, field, change, expect):
    cache, compiler = EngineCache(tmp_path), StandInCompiler()
    cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    with caplog.at_level(logging.WARNING, logger="panoptic_perception.runtime"):
        result = cache.get_or_build("m", _key(**{field: change}), ".ep", compiler.build, compiler.load)
    assert result.built and compiler.builds == 2
    assert "key changed" in result.why and expect in result.why
    assert any(expect in rec.getMessage() for rec in caplog.records)
    again = cache.get_or_build("m", _key(**{field: change}), ".ep", compiler.build, compiler.load)
    assert not again.built


def test_corrupt_same_size_artifact_rebuilds(tmp_path):
    cache, compiler = EngineCache(tmp_path), StandInCompiler()
    cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    artifact = tmp_path / "m.ep"
    data = bytearray(artifact.read_bytes())
    data[0] ^= 0xFF  # same size, different bytes
    artifact.write_bytes(bytes(data))
    result = cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    assert result.built and "digest" in result.why and result.value == "engine#2"


def test_truncated_artifact_rebuilds(tmp_path):
    cache, compiler = EngineCache(tmp_path), StandInCompiler()
    cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    (tmp_path / "m.ep").write_bytes(b"eng")
    result = cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    assert result.built and "truncated" in result.why


def test_unloadable_artifact_rebuilds_once(tmp_path):
    cache = EngineCache(tmp_path)
    bad = StandInCompiler(payload="garbage")
    good = StandInCompiler()
    # a valid manifest for a file the loader rejects (e.g. written by an incompatible runtime)
    cache.get_or_build("m", _key(), ".ep", bad.build, lambda p: p.read_text())
    result = cache.get_or_build("m", _key(), ".ep", good.build, good.load)
    assert result.built and "unreadable" in result.why and good.builds == 1


@pytest.mark.parametrize("damage", ["delete_manifest", "garble_manifest", "delete_artifact"])
def test_missing_or_broken_manifest_rebuilds(tmp_path, damage):
    cache, compiler = EngineCache(tmp_path), StandInCompiler()
    cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    if damage == "delete_manifest":
        (tmp_path / "m.json").unlink()
    elif damage == "garble_manifest":
        (tmp_path / "m.json").write_text("{not json")
    else:
        (tmp_path / "m.ep").unlink()
    result = cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    assert result.built and compiler.builds == 2


def test_failed_build_keeps_the_previous_artifact(tmp_path):
    cache, compiler = EngineCache(tmp_path), StandInCompiler()
    cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)

    def crashing_build(path: Path) -> None:
        path.write_text("half an engi")
        raise RuntimeError("builder ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cache.get_or_build("m", _key(precision="fp32"), ".ep", crashing_build, compiler.load)
    assert (tmp_path / "m.ep").read_text() == "engine#1"
    assert not list(tmp_path.glob("*.tmp*"))
    assert not cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load).built


def test_empty_build_output_is_an_error(tmp_path):
    cache = EngineCache(tmp_path)
    with pytest.raises(ModelFileError, match="no file"):
        cache.get_or_build("m", _key(), ".ep", lambda p: None, lambda p: p.read_text())


def test_concurrent_starts_build_once(tmp_path):
    compiler = StandInCompiler()

    def slow_build(path: Path) -> None:
        time.sleep(0.3)
        compiler.build(path)

    results = []
    threads = [threading.Thread(target=lambda: results.append(
        EngineCache(tmp_path).get_or_build("m", _key(), ".ep", slow_build, compiler.load))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert compiler.builds == 1 and sorted(r.built for r in results) == [False, False, True]


def test_force_rebuild(tmp_path):
    cache, compiler = EngineCache(tmp_path), StandInCompiler()
    cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    result = cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load, force_rebuild=True)
    assert result.built and compiler.builds == 2


def test_state_dict_digest_is_content_based():
    a = {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(3, dtype=torch.float16), "n": torch.tensor(7)}
    reordered = {k: a[k].clone() for k in reversed(list(a))}
    assert state_dict_digest(a) == state_dict_digest(reordered)
    changed = dict(a, w=a["w"].clone())
    changed["w"][1, 2] += 1e-3
    assert state_dict_digest(changed) != state_dict_digest(a)
    reshaped = dict(a, w=a["w"].reshape(3, 2))
    assert state_dict_digest(reshaped) != state_dict_digest(a)


def test_cache_key_changes_with_the_model_code(tmp_path):
    from panoptic_perception.runtime.engine_cache import graph_code_digest, source_digest

    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code")
    before = source_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("still not code")
    assert source_digest(tmp_path) == before
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != before
    key = make_cache_key(backend="onnxruntime", weights_digest="w", model_config={"a": 1},
                         input_shape=(1, 3, 64, 64), precision="fp32")
    assert key["graph_code"] == graph_code_digest()


def test_a_killed_build_leaves_no_temp_file_after_the_next_build(tmp_path):
    cache, compiler = EngineCache(tmp_path), StandInCompiler()
    # what `export --force` killed during the build leaves: empty temp artifact and manifest
    stale = [tmp_path / ".m.k3x_9a2b.tmp.ep", tmp_path / ".m.json.q1w2e3r4.tmp"]
    other_slot = tmp_path / ".m2.k3x_9a2b.tmp.ep"
    for path in (*stale, other_slot):
        path.write_bytes(b"")
    assert cache.stale_temp_files("m") == sorted(stale)
    cache.get_or_build("m", _key(), ".ep", compiler.build, compiler.load)
    assert not any(p.exists() for p in stale)
    assert other_slot.exists(), "another slot's files are not this build's to remove"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_artifact_and_manifest_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        EngineCache(tmp_path).get_or_build("m", _key(), ".ep", StandInCompiler().build, StandInCompiler().load)
    finally:
        os.umask(old)
    assert (tmp_path / "m.ep").stat().st_mode & 0o777 == mode
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == mode
