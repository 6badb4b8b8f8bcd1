"""Reading text input files with the errors a user needs: which file (and line, field), what is wrong."""
from __future__ import annotations

import math
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


def parse_finite(token: str, name: str, where: str) -> float:
    """A finite number from one field of a text line; InputError naming `where` and the field otherwise."""
    try:
        value = float(token)
    except ValueError:
        raise InputError(f"{where}: field '{name}' is not a number: '{token}'") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: field '{name}' is not finite: '{token}'")
    return value
