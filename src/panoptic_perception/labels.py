"""Label spaces as data: id, name, is_thing, colour, loaded from config/labels/*.yaml."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import List, Tuple

import numpy as np

from panoptic_perception.config import from_dict, load_yaml, named_config_file
from panoptic_perception.errors import ConfigError
from panoptic_perception.paths import CONFIG_DIR


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    is_thing: bool
    color: Tuple[int, int, int]


@dataclass(frozen=True)
class LabelSpace:
    name: str
    categories: List[Category] = field(default_factory=list)
    ignore_id: int = 255

    def __post_init__(self) -> None:
        ids = [c.id for c in self.categories]
        if ids != list(range(len(ids))):
            raise ValueError(f"label space {self.name}: category ids must be 0..N-1 in order, got {ids}")

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def thing_ids(self) -> List[int]:
        return [c.id for c in self.categories if c.is_thing]

    @property
    def stuff_ids(self) -> List[int]:
        return [c.id for c in self.categories if not c.is_thing]

    @property
    def names(self) -> List[str]:
        return [c.name for c in self.categories]

    def colors(self) -> np.ndarray:
        """(N, 3) uint8 RGB colours indexed by category id."""
        return np.array([c.color for c in self.categories], dtype=np.uint8)

    def id_of(self, name: str) -> int:
        for c in self.categories:
            if c.name == name:
                return c.id
        raise ConfigError(f"label space {self.name} has no class named '{name}'")


@cache
def load_label_space(name_or_path: str) -> LabelSpace:
    """Load a label space by name (config/labels/NAME.yaml) or by file path."""
    path = named_config_file(name_or_path, CONFIG_DIR / "labels", "label space")
    return from_dict(LabelSpace, load_yaml(path), where=str(path))
