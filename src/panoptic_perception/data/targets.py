"""Training targets from a panoptic map: what the Panoptic FPN losses consume.

`targets_from_panoptic` gives, for one image,
  "boxes"    [n, 4] float32  xyxy in pixels (x2, y2 exclusive: a 1-pixel segment at (x, y) is
                             [x, y, x + 1, y + 1], the convention of detectron2's BoxMode.XYWH_ABS
                             -> XYXY_ABS conversion of COCO boxes)
  "classes"  [n]    int64    category ids of thing instances (crowd regions excluded)
  "masks"    [n, H, W] uint8 one binary mask per instance
  "semantic" [H, W] int64    category id per pixel, `label_space.ignore_id` on VOID and crowd
with the same instance order as `segments` (after the size filter). numpy arrays: the trainer
turns them into tensors.

`segment_geometry` measures areas and boxes of many segments in a few passes over the map; the
loaders, the label mapping and the augmentation use it to keep segments_info exact.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Sequence, Tuple

import numpy as np

from panoptic_perception.data.panoptic_io import Segment
from panoptic_perception.errors import InputError
from panoptic_perception.labels import LabelSpace


def dense_index(panoptic: np.ndarray, segment_ids: Sequence[int]) -> np.ndarray:
    """[H, W] index into `segment_ids` + 1 (0 where VOID or an id not in the list)."""
    ids = np.asarray(segment_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    table = ids[order]
    idx = np.searchsorted(table, panoptic)
    np.minimum(idx, max(len(table) - 1, 0), out=idx)
    if len(table) == 0:
        return np.zeros(panoptic.shape, dtype=np.int64)
    hit = table[idx] == panoptic
    return np.where(hit, order[idx] + 1, 0)


def segment_geometry(panoptic: np.ndarray, segment_ids: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Areas [n] and COCO boxes [n, 4] (x, y, w, h) of each listed segment id; zeros if absent."""
    panoptic = np.asarray(panoptic)
    h, w = panoptic.shape
    n = len(segment_ids)
    dense = dense_index(panoptic, segment_ids)
    area = np.bincount(dense.ravel(), minlength=n + 1)[1:]
    # which rows / columns each segment touches: bincount over (segment, row) pairs
    rows = np.bincount((dense * h + np.arange(h)[:, None]).ravel(), minlength=(n + 1) * h).reshape(n + 1, h)[
        1:
    ]
    cols = np.bincount((dense * w + np.arange(w)[None, :]).ravel(), minlength=(n + 1) * w).reshape(n + 1, w)[
        1:
    ]
    has_r, has_c = rows > 0, cols > 0
    y0 = np.argmax(has_r, axis=1)
    y1 = h - np.argmax(has_r[:, ::-1], axis=1)
    x0 = np.argmax(has_c, axis=1)
    x1 = w - np.argmax(has_c[:, ::-1], axis=1)
    boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    boxes[area == 0] = 0
    return area.astype(np.int64), boxes.astype(np.int64)


def remeasure(
    panoptic: np.ndarray, segments: Sequence[Segment], drop_empty: bool = True
) -> List[Segment]:
    """Segments with area and bbox measured from `panoptic`; segments with no pixels dropped."""
    area, boxes = segment_geometry(panoptic, [s.id for s in segments])
    out = []
    for seg, a, box in zip(segments, area.tolist(), boxes.tolist()):
        if a == 0 and drop_empty:
            continue
        out.append(replace(seg, area_px=int(a), bbox_xywh=tuple(int(v) for v in box)))
    return out


def targets_from_panoptic(
    panoptic: np.ndarray, segments: Sequence[Segment], label_space: LabelSpace, min_area_px: int = 1
) -> Dict[str, np.ndarray]:
    """Instance and semantic training targets of one image (see the module docstring).

    Thing instances smaller than `min_area_px` pixels are left out of boxes / classes / masks
    (too small for the RoI heads to learn from) but keep their class in "semantic".
    """
    panoptic = np.asarray(panoptic)
    if panoptic.ndim != 2:
        raise InputError(f"panoptic map must be [H, W], got shape {panoptic.shape}")
    h, w = panoptic.shape
    n_cls = label_space.num_classes
    ignore = label_space.ignore_id
    thing = set(label_space.thing_ids)
    seg_ids = [int(s.id) for s in segments]
    if len(set(seg_ids)) != len(seg_ids):
        raise InputError("segments list the same id twice")
    for s in segments:
        if not 0 <= s.category_id < n_cls:
            raise InputError(
                f"segment {s.id} has category {s.category_id}, outside label space "
                f"{label_space.name} (0..{n_cls - 1})"
            )
    dense = dense_index(panoptic, seg_ids)
    lut = np.full(len(segments) + 1, ignore, dtype=np.int64)
    for k, s in enumerate(segments):
        if not s.iscrowd:
            lut[k + 1] = s.category_id
    semantic = lut[dense]
    area = np.bincount(dense.ravel(), minlength=len(segments) + 1)[1:]
    keep = [
        k
        for k, s in enumerate(segments)
        if s.category_id in thing and not s.iscrowd and area[k] >= max(1, min_area_px)
    ]
    masks = np.zeros((len(keep), h, w), dtype=np.uint8)
    boxes = np.zeros((len(keep), 4), dtype=np.float32)
    if keep:
        _, geo = segment_geometry(panoptic, [seg_ids[k] for k in keep])
        boxes[:, 0] = geo[:, 0]
        boxes[:, 1] = geo[:, 1]
        boxes[:, 2] = geo[:, 0] + geo[:, 2]
        boxes[:, 3] = geo[:, 1] + geo[:, 3]
        np.equal(dense[None, :, :], (np.asarray(keep) + 1)[:, None, None], out=masks, casting="unsafe")
    classes = np.array([segments[k].category_id for k in keep], dtype=np.int64)
    return {"boxes": boxes, "classes": classes, "masks": masks, "semantic": semantic}
