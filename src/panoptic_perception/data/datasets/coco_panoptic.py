"""COCO panoptic (the generic format): panoptic_{split}.json + panoptic_{split}/ PNGs + images."""

from __future__ import annotations

from pathlib import Path

from panoptic_perception.data.datasets.base import CocoPanopticDataset
from panoptic_perception.data.label_mapping import LabelMapping, load_label_mapping


def coco_panoptic(
    json_path: str | Path,
    png_dir: str | Path,
    image_dir: str | Path,
    mapping: LabelMapping | str = "coco_panoptic",
) -> CocoPanopticDataset:
    """Any COCO-panoptic dataset; `mapping` is a LabelMapping or a config/datasets name.

    For COCO itself: annotations/panoptic_val2017.json, annotations/panoptic_val2017/, val2017/.
    """
    if isinstance(mapping, str):
        mapping = load_label_mapping(mapping)
    return CocoPanopticDataset(json_path, png_dir, image_dir, mapping)
