"""Output paths of the CLI commands, checked before any work is done.

An evaluation or conversion that runs for minutes and then dies on its output path with a Python
traceback wastes the run; every command checks its outputs first and fails with one `error:` line
(ConfigError, exit 2). The check really creates what is missing and a probe file, then removes
them: permission bits say nothing for root or for /proc, /sys and read-only mounts.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from panoptic_perception.errors import ConfigError


def check_writable(path: Optional[Path], option: str, folder: bool = False) -> None:
    """ConfigError naming `option` unless `path` (a file, or with `folder` a folder) can be written.
    None (an optional output not given) passes. Leaves the file system as it found it."""
    if path is None:
        return
    path = Path(path)
    if not folder and path.is_dir():
        raise ConfigError(f"{option} {path} is a folder, not a file")
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder")
    target = path if folder else path.parent
    missing = []
    existing = target
    while not existing.exists():
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {path} cannot be written: {existing} is not a folder")
    created = []
    try:
        for folder_path in reversed(missing):
            folder_path.mkdir()
            created.append(folder_path)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=target)
        os.close(fd)
        os.unlink(probe)
        if path.is_file() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
    except OSError as exc:
        raise ConfigError(f"{option} {path} cannot be written: {exc.strerror or exc}") from exc
    finally:
        for folder_path in reversed(created):
            try:
                folder_path.rmdir()
            except OSError:
                pass
