"""Fake detectron2 model-zoo weights: random arrays with the real Panoptic FPN R-50 layout (the manifest
recorded from detectron2's own model), written the way the model zoo writes its .pkl files."""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
from repo_paths import FIXTURES

from panoptic_perception.model.detectron2_import import CELL_ANCHORS

MANIFEST = FIXTURES / "detectron2_panoptic_fpn_r50_manifest.json"


def manifest_entries() -> list:
    return [(name, tuple(shape)) for name, shape in json.loads(MANIFEST.read_text())["arrays"]]


def d2_cell_anchors(size_px: float, aspect_ratios=(0.5, 1.0, 2.0)) -> np.ndarray:
    """detectron2's DefaultAnchorGenerator.generate_cell_anchors for one size, as float32 [A, 4]."""
    rows = []
    for ratio in aspect_ratios:
        w = math.sqrt(size_px ** 2 / ratio)
        h = ratio * w
        rows.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return np.array(rows, dtype=np.float32)


def fake_detectron2_arrays(seed: int = 0) -> dict:
    """Random float32 arrays with the manifest's names and shapes, scaled like trained weights so a
    forward pass through 50 layers stays finite (FrozenBN variances positive); the anchor buffers
    hold detectron2's anchors for sizes 32..512."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in manifest_entries():
        if name.startswith(CELL_ANCHORS):
            arrays[name] = d2_cell_anchors(32 * 2 ** int(name.rsplit(".", 1)[1]))
            continue
        if name.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("norm.weight"):
            value = rng.uniform(0.5, 1.0, shape)
        elif len(shape) > 1:
            value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        else:
            value = 0.01 * rng.standard_normal(shape)
        arrays[name] = value.astype(np.float32)
    return arrays


def write_model_zoo_pkl(path: Path, arrays: dict) -> Path:
    # detectron2's model-zoo layout: a pickled dict of numpy arrays under "model".
    with path.open("wb") as handle:
        pickle.dump({"model": arrays, "__author__": "Detectron2 Model Zoo"}, handle)
    return path
