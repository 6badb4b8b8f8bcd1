"""WIDTHxHEIGHT command-line arguments: parsing them and applying an input size to a model config.

One parser for every command and benchmark (`--input-size`, `--image-size`, `--sizes`), so a bad
size fails the same way everywhere: argparse names the argument and says what it wanted.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from typing import List, Optional, Tuple

from panoptic_perception.errors import ConfigError


def size_arg(text: str) -> Tuple[int, int]:
    """argparse type: "1344x448" -> (1344, 448); both positive."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like WIDTHxHEIGHT (e.g. 640x192), got {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def size_list_arg(text: str) -> List[Tuple[int, int]]:
    """argparse type: "640x192,1242x375" -> [(640, 192), (1242, 375)]."""
    return [size_arg(part) for part in text.split(",")]


def with_input_size(config, size: Optional[Tuple[int, int]]):
    """A model or pipeline config at another static input size (None: unchanged); ConfigError naming
    --input-size."""

    if size is None:
        return config
    width, height = size
    try:
        return dataclasses.replace(config, input_width=width, input_height=height)
    except ValueError as exc:
        raise ConfigError(f"--input-size {width}x{height}: {exc}") from exc
