from dataclasses import dataclass, field
from typing import List, Literal, Optional, Tuple

import pytest

from panoptic_perception.config import from_dict, to_dict
from panoptic_perception.errors import ConfigError
from panoptic_perception.labels import load_label_space


@dataclass
class Inner:
    size: Tuple[int, int] = (640, 192)
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer:
    name: str
    scale: float = 1.0
    inner: Inner = field(default_factory=Inner)
    tags: List[str] = field(default_factory=list)
    limit: Optional[int] = None


def test_round_trip_and_defaults():
    cfg = from_dict(Outer, {"name": "x", "scale": 2, "inner": {"size": [10, 20]}})
    assert cfg.scale == 2.0 and isinstance(cfg.scale, float)
    assert cfg.inner == Inner(size=(10, 20), mode="a")
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize("data, fragment", [
    ({"name": "x", "scael": 2}, "unknown key(s) scael"),
    ({"name": "x", "inner": {"mode": "c"}}, "cfg.inner.mode: 'c' is not one of"),
    ({"name": "x", "inner": {"size": [1, 2, 3]}}, "cfg.inner.size: expected 2 values"),
    ({"name": 3}, "cfg.name: expected a string"),
    ({"name": "x", "scale": "big"}, "cfg.scale: expected a number"),
    ({"name": "x", "limit": 1.5}, "cfg.limit: expected an integer"),
    ({}, "missing required key 'name'"),
])
def test_bad_values_name_the_key(data, fragment):
    with pytest.raises(ConfigError) as exc:
        from_dict(Outer, data, where="cfg")
    assert fragment in str(exc.value)


def test_cityscapes_label_space():
    space = load_label_space("cityscapes")
    assert space.num_classes == 19
    assert space.names[13] == "car"
    assert space.thing_ids == [11, 12, 13, 14, 15, 16, 17, 18]
    assert space.colors().shape == (19, 3)


def test_unknown_label_space_lists_known():
    with pytest.raises(ConfigError, match="known: .*cityscapes"):
        load_label_space("mapillary")
