"""detectron2 Panoptic FPN weights <-> our checkpoints.

detectron2 writes two formats: the model zoo's .pkl (a pickled dict {"model": {name: ndarray},
"__author__": ...}; Caffe2-era files add "matching_heuristics") and training's .pth (a torch zip
with {"model": state_dict, "optimizer": ..., ...} or a bare state_dict). Both are read without
executing code: .pkl through `safe_pickle`, .pth through `torch.load(weights_only=True)`. The
format is decided by the file's content, not its name.

Our modules carry detectron2's names (backbone.bottom_up.*, backbone.fpn_*, proposal_generator.*,
roi_heads.*, sem_seg_head.*), so the mapping is by name with one exception: detectron2's COCO
semantic head predicts the merged "things" class at channel 0 and the stuff classes at 1..S,
while our "stuff_plus_things" mode puts stuff first and things last; the predictor's output
rows are rotated on import and back on export.

Every checkpoint key must be consumed, every model tensor filled and every shape equal, or the
import fails with one error listing all offenders. Two kinds of detectron2 buffers are not
weights: pixel_mean / pixel_std (persistent in some versions) are consumed into the model
config; the RPN's cell anchors (`proposal_generator.anchor_generator.cell_anchors.{i}`, persistent
in the detectron2 that trained the model zoo, so its files carry them) are consumed by checking
that they equal the anchors our config generates - anchors of other sizes mean another config.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from panoptic_perception.errors import ModelFileError
from panoptic_perception.labels import load_label_space
from panoptic_perception.model.checkpoint import read_foreign_weights_file, save_checkpoint
from panoptic_perception.model.config import ModelConfig
from panoptic_perception.model.weights_file import listing, named_numeric_arrays, sha256_of

SEM_SEG_PREDICTOR = "sem_seg_head.predictor"
CELL_ANCHORS = "proposal_generator.anchor_generator.cell_anchors."
_ANCHOR_TOLERANCE_PX = 1e-3
PIXEL_STAT_KEYS = ("pixel_mean", "pixel_std")
_METADATA_KEYS = ("__author__", "matching_heuristics")


# ----------------------------------------------------------------------------------- reading


def read_detectron2_checkpoint(path: str | Path) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """(name -> float array, info) from a detectron2 .pkl or .pth; ModelFileError naming the file."""
    path = Path(path)
    payload, kind = read_foreign_weights_file(path, "detectron2 checkpoint")
    model = payload.get("model", payload)
    if not isinstance(model, Mapping) or not model:
        raise ModelFileError(f"{path}: 'model' is not a non-empty mapping of names to arrays")
    arrays = named_numeric_arrays(model, path, lambda name: name in _METADATA_KEYS and model is payload)
    author = payload.get("__author__")
    info = {"format": kind, "file": path.name, "author": author if isinstance(author, str) else None,
            "num_arrays": len(arrays)}
    return arrays, info


# ----------------------------------------------------------------------------------- mapping


def _sem_seg_permutation(config: ModelConfig, num_rows: int) -> Optional[np.ndarray]:
    """Row order that turns detectron2's predictor rows into ours (None: identity)."""
    if config.semantic_head.mode != "stuff_plus_things":
        return None
    # detectron2: [things, stuff_1..stuff_S]; ours: [stuff_1..stuff_S, things].
    return np.concatenate([np.arange(1, num_rows), [0]])


def _expected_sem_rows(config: ModelConfig) -> int:
    labels = load_label_space(config.label_space)
    if config.semantic_head.mode == "stuff_plus_things":
        return len(labels.stuff_ids) + 1
    return labels.num_classes


def _check_pixel_stats(arrays: Mapping[str, np.ndarray]) -> List[str]:
    return [f"{k} {tuple(arrays[k].shape)} (expected 3 values)"
            for k in PIXEL_STAT_KEYS if k in arrays and arrays[k].size != 3]


def expected_cell_anchors(config: ModelConfig) -> Dict[str, np.ndarray]:
    """detectron2's cell-anchor buffers for config.rpn: one [A, 4] array per FPN level."""
    from panoptic_perception.model.anchors import cell_anchors

    return {f"{CELL_ANCHORS}{level}": cell_anchors(size, config.rpn.aspect_ratios).numpy()
            for level, size in enumerate(config.rpn.anchor_sizes)}


def _check_cell_anchors(arrays: Mapping[str, np.ndarray], config: ModelConfig
                        ) -> Tuple[List[str], List[str]]:
    """(unconsumed anchor keys, mismatches) of the checkpoint's cell anchors against config.rpn."""
    expected = expected_cell_anchors(config)
    unconsumed, mismatched = [], []
    for name in sorted(k for k in arrays if k.startswith(CELL_ANCHORS)):
        want = expected.get(name)
        if want is None:
            unconsumed.append(name)
        elif arrays[name].shape != want.shape:
            mismatched.append(f"{name} {tuple(arrays[name].shape)} vs config {tuple(want.shape)}")
        elif not np.allclose(arrays[name], want, rtol=0.0, atol=_ANCHOR_TOLERANCE_PX):
            mismatched.append(f"{name} holds other anchors than config rpn.anchor_sizes "
                              f"{list(config.rpn.anchor_sizes)} / aspect_ratios {list(config.rpn.aspect_ratios)}")
    return unconsumed, mismatched


