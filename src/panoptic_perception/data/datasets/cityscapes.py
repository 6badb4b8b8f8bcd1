"""Cityscapes panoptic as cityscapesScripts' createPanopticImgs writes it.

  ROOT/gtFine/cityscapes_panoptic_{split}.json      categories = Cityscapes label ids
  ROOT/gtFine/cityscapes_panoptic_{split}/CITY_SEQ_FRAME_gtFine_panoptic.png
  ROOT/leftImg8bit/{split}/CITY/CITY_SEQ_FRAME_leftImg8bit.png
With `--use-train-id` the files end in `_trainId` and the categories are train ids.
"""

from __future__ import annotations

from pathlib import Path

from panoptic_perception.data.datasets.base import CocoPanopticDataset
from panoptic_perception.data.label_mapping import load_label_mapping
from panoptic_perception.errors import InputError


def cityscapes_panoptic(
    root: str | Path, split: str = "train", train_ids: bool = False
) -> CocoPanopticDataset:
    root = Path(root)
    suffix = "_trainId" if train_ids else ""
    json_path = root / "gtFine" / f"cityscapes_panoptic_{split}{suffix}.json"
    png_dir = root / "gtFine" / f"cityscapes_panoptic_{split}{suffix}"
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise InputError(f"Cityscapes images not found: {image_dir}")
    mapping = load_label_mapping("cityscapes_train_ids" if train_ids else "cityscapes_label_ids")

    def image_path_of(image: dict, ann: dict) -> Path:
        # image ids are CITY_SEQ_FRAME; the city names the folder
        image_id = str(ann["image_id"])
        name = str(image.get("file_name") or f"{image_id}_leftImg8bit.png")
        return image_dir / image_id.split("_")[0] / name

    return CocoPanopticDataset(json_path, png_dir, image_dir, mapping, image_path_of=image_path_of)
