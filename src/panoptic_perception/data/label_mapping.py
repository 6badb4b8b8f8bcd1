"""Map a dataset's categories onto the model's label space (config/datasets/*.yaml).

A mapping lists source category id -> target class NAME (names make the YAML checkable by eye
and survive reordering of the target space). Sources not listed become VOID (ignored in
training and evaluation). Several sources may land on one target:
- a stuff target gets ONE segment per image (the panoptic convention), so the sources' segments
  are merged;
- a thing target keeps each instance; a source region without instances (a stuff class or a
  crowd region) mapped onto a thing target becomes a crowd region of that class.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from panoptic_perception.config import load_dataclass, named_config_file
from panoptic_perception.data.panoptic_io import Segment
from panoptic_perception.data.targets import dense_index, segment_geometry
from panoptic_perception.errors import ConfigError
from panoptic_perception.labels import LabelSpace, load_label_space
from panoptic_perception.paths import CONFIG_DIR


@dataclass
class LabelMappingConfig:
    name: str
    target: str = "cityscapes"  # label space the model uses
    description: str = ""
    mapping: Dict[int, str] = field(default_factory=dict)  # source category id -> target class name
    source_things: List[int] = field(default_factory=list)  # source categories that have instances


class LabelMapping:
    """A loaded mapping with its target label space; `apply` remaps one image."""

    def __init__(self, config: LabelMappingConfig, where: str = "label mapping") -> None:
        self.config = config
        self.space: LabelSpace = load_label_space(config.target)
        names = {c.name: c.id for c in self.space.categories}
        self.to_target: Dict[int, int] = {}
        for src, name in config.mapping.items():
            if name not in names:
                raise ConfigError(
                    f"{where}: source {src} maps to '{name}', which is not a class of label "
                    f"space {self.space.name} ({', '.join(names)})"
                )
            self.to_target[int(src)] = names[name]
        self.source_things = set(config.source_things)

    @classmethod
    def identity(cls, target: str = "cityscapes") -> LabelMapping:
        space = load_label_space(target)
        return cls(
            LabelMappingConfig(
                name=f"{space.name} (identity)",
                target=target,
                mapping={c.id: c.name for c in space.categories},
                source_things=space.thing_ids,
            )
        )

    def target_of(self, source_category: int) -> Optional[int]:
        return self.to_target.get(int(source_category))

    def apply(
        self, panoptic: np.ndarray, segments: Sequence[Segment]
    ) -> Tuple[np.ndarray, List[Segment]]:
        """Remapped (panoptic int32 [H, W], segments in target ids with measured area / bbox)."""
        panoptic = np.asarray(panoptic)
        thing_targets = set(self.space.thing_ids)
        new_id = np.zeros(len(segments) + 1, dtype=np.int64)  # dense index -> output segment id
        out: Dict[int, Segment] = {}
        stuff_owner: Dict[int, int] = {}  # target stuff class -> its one segment id
        for k, seg in enumerate(segments):
            target = self.target_of(seg.category_id)
            if target is None:
                continue  # stays VOID
            if target in thing_targets:
                crowd = bool(seg.iscrowd) or bool(self.source_things and seg.category_id not in self.source_things)
                out_id = int(seg.id)
                out[out_id] = Segment(out_id, target, iscrowd=crowd, score=seg.score)
            else:
                out_id = stuff_owner.setdefault(target, int(seg.id))
                if out_id not in out:
                    out[out_id] = Segment(out_id, target, score=seg.score)
            new_id[k + 1] = out_id
        mapped = new_id[dense_index(panoptic, [s.id for s in segments])].astype(np.int32)
        ids = sorted(out)
        area, boxes = segment_geometry(mapped, ids)
        result = []
        for seg_id, a, box in zip(ids, area.tolist(), boxes.tolist()):
            if a == 0:
                continue
            seg = out[seg_id]
            result.append(replace(seg, area_px=int(a), bbox_xywh=tuple(int(v) for v in box)))
        return mapped, result


@cache
def load_label_mapping(name_or_path: str) -> LabelMapping:
    """Load config/datasets/NAME.yaml (or a path)."""
    path = named_config_file(name_or_path, CONFIG_DIR / "datasets", "label mapping")
    return LabelMapping(load_dataclass(LabelMappingConfig, path), where=str(path))
