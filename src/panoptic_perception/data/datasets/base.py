"""What every loader yields, and the shared COCO-panoptic reading code.

A sample is a dict:
  "image"     uint8 [H, W, 3] RGB (the network's preprocessing normalises it; keeping uint8 lets
              augmentation use OpenCV and keeps DataLoader batches small)
  "panoptic"  int32 [H, W]   segment id per pixel, 0 = VOID
  "segments"  list[Segment] in the MODEL's category ids (label mapping applied), area and bbox
              measured from "panoptic"; segments of unmapped classes are gone (their pixels VOID)
  "image_id"  str            the dataset's id of the frame
  "image_path" str
Loaders are map-style (len + getitem), read lazily and import no torch, so a torch DataLoader
with workers can wrap them directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from panoptic_perception.data.label_mapping import LabelMapping
from panoptic_perception.data.panoptic_io import Segment, read_panoptic_json, read_panoptic_png
from panoptic_perception.errors import InputError
from panoptic_perception.labels import LabelSpace

Sample = Dict[str, object]


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file -> uint8 [H, W, 3] RGB."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"image {path} is missing or unreadable")
    return np.ascontiguousarray(bgr[..., ::-1])


def segments_from_json(infos: Sequence[dict], where: str) -> List[Segment]:
    return [Segment.from_coco(info, where) for info in infos]


def check_ids(panoptic: np.ndarray, segments: Sequence[Segment], where: str) -> None:
    """Every non-zero id in the map must have a segments_info entry (else labels silently vanish)."""
    present = np.unique(panoptic)
    known = np.array(sorted({s.id for s in segments} | {0}), dtype=np.int64)
    missing = present[~np.isin(present, known)]
    if missing.size:
        raise InputError(
            f"{where}: segment id(s) {missing[:10].tolist()} are in the PNG but have no segments_info entry"
        )


class CocoPanopticDataset:
    """COCO panoptic on disk: one JSON (images, annotations, categories) + a PNG folder + images.

    `image_path_of(image_entry, annotation)` finds a frame's image; by default
    image_dir / images[].file_name.
    """

    def __init__(
        self,
        json_path: str | Path,
        png_dir: str | Path,
        image_dir: str | Path,
        mapping: LabelMapping,
        image_path_of: Optional[Callable[[dict, dict], Path]] = None,
    ) -> None:
        self.json_path = Path(json_path)
        self.png_dir = Path(png_dir)
        self.image_dir = Path(image_dir)
        self.mapping = mapping
        data = read_panoptic_json(self.json_path)
        if not self.png_dir.is_dir():
            raise InputError(f"panoptic PNG folder not found: {self.png_dir} (for {self.json_path})")
        self.categories = {int(c["id"]): c for c in data["categories"]}
        unknown = sorted(set(mapping.to_target) - set(self.categories))
        if unknown and len(unknown) == len(mapping.to_target):
            raise InputError(
                f"{self.json_path}: none of the label mapping '{mapping.config.name}' source ids "
                f"are categories of this dataset; wrong mapping?"
            )
        images = {str(im["id"]): im for im in data.get("images", [])}
        self.annotations: List[dict] = list(data["annotations"])
        self.images: List[dict] = [
            images.get(str(a["image_id"]), {"id": a["image_id"]}) for a in self.annotations
        ]
        self._image_path_of = image_path_of or (lambda im, ann: self.image_dir / str(im.get("file_name", "")))

    @property
    def label_space(self) -> LabelSpace:
        return self.mapping.space

    def __len__(self) -> int:
        return len(self.annotations)

    def image_path(self, index: int) -> Path:
        return self._image_path_of(self.images[index], self.annotations[index])

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        ann = self.annotations[index]
        image_id = str(ann["image_id"])
        where = f"{self.json_path} image {image_id}"
        segments = segments_from_json(ann.get("segments_info", []), where)
        for s in segments:
            if s.category_id not in self.categories:
                raise InputError(f"{where}: segment {s.id} has unknown category id {s.category_id}")
        panoptic = read_panoptic_png(self.png_dir / str(ann["file_name"]))
        check_ids(panoptic, segments, where)
        image_path = self.image_path(index)
        image = read_rgb(image_path)
        if image.shape[:2] != panoptic.shape:
            raise InputError(
                f"{where}: image {image_path} is {image.shape[1]}x{image.shape[0]} but its panoptic "
                f"PNG is {panoptic.shape[1]}x{panoptic.shape[0]}"
            )
        panoptic, segments = self.mapping.apply(panoptic, segments)
        return {
            "image": image,
            "panoptic": panoptic,
            "segments": segments,
            "image_id": image_id,
            "image_path": str(image_path),
        }
