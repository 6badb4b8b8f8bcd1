"""`--input-size WxH`: parsing it and applying it to a model config (export, import-weights)."""
from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Optional, Tuple


def input_size_arg(text: str) -> Tuple[int, int]:
    """argparse type: "1344x448" -> (1344, 448)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"input size must look like WIDTHxHEIGHT (e.g. 640x192), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def with_input_size(model_config, size: Optional[Tuple[int, int]]):
    """The model config at another static input size (None: unchanged); ConfigError naming --input-size."""
    from panoptic_perception.errors import ConfigError

    if size is None:
        return model_config
    width, height = size
    try:
        return dataclasses.replace(model_config, input_width=width, input_height=height)
    except ValueError as exc:
        raise ConfigError(f"--input-size {width}x{height}: {exc}") from exc
