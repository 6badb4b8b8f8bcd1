"""The restricted unpickler reads dicts of numpy arrays and refuses anything that could run code."""
from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from panoptic_perception.errors import ModelFileError
from panoptic_perception.model.safe_pickle import ALLOWED_GLOBALS, load_restricted, loads_restricted


def _weights() -> dict:
    rng = np.random.default_rng(0)
    return {
        "model": {
            "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "conv.bias": np.arange(4, dtype=np.float64),
            "count": np.array([1, 2, 3], dtype=np.int64),
            "flags": np.array([True, False]),
            "fortran": np.asfortranarray(rng.standard_normal((3, 5))),
            "empty": np.zeros((0, 7), dtype=np.float32),
        },
        "__author__": "Detectron2 Model Zoo",
        "matching_heuristics": True,
        "nested": [1, 2.5, None, ("a", b"raw"), {"k": np.float32(1.5)}],
    }


def _assert_same(got, want) -> None:
    assert type(got) is type(want)
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            _assert_same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            _assert_same(a, b)
    else:
        assert got == want


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_reads_numpy_weights_every_protocol(protocol):
    # protocol 2 stores bytes through _codecs.encode (Python 3 writing a Python 2 compatible pickle)
    want = _weights()
    _assert_same(loads_restricted(pickle.dumps(want, protocol=protocol)), want)


def test_reads_file(tmp_path):
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(_weights()))
    got = load_restricted(path)
    assert np.array_equal(got["model"]["conv.weight"], _weights()["model"]["conv.weight"])


class _SystemPayload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalPayload:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


def test_code_executing_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"model": {"w": np.zeros(2)}, "x": _SystemPayload(str(marker))})
    # sanity: the payload is real - plain pickle would run it
    assert b"system" in evil
    path = tmp_path / "evil.pkl"
    path.write_bytes(evil)
    with pytest.raises(ModelFileError) as info:
        load_restricted(path)
    message = str(info.value)
    assert "refused" in message and "system" in message and str(path) in message
    assert not marker.exists()


def test_builtins_are_refused():
    with pytest.raises(ModelFileError, match=r"builtins\.eval"):
        loads_restricted(pickle.dumps([_EvalPayload()]))


def test_codecs_only_with_latin1():
    # A hand-made protocol-2 stream calling _codecs.encode with another codec.
    stream = b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x05\x00\x00\x00rot13q\x02\x86q\x03Rq\x04."
    with pytest.raises(ModelFileError, match="latin-1"):
        loads_restricted(stream)


def test_object_arrays_are_refused():
    data = pickle.dumps({"w": np.array([1, "two"], dtype=object)})
    with pytest.raises(ModelFileError, match="dtype object"):
        loads_restricted(data)


def test_persistent_ids_are_refused():
    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage0" if isinstance(obj, bytearray) else None

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump({"w": bytearray(b"x")})
    with pytest.raises(ModelFileError, match="persistent ids"):
        loads_restricted(buffer.getvalue())


def test_truncated_and_missing_files(tmp_path):
    data = pickle.dumps(_weights())
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt") as info:
        load_restricted(path)
    assert str(path) in str(info.value)
    with pytest.raises(ModelFileError, match="not found"):
        load_restricted(tmp_path / "absent.pkl")


def test_allow_list_is_only_numpy_rebuilding():
    allowed = set(ALLOWED_GLOBALS)
    builtins = {name for name in allowed if name.split(".")[0] in ("builtins", "__builtin__")}
    assert builtins == {"builtins.bytes", "__builtin__.bytes"}
    modules = {name.rsplit(".", 1)[0] for name in allowed - builtins}
    assert modules <= {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                       "numpy._core.numeric", "_codecs"}


def test_bytes_only_empty():
    stream = b"\x80\x02c__builtin__\nbytes\nK\x05\x85R."  # bytes(5): not how pickle writes b""
    with pytest.raises(ModelFileError, match="without arguments"):
        loads_restricted(stream)
