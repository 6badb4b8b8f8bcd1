"""Read foreign pickles (detectron2's .pkl weights) without ever running code from the file.

A pickle is a small program: its GLOBAL / STACK_GLOBAL opcodes import any callable by name and
REDUCE calls it, so `pickle.load` on a downloaded file can run `os.system`. `RestrictedUnpickler`
resolves names only from an allow-list of exactly what a pickled dict of numpy arrays needs:

- numpy's array rebuilding: `numpy.core.multiarray._reconstruct` (`numpy._core` on NumPy 2),
  `numpy.ndarray`, `numpy.dtype`, `numpy.core.numeric._frombuffer` (protocol 5) and
  `numpy.core.multiarray.scalar` for numpy scalars;
- `_codecs.encode`, which protocol-2 pickles written by Python 3 use for every bytes object
  (the raw array buffers), admitted only with the latin-1 codec that pickle itself uses, and
  `bytes` (`__builtin__.bytes` in such pickles) called with no argument, for empty buffers.

Everything else - builtins included - is refused before it is resolved, so a payload never
runs. Containers, strings and numbers need no globals at all. After loading, arrays of Python
objects are refused as well: weights are numbers.
"""
from __future__ import annotations

import codecs
import importlib
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Tuple

import numpy as np

from panoptic_perception.errors import ModelFileError

_NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex
_LATIN1_NAMES = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"}


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if not isinstance(text, str) or str(encoding).lower() not in _LATIN1_NAMES:
        raise pickle.UnpicklingError(f"_codecs.encode is only admitted with the latin-1 codec "
                                     f"(how pickle stores bytes), got encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


def _empty_bytes(*args: Any) -> bytes:
    if args:
        raise pickle.UnpicklingError(f"bytes() is only admitted without arguments (an empty buffer), got {args!r}")
    return b""


def _numpy_core(submodule: str) -> Any:
    # By version, not by getattr(np, "_core"): NumPy 1.26 has a numpy._core compatibility package
    # too, and once anything imported it, np._core exists without its submodules as attributes.
    package = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
    return importlib.import_module(f"{package}.{submodule}")


def _numpy_reconstruct() -> Callable:
    return _numpy_core("multiarray")._reconstruct


def _numpy_scalar() -> Callable:
    return _numpy_core("multiarray").scalar


def _numpy_frombuffer() -> Callable:
    return _numpy_core("numeric")._frombuffer


def _allowed_globals() -> Dict[Tuple[str, str], Callable[[], Any]]:
    """(module, name) -> a thunk giving the object; resolved lazily, only for allowed names."""
    allowed: Dict[Tuple[str, str], Callable[[], Any]] = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: _latin1_encode,
        ("__builtin__", "bytes"): lambda: _empty_bytes,
        ("builtins", "bytes"): lambda: _empty_bytes,
    }
    # NumPy 1 writes numpy.core.multiarray, NumPy 2 numpy._core.multiarray; either may read either.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _numpy_reconstruct
        allowed[(module, "scalar")] = _numpy_scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = _numpy_frombuffer
    return allowed


ALLOWED_GLOBALS = tuple(sorted(f"{m}.{n}" for m, n in _allowed_globals()))


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only ALLOWED_GLOBALS and no persistent ids."""

    def __init__(self, file: BinaryIO, source: str = "pickle") -> None:
        # latin1: detectron2's Caffe2-era files are Python 2 pickles whose str holds raw bytes.
        super().__init__(file, encoding="latin1")
        self.source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        thunk = self._allowed.get((module, name))
        if thunk is None:
            raise pickle.UnpicklingError(
                f"{self.source} refused: it references {module}.{name}, which could run code; "
                f"only dicts, lists, tuples, strings, numbers and numpy arrays are read "
                f"(allowed globals: {', '.join(ALLOWED_GLOBALS)})")
        return thunk()

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"{self.source} refused: it uses persistent ids ({pid!r}), "
                                     "which only code-carrying formats need")


def _check_data(value: Any, where: str) -> None:
    """Only plain containers, scalars and numeric arrays may come out."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _NUMERIC_KINDS or value.dtype.hasobject:
            raise ModelFileError(f"{where}: array of dtype {value.dtype} refused (weights are numeric arrays)")
        return
    if isinstance(value, (str, bytes, int, float, bool, complex, type(None), np.generic)):
        if isinstance(value, np.generic) and value.dtype.kind not in _NUMERIC_KINDS + "SU":
            raise ModelFileError(f"{where}: numpy scalar of dtype {value.dtype} refused")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_data(key, f"{where} key")
            _check_data(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            _check_data(item, f"{where}[{i}]")
        return
    raise ModelFileError(f"{where}: {type(value).__name__} refused (not plain data)")


def loads_restricted(data: bytes, source: str = "pickle") -> Any:
    """Unpickle bytes with RestrictedUnpickler; ModelFileError naming `source` on any problem."""
    return _load(io.BytesIO(data), source)


def load_restricted(path: str | Path) -> Any:
    """Unpickle a file with RestrictedUnpickler; ModelFileError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"pickle file not found: {path}")
    with path.open("rb") as handle:
        return _load(handle, str(path))


def _load(handle: BinaryIO, source: str) -> Any:
    try:
        value = RestrictedUnpickler(handle, source).load()
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "refused" in message:
            raise ModelFileError(message) from exc
        raise ModelFileError(f"{source} is not a readable pickle (truncated or corrupt): {message}") from exc
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError,
            UnicodeDecodeError, OverflowError) as exc:
        raise ModelFileError(f"{source} is not a readable pickle (truncated or corrupt): "
                             f"{type(exc).__name__}: {exc}") from exc
    _check_data(value, source)
    return value
