"""A panoptic segmentation given as segment ids (ground truth, a PNG) -> the fusion output contract.

GroundProjector.project reads the fusion's static-shape tables ("segment_map" with segment id =
slot + 1, per-slot category / is_thing / score / valid). Ground truth comes as arbitrary segment
ids with a category per id; this renumbers them into slots, so grids can be built from the truth
without the network (tests, benchmarks, evaluation of the geometry alone).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import numpy as np

from panoptic_perception.errors import InputError
from panoptic_perception.labels import LabelSpace


def fusion_outputs_from_panoptic(panoptic: np.ndarray, categories: Mapping[int, int], label_space: LabelSpace,
                                 score: float = 1.0) -> Tuple[Dict[str, Any], Dict[int, int]]:
    """(H, W) segment ids (0 void) and {segment id: category id} -> (fusion outputs as CPU torch
    tensors, {segment id: its slot id in outputs["segment_map"]}). Every segment gets `score`."""
    import torch

    panoptic = np.asarray(panoptic)
    if panoptic.ndim != 2 or not np.issubdtype(panoptic.dtype, np.integer):
        raise InputError(f"panoptic must be a 2-D integer array of segment ids, got {panoptic.dtype} "
                         f"{panoptic.shape}")
    if not 0.0 <= score <= 1.0:
        raise InputError(f"score must be within [0, 1], got {score}")
    ids = np.unique(panoptic)
    ids = ids[ids != 0]
    missing = [int(i) for i in ids if int(i) not in categories]
    if missing:
        raise InputError(f"panoptic segment ids without a category: {missing[:10]}")
    category = np.array([categories[int(i)] for i in ids], dtype=np.int64)
    bad = category[(category < 0) | (category >= label_space.num_classes)]
    if bad.size:
        raise InputError(f"category ids {sorted(set(bad.tolist()))} are not in label space {label_space.name} "
                         f"({label_space.num_classes} classes)")
    # the image's ids are a subset of `ids`, so searchsorted finds each one's slot exactly
    slot_map = np.searchsorted(ids, panoptic) + 1
    slot_map[panoptic == 0] = 0
    is_thing = np.array([label_space.categories[c].is_thing for c in category.tolist()], dtype=bool)
    outputs = {
        "segment_map": torch.from_numpy(slot_map.astype(np.int32)),
        "segment_category": torch.from_numpy(category),
        "segment_is_thing": torch.from_numpy(is_thing),
        "segment_score": torch.full((len(ids),), float(score), dtype=torch.float32),
        "segment_valid": torch.ones(len(ids), dtype=torch.bool),
    }
    return outputs, {int(i): k + 1 for k, i in enumerate(ids.tolist())}
