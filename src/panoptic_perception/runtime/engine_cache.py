"""On-disk cache of compiled network artifacts (TensorRT programs, ONNX files).

One *slot* per (backend, model file, input size, precision): `<slot><suffix>` is the artifact and
`<slot>.json` its manifest (the full cache key, the artifact's size and BLAKE2 digest, build time).
The key includes a digest of the model code, so an updated package rebuilds too.
A slot is reused only when the manifest's key equals the requested key field by field and the
artifact's digest still matches; otherwise it is rebuilt and the log says which field changed or
what was wrong with the file. A stale engine is therefore replaced rather than piling up.

Weights enter the key as a digest of the state_dict *contents* (names, dtypes, shapes, bytes), not
the checkpoint's path + mtime: the vehicle copies model files between machines (mtime changes,
contents do not) and retraining can rewrite a file of the same size in the same second. Hashing
~45 MB (ResNet-18) / ~180 MB (ResNet-50) of weights costs well under a second, paid once per start
next to an engine load of seconds and a build of minutes.

Writes are atomic (temp file in the same folder, fsync, rename; manifest last), and a per-slot
advisory lock keeps an `export` run and a starting node from building the same slot twice.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import functools
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Generic, Iterator, Mapping, Optional, Tuple, TypeVar

import torch

from panoptic_perception.config import to_dict
from panoptic_perception.errors import ModelFileError
from panoptic_perception.runtime.base import LOG

T = TypeVar("T")
MANIFEST_FORMAT = "panoptic_perception.engine_cache"
MANIFEST_VERSION = 1
_CHUNK_BYTES = 1 << 20


def state_dict_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Content digest of a state_dict: independent of file name, location, mtime and dict order."""
    h = hashlib.blake2b(digest_size=20)
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # view as bytes: works for every dtype (bf16/fp16/bool) without a numpy round trip
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def config_digest(config: Any) -> str:
    """Digest of a (dataclass) config's plain-data form, stable across runs."""
    data = to_dict(config) if dataclasses.is_dataclass(config) else config
    return hashlib.blake2b(json.dumps(data, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()


def source_digest(folder: Path) -> str:
    """Digest of the *.py files directly in `folder` (names and contents)."""
    h = hashlib.blake2b(digest_size=12)
    for path in sorted(Path(folder).glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def graph_code_digest() -> str:
    """Digest of the source that defines the inference graph (model/*.py): a package update that
    changes the graph must rebuild cached engines even when weights and config are the same."""
    import panoptic_perception.model as model_package

    return source_digest(Path(model_package.__file__).parent)


def make_cache_key(*, backend: str, weights_digest: str, model_config: Any, input_shape: Tuple[int, ...],
                   precision: str, environment: Optional[Mapping[str, Any]] = None) -> Dict[str, str]:
    """Every field whose change must invalidate a compiled artifact, as strings."""
    key = {
        "backend": backend,
        "weights": weights_digest,
        "model_config": config_digest(model_config),
        "input_shape": "x".join(str(int(v)) for v in input_shape),
        "precision": precision,
        "torch": torch.__version__,
        "graph_code": graph_code_digest(),
    }
    for name, value in (environment or {}).items():
        key[name] = str(value)
    return key


@dataclass
class CacheResult(Generic[T]):
    value: T
    path: Path
    built: bool  # False: loaded from the cache
    why: str  # why it was (re)built, or "cache hit"
    seconds: float  # load or build+load wall time


def _umask() -> int:
    """The process umask, read without changing it (Linux); os.umask's set-and-restore elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_ordinary_file(path: str | Path) -> None:
    # mkstemp creates 0600; a cached engine is shared like any other file (a node running as another
    # user of the group must read it), so it gets what the umask gives a normal new file.
    os.chmod(path, 0o666 & ~_umask())


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _as_ordinary_file(tmp)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EngineCache:
    """Build-or-load of compiled artifacts in one folder (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def artifact_path(self, slot: str, suffix: str) -> Path:
        return self.root / f"{slot}{suffix}"

    def manifest_path(self, slot: str) -> Path:
        return self.root / f"{slot}.json"

    @contextlib.contextmanager
    def _locked(self, slot: str) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelFileError(f"engine cache folder {self.root} cannot be created: {exc}") from exc
        with open(self.root / f".{slot}.lock", "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def stale_temp_files(self, slot: str) -> list:
        """Temp files of this slot's builds (artifact and manifest) that a killed build left behind."""
        pattern = re.compile(rf"\.{re.escape(slot)}\.(json\.)?[A-Za-z0-9_]{{8}}\.tmp.*")
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if pattern.fullmatch(p.name))

    def _remove_stale_temp_files(self, slot: str) -> None:
        # Only called under the slot's lock: no live build of this slot can own one of these files.
        for path in self.stale_temp_files(slot):
            LOG.info("engine cache: removing %s left by an interrupted build", path.name)
            path.unlink(missing_ok=True)

    def check(self, slot: str, key: Mapping[str, str], suffix: str) -> Optional[str]:
        """None when the slot holds a valid artifact for `key`, else why it cannot be used."""
        artifact, manifest_path = self.artifact_path(slot, suffix), self.manifest_path(slot)
        if not manifest_path.is_file():
            return "no cached artifact" if not artifact.exists() else f"no manifest beside {artifact.name}"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            cached_key = manifest["key"]
            expected_digest = manifest["artifact_blake2b"]
            expected_bytes = int(manifest["artifact_bytes"])
            if manifest.get("format") != MANIFEST_FORMAT or not isinstance(cached_key, dict):
                raise ValueError("not an engine cache manifest")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"manifest {manifest_path.name} unreadable ({exc})"
        changed = [f"{name} {cached_key.get(name, '<absent>')!s} -> {key.get(name, '<absent>')!s}"
                   for name in sorted(set(cached_key) | set(key)) if cached_key.get(name) != key.get(name)]
        if changed:
            return "key changed: " + "; ".join(changed)
        if not artifact.is_file():
            return f"artifact {artifact.name} missing"
        size = artifact.stat().st_size
        if size != expected_bytes:
            return f"artifact {artifact.name} has {size} bytes, manifest says {expected_bytes} (truncated?)"
        if file_digest(artifact) != expected_digest:
            return f"artifact {artifact.name} digest does not match its manifest (corrupt)"
        return None

    def get_or_build(self, slot: str, key: Mapping[str, str], suffix: str,
                     build: Callable[[Path], None], load: Callable[[Path], T],
                     force_rebuild: bool = False) -> CacheResult[T]:
        """Load the slot's artifact when valid for `key`; otherwise build(tmp_path), commit, load.

        `build` writes the artifact to the path it is given; `load` turns a path into the runtime
        object and raises on an unreadable file (which triggers one rebuild).
        """
        key = {str(k): str(v) for k, v in key.items()}
        artifact = self.artifact_path(slot, suffix)
        with self._locked(slot):
            start = time.perf_counter()
            why = "rebuild requested" if force_rebuild else self.check(slot, key, suffix)
            if why is None:
                try:
                    value = load(artifact)
                    seconds = time.perf_counter() - start
                    LOG.info("engine cache: loaded %s in %.2f s", artifact, seconds)
                    return CacheResult(value, artifact, False, "cache hit", seconds)
                except Exception as exc:  # noqa: BLE001 - any load failure means: rebuild
                    why = f"cached {artifact.name} unreadable ({type(exc).__name__}: {exc})"
            LOG.warning("engine cache: building %s: %s", artifact, why)
            self._build_into(slot, key, suffix, build)
            try:
                value = load(artifact)
            except Exception as exc:  # noqa: BLE001
                raise ModelFileError(f"freshly built {artifact} cannot be loaded: {exc}") from exc
            seconds = time.perf_counter() - start
            LOG.info("engine cache: built and loaded %s in %.1f s", artifact, seconds)
            return CacheResult(value, artifact, True, why, seconds)

    def _build_into(self, slot: str, key: Mapping[str, str], suffix: str,
                    build: Callable[[Path], None]) -> None:
        artifact = self.artifact_path(slot, suffix)
        self._remove_stale_temp_files(slot)
        # same folder as the target so os.replace is an atomic rename, never a copy
        fd, tmp_name = tempfile.mkstemp(prefix=f".{slot}.", suffix=f".tmp{suffix}", dir=self.root)
        os.close(fd)
        tmp = Path(tmp_name)
        _as_ordinary_file(tmp)
        start = time.perf_counter()
        try:
            build(tmp)
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise ModelFileError(f"building {artifact.name} produced no file")
            _fsync_file(tmp)
            digest, size = file_digest(tmp), tmp.stat().st_size
            os.replace(tmp, artifact)
        finally:
            if tmp.exists():
                tmp.unlink()
        manifest = {
            "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "key": dict(key),
            "artifact": artifact.name, "artifact_bytes": size, "artifact_blake2b": digest,
            "built_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - start, 3),
        }
        _atomic_write_bytes(self.manifest_path(slot), json.dumps(manifest, indent=2, sort_keys=True).encode())
