"""COCO panoptic format on disk: one PNG per image (id = R + 256 G + 256^2 B) plus one JSON
with `images`, `annotations[].segments_info` and `categories` - what panopticapi and
cityscapesScripts read."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from panoptic_perception.errors import InputError
from panoptic_perception.labels import LabelSpace


def id2rgb(segment_ids: np.ndarray) -> np.ndarray:
    """(H, W) integer ids -> (H, W, 3) uint8 colours."""
    ids = np.asarray(segment_ids).astype(np.uint32)
    if ids.size and int(ids.max()) >= 256**3:
        raise InputError(f"segment id {int(ids.max())} does not fit in a 24-bit panoptic PNG")
    return np.stack([ids % 256, (ids // 256) % 256, ids // 256**2], axis=-1).astype(np.uint8)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours -> (H, W) int32 ids."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise InputError(f"a panoptic PNG must be RGB, got an array of shape {rgb.shape}")
    rgb = rgb[..., :3].astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


@dataclass(frozen=True)
class Segment:
    """One segment of a panoptic frame: what the Pipeline returns, the COCO panoptic files hold
    (`segments_info` entries), PQ scores and the ROS conversion publishes."""

    id: int  # >= 1; 0 is void
    category_id: int  # in the label space of the frame
    area_px: int = 0
    bbox_xywh: Tuple[int, int, int, int] = (0, 0, 0, 0)  # x, y, width, height in pixels (COCO)
    score: float = 1.0
    iscrowd: bool = False
    category_name: str = ""  # "" = the label space's name for category_id
    is_thing: Optional[bool] = None  # None = the label space's
    track_id: int = 0  # persistent id of the tracked thing across frames; 0 = not tracked

    def to_coco(self) -> dict:
        """A COCO panoptic `segments_info` entry (panopticapi's keys, plus score)."""
        return {"id": self.id, "category_id": self.category_id, "area": self.area_px,
                "bbox": list(self.bbox_xywh), "iscrowd": int(self.iscrowd), "score": self.score}

    @classmethod
    def from_coco(cls, info: Mapping[str, Any], where: str) -> Segment:
        """From a `segments_info` entry; InputError naming `where` and the entry when it is malformed."""
        try:
            bbox = tuple(int(v) for v in info.get("bbox", (0, 0, 0, 0)))
            if len(bbox) != 4:
                raise ValueError("bbox needs 4 values")
            return cls(id=int(info["id"]), category_id=int(info["category_id"]), area_px=int(info.get("area", 0)),
                       bbox_xywh=bbox, score=float(info.get("score", 1.0)),
                       iscrowd=bool(int(info.get("iscrowd", 0))))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{where}: bad segments_info entry {info!r}: {exc}") from exc


@dataclass
class PanopticAnnotation:
    image_id: str
    file_name: str  # the panoptic PNG's name inside the PNG folder
    segments_info: List[Segment] = field(default_factory=list)

    def to_coco(self) -> dict:
        return {"image_id": self.image_id, "file_name": self.file_name,
                "segments_info": [s.to_coco() for s in self.segments_info]}


def segments_from_map(segment_ids: np.ndarray, categories: Dict[int, int],
                      scores: Dict[int, float] | None = None,
                      crowd: Iterable[int] = ()) -> List[Segment]:
    """Segment table (area, bbox) measured from an id map; `categories` maps id -> category."""
    ids = np.asarray(segment_ids)
    crowd = set(crowd)
    infos = []
    present = np.unique(ids)
    for seg_id in present[present != 0]:
        ys, xs = np.nonzero(ids == seg_id)
        seg_id = int(seg_id)
        if seg_id not in categories:
            raise InputError(f"segment id {seg_id} in the map has no category")
        x0, y0 = int(xs.min()), int(ys.min())
        infos.append(Segment(
            id=seg_id, category_id=int(categories[seg_id]), area_px=int(len(xs)),
            bbox_xywh=(x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1),
            iscrowd=seg_id in crowd, score=float((scores or {}).get(seg_id, 1.0))))
    return infos


def categories_json(space: LabelSpace) -> List[dict]:
    return [{"id": c.id, "name": c.name, "isthing": int(c.is_thing), "color": list(c.color),
             "supercategory": "thing" if c.is_thing else "stuff"} for c in space.categories]


class PanopticWriter:
    """Collects frames and writes PNG folder + JSON. PNGs are written as frames arrive, the JSON
    on close(), so an interrupted run keeps every frame it finished."""

    def __init__(self, json_path: str | Path, png_dir: str | Path, space: LabelSpace) -> None:
        self.json_path = Path(json_path)
        self.png_dir = Path(png_dir)
        self.space = space
        self.png_dir.mkdir(parents=True, exist_ok=True)
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.images: List[dict] = []
        self.annotations: List[PanopticAnnotation] = []

    def add(self, image_id: str, image_file_name: str, segment_ids: np.ndarray,
            segments: Sequence[Segment]) -> None:
        height, width = segment_ids.shape
        png_name = f"{image_id}.png"
        Image.fromarray(id2rgb(segment_ids)).save(self.png_dir / png_name)
        self.images.append({"id": image_id, "file_name": image_file_name, "width": width, "height": height})
        self.annotations.append(PanopticAnnotation(image_id, png_name, list(segments)))

    def close(self) -> None:
        payload = {
            "images": self.images,
            "annotations": [a.to_coco() for a in self.annotations],
            "categories": categories_json(self.space),
        }
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(self.json_path)

    def __enter__(self) -> PanopticWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_panoptic_json(path: str | Path, require_categories: bool = True) -> dict:
    """A COCO panoptic JSON; without `require_categories` (predictions) the `categories` list may be absent."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"panoptic JSON not found: {path}") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"panoptic JSON {path} is unreadable: {exc}") from exc
    for key in ("annotations", "categories") if require_categories else ("annotations",):
        if key not in data:
            raise InputError(f"panoptic JSON {path} has no '{key}' list")
    return data


def read_8bit_bgr_png(path: str | Path, what: str = "panoptic PNG") -> np.ndarray:
    """uint8 [H, W, >=3] BGR(A) of a PNG whose channels encode ids (COCO panoptic, KITTI-STEP);
    InputError naming `what` and the file when it is missing, unreadable or not 8-bit colour."""
    import cv2  # libpng through OpenCV decodes about twice as fast as PIL here

    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise InputError(f"{what} {path} is missing or unreadable")
    if bgr.ndim != 3 or bgr.shape[2] < 3 or bgr.dtype != np.uint8:
        raise InputError(f"{what} {path} must be 8-bit RGB, got shape {bgr.shape} {bgr.dtype}")
    return bgr


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """A COCO panoptic PNG -> (H, W) int32 segment ids (id = R + 256 G + 256^2 B).

    The one reader of panoptic PNGs: datasets, `eval` and the tests all go through it.
    """
    bgr = read_8bit_bgr_png(path)
    ids = bgr[..., 2].astype(np.int32)
    ids |= bgr[..., 1].astype(np.int32) << 8
    ids |= bgr[..., 0].astype(np.int32) << 16
    return ids
