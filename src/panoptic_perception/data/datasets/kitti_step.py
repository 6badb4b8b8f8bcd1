"""KITTI-STEP (Weber et al. 2021) panoptic maps, as deeplab2's STEP tools lay them out.

  ROOT/images/{split}/SEQ(4 digits)/FRAME(6 digits).png          (KITTI tracking images)
  ROOT/panoptic_maps/{split}/SEQ/FRAME.png    R = semantic (Cityscapes train id, 255 void),
                                              G * 256 + B = instance id (0: no instance)
Segment ids here are (semantic + 1) * 65536 + instance: unique, never 0, and fit a 24-bit PNG.
Thing pixels with instance 0 (STEP leaves crowds without ids) become a crowd region of their
class.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from panoptic_perception.data.datasets.base import Sample, read_rgb
from panoptic_perception.data.label_mapping import LabelMapping, load_label_mapping
from panoptic_perception.data.panoptic_io import Segment, read_8bit_bgr_png
from panoptic_perception.errors import InputError

VOID_SEMANTIC = 255
_SEM_STRIDE = 65536


def read_step_png(path: str | Path) -> Tuple[np.ndarray, np.ndarray]:
    """(semantic uint8-valued int32 [H, W], instance int32 [H, W]) of one STEP panoptic PNG."""
    bgr = read_8bit_bgr_png(path, "KITTI-STEP panoptic PNG")
    semantic = bgr[..., 2].astype(np.int32)
    instance = bgr[..., 1].astype(np.int32) * 256 + bgr[..., 0].astype(np.int32)
    return semantic, instance


def step_to_panoptic(
    semantic: np.ndarray, instance: np.ndarray, thing_ids: set
) -> Tuple[np.ndarray, List[Segment]]:
    """Semantic + instance maps -> (segment-id map, segments in STEP's semantic ids)."""
    panoptic = np.where(semantic == VOID_SEMANTIC, 0, (semantic + 1) * _SEM_STRIDE + instance).astype(
        np.int32
    )
    ids = np.unique(panoptic)
    ids = ids[ids != 0]
    segments = []
    for seg_id in ids.tolist():
        sem, inst = seg_id // _SEM_STRIDE - 1, seg_id % _SEM_STRIDE
        segments.append(
            Segment(id=seg_id, category_id=sem, iscrowd=sem in thing_ids and inst == 0)
        )
    return panoptic, segments


class KittiStepDataset:
    def __init__(
        self, root: str | Path, split: str = "train", mapping: LabelMapping | str = "kitti_step"
    ) -> None:
        if isinstance(mapping, str):
            mapping = load_label_mapping(mapping)
        self.mapping = mapping
        self.root = Path(root)
        label_dir = self.root / "panoptic_maps" / split
        self.image_dir = self.root / "images" / split
        if not label_dir.is_dir():
            raise InputError(f"KITTI-STEP panoptic maps not found: {label_dir}")
        self.frames = sorted(label_dir.glob("*/*.png"))
        if not self.frames:
            raise InputError(f"no KITTI-STEP panoptic PNGs in {label_dir}/SEQ/")
        self._things = set(mapping.source_things) or set(mapping.space.thing_ids)

    @property
    def label_space(self):
        return self.mapping.space

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Sample:
        label_path = self.frames[index]
        seq, frame = label_path.parent.name, label_path.stem
        image_path = self.image_dir / seq / f"{frame}.png"
        semantic, instance = read_step_png(label_path)
        image = read_rgb(image_path)
        if image.shape[:2] != semantic.shape:
            raise InputError(
                f"KITTI-STEP {seq}/{frame}: image {image_path} is {image.shape[1]}x{image.shape[0]} "
                f"but {label_path} is {semantic.shape[1]}x{semantic.shape[0]}"
            )
        # semantic ids the mapping does not list (e.g. 255 already handled) become VOID there
        panoptic, segments = step_to_panoptic(semantic, instance, self._things)
        panoptic, segments = self.mapping.apply(panoptic, segments)
        return {
            "image": image,
            "panoptic": panoptic,
            "segments": segments,
            "image_id": f"{seq}_{frame}",
            "image_path": str(image_path),
            "sequence": seq,
        }