def config_with_pixel_stats(config: ModelConfig, arrays: Mapping[str, np.ndarray]) -> ModelConfig:
    """The config with pixel_mean / pixel_std taken from the checkpoint when it carries them."""
    changes = {k: tuple(float(v) for v in arrays[k].reshape(-1)) for k in PIXEL_STAT_KEYS
               if k in arrays and arrays[k].size == 3}
    return dataclasses.replace(config, **changes) if changes else config


def detectron2_to_state_dict(arrays: Mapping[str, np.ndarray], config: ModelConfig,
                             source: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """Map detectron2 arrays onto the state_dict of the model `config` builds; strict.

    ModelFileError lists every unconsumed checkpoint key, unfilled model tensor and shape mismatch.
    """
    from panoptic_perception.model.panoptic_fpn import build_model

    own = build_model(config).state_dict()
    anchor_unconsumed, anchor_mismatched = _check_cell_anchors(arrays, config)
    unconsumed = sorted(k for k in arrays if k not in own and k not in PIXEL_STAT_KEYS
                        and not k.startswith(CELL_ANCHORS)) + anchor_unconsumed
    unfilled = sorted(k for k in own if k not in arrays)
    mismatched = [f"{k} {tuple(arrays[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in arrays and tuple(arrays[k].shape) != tuple(own[k].shape)]
    mismatched += _check_pixel_stats(arrays) + anchor_mismatched
    sem_rows = _expected_sem_rows(config)
    predictor = f"{SEM_SEG_PREDICTOR}.weight"
    if predictor in arrays and arrays[predictor].shape[0] != sem_rows and not mismatched:
        mismatched.append(f"{predictor} has {arrays[predictor].shape[0]} classes; label space "
                          f"{config.label_space} in mode {config.semantic_head.mode} needs {sem_rows}")
    problems = []
    for label, items in (("checkpoint keys not consumed", unconsumed), ("model tensors not filled", unfilled),
                         ("shape mismatches", mismatched)):
        if items:
            problems.append(f"{label} ({len(items)}): {listing(items)}")
    if problems:
        raise ModelFileError(f"detectron2 weights from {source} do not fit model config "
                             f"({config.backbone.name}, label space {config.label_space}): " + "; ".join(problems))
    state_dict: Dict[str, torch.Tensor] = {}
    for name, reference in own.items():
        value = np.asarray(arrays[name])
        if name.startswith(SEM_SEG_PREDICTOR + "."):
            order = _sem_seg_permutation(config, value.shape[0])
            if order is not None:
                value = value[order]
        state_dict[name] = torch.from_numpy(np.ascontiguousarray(value)).to(reference.dtype)
    return state_dict


def export_detectron2_state_dict(state_dict: Mapping[str, torch.Tensor], config: ModelConfig
                                 ) -> Dict[str, np.ndarray]:
    """Our state_dict -> detectron2's names and layouts (the inverse of `detectron2_to_state_dict`),
    with the cell anchors of config.rpn, as the model zoo's files hold them.

    pixel statistics are not written: they live in the config, as in the model zoo's files.
    """
    arrays: Dict[str, np.ndarray] = dict(expected_cell_anchors(config))
    for name, tensor in state_dict.items():
        value = tensor.detach().cpu().numpy()
        if name.startswith(SEM_SEG_PREDICTOR + "."):
            order = _sem_seg_permutation(config, value.shape[0])
            if order is not None:
                value = value[np.argsort(order)]
        arrays[name] = np.ascontiguousarray(value)
    return arrays


# ------------------------------------------------------------------------------ the command


@dataclasses.dataclass
class ImportResult:
    out_path: Path
    config: ModelConfig
    num_arrays: int
    sha256: str


def import_detectron2(checkpoint: str | Path, out_path: str | Path, config: ModelConfig,
                      url: Optional[str] = None) -> ImportResult:
    """Read a detectron2 checkpoint, map it onto `config`'s model and write our checkpoint."""
    checkpoint = Path(checkpoint)
    arrays, info = read_detectron2_checkpoint(checkpoint)
    config = config_with_pixel_stats(config, arrays)
    state_dict = detectron2_to_state_dict(arrays, config, source=str(checkpoint))
    digest = sha256_of(checkpoint)
    meta = {"source": "detectron2", "source_file": info["file"], "source_format": info["format"],
            "source_author": info["author"], "source_sha256": digest, "source_url": url,
            "num_arrays": info["num_arrays"]}
    out_path = save_checkpoint(out_path, state_dict, config, meta)
    return ImportResult(Path(out_path), config, info["num_arrays"], digest)
