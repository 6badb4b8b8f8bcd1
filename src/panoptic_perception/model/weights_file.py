"""Getting a weights file onto disk and naming it: download (http(s) / file URLs) and sha256."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping

import numpy as np

from panoptic_perception.errors import ConfigError, InputError, ModelFileError

URL_SCHEMES = ("http", "https", "file")
_MAX_LISTED = 12


def listing(items: List[str]) -> str:
    """At most a dozen names, then how many more: error messages stay readable."""
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def named_numeric_arrays(entries: Mapping[Any, Any], source: Path, skip: Callable[[Any], bool]
                         ) -> Dict[str, np.ndarray]:
    """name -> numpy array of a weights mapping (tensors converted); entries `skip` accepts are left
    out, anything else that is not a named numeric array fails with one error listing them all."""
    arrays: Dict[str, np.ndarray] = {}
    bad: List[str] = []
    for name, value in entries.items():
        if skip(name):
            continue
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        if not isinstance(name, str) or not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            bad.append(f"{name!r} ({type(value).__name__})")
            continue
        arrays[name] = value
    if bad:
        raise ModelFileError(f"{source}: entries that are not named numeric arrays: {listing(bad)}")
    return arrays


def is_url(text: str) -> bool:
    return urllib.parse.urlparse(str(text)).scheme in URL_SCHEMES


def url_file_name(url: str) -> str:
    """The file name a download of `url` is saved under."""
    return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "checkpoint"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, directory: Path, timeout_s: float = 60.0) -> Path:
    """Fetch url into a new file in `directory` (kept only when complete); InputError naming the URL."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in URL_SCHEMES:
        raise ConfigError(f"--url must be an http(s):// or file:// URL, got {url!r}")
    name = url_file_name(url)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".download", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle, urllib.request.urlopen(url, timeout=timeout_s) as response:
            shutil.copyfileobj(response, handle, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        os.unlink(tmp_name)
        reason = getattr(exc, "reason", None) or exc
        raise InputError(f"could not download {url}: {reason}") from exc
    target = directory / name
    os.replace(tmp_name, target)
    return target
