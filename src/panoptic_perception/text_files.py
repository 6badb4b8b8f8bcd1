"""Reading a text input file with the one error a user needs: which file, and missing or unreadable."""
from __future__ import annotations

from pathlib import Path

from panoptic_perception.errors import InputError


def read_text_file(path: str | Path, what: str) -> str:
    """The file's text; InputError "`what` not found: PATH" or "`what` PATH is unreadable: why"."""
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError as exc:
        raise InputError(f"{what} not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path} is unreadable: {exc}") from exc
