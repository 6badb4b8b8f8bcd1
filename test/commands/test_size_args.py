"""One WIDTHxHEIGHT parser for every command and benchmark."""
from __future__ import annotations

import argparse

import pytest

from panoptic_perception.errors import ConfigError
from panoptic_perception.model.config import ModelConfig
from panoptic_perception.size_args import size_arg, size_list_arg, with_input_size


def test_sizes_parse_and_bad_ones_name_what_was_wanted():
    assert size_arg(" 1344X448 ") == (1344, 448)
    assert size_list_arg("640x192,1242x375") == [(640, 192), (1242, 375)]
    with pytest.raises(argparse.ArgumentTypeError, match="WIDTHxHEIGHT"):
        size_arg("640*192")
    with pytest.raises(argparse.ArgumentTypeError, match="positive"):
        size_arg("0x192")


def test_input_size_applies_or_names_the_argument():
    assert with_input_size(ModelConfig(), None) == ModelConfig()
    config = with_input_size(ModelConfig(), (1280, 384))
    assert (config.input_width, config.input_height) == (1280, 384)
    with pytest.raises(ConfigError, match="--input-size 65x64"):
        with_input_size(ModelConfig(), (65, 64))
