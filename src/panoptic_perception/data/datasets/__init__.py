"""Dataset loaders: COCO panoptic, Cityscapes panoptic, KITTI-STEP and the synthetic world.

All yield the same sample dict (see `base.py`): "image" uint8 [H, W, 3] RGB, "panoptic" int32
[H, W], "segments" list of panoptic_io.Segment in the model's category ids, "image_id", "image_path".
`build_dataset(DatasetConfig)` is what the training config uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from panoptic_perception.data.datasets.base import CocoPanopticDataset, Sample, read_rgb
from panoptic_perception.data.datasets.cityscapes import cityscapes_panoptic
from panoptic_perception.data.datasets.coco_panoptic import coco_panoptic
from panoptic_perception.data.datasets.kitti_step import KittiStepDataset
from panoptic_perception.data.datasets.synthetic import SyntheticDataset, find_drives
from panoptic_perception.errors import ConfigError

__all__ = [
    "CocoPanopticDataset",
    "DatasetConfig",
    "KittiStepDataset",
    "Sample",
    "SyntheticDataset",
    "build_dataset",
    "cityscapes_panoptic",
    "coco_panoptic",
    "find_drives",
    "read_rgb",
]


@dataclass
class DatasetConfig:
    kind: Literal["synthetic", "cityscapes", "kitti_step", "coco_panoptic"] = "synthetic"
    root: str = ""  # synthetic: output dir of `synth`; cityscapes / kitti_step: dataset root
    split: str = "train"  # cityscapes / kitti_step
    train_ids: bool = False  # cityscapes: read the `_trainId` variant of createPanopticImgs
    # coco_panoptic: explicit files
    json: str = ""
    png_dir: str = ""
    image_dir: str = ""
    mapping: Optional[str] = None  # config/datasets name; default per kind

    def __post_init__(self) -> None:
        if self.kind == "coco_panoptic":
            if not (self.json and self.png_dir and self.image_dir):
                raise ValueError("coco_panoptic needs json, png_dir and image_dir")
        elif not self.root:
            raise ValueError(f"dataset kind {self.kind} needs root")


def build_dataset(config: DatasetConfig):
    """A map-style dataset (len, getitem -> Sample) for `config`."""
    if config.kind == "synthetic":
        return SyntheticDataset(config.root, mapping=config.mapping or "synthetic")
    if config.kind == "cityscapes":
        if config.mapping:
            raise ConfigError("cityscapes picks its mapping from train_ids; leave mapping unset")
        return cityscapes_panoptic(config.root, config.split, train_ids=config.train_ids)
    if config.kind == "kitti_step":
        return KittiStepDataset(config.root, config.split, mapping=config.mapping or "kitti_step")
    return coco_panoptic(
        config.json, config.png_dir, config.image_dir, mapping=config.mapping or "coco_panoptic"
    )
