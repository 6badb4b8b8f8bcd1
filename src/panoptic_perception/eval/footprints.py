"""How well the occupied cells of things on the grid cover the things' true footprints.

Scored against a synthetic drive's bird's-eye truth (gt/bev: each cell's thing, exact): per frame,
the grid cells that are occupied and carry a thing class, against the cells under the footprints
of the things the image shows (a segment of the frame's panoptic truth; things wholly hidden are
nobody's to find). IoU is pooled over frames (cells summed) and also given per frame; per class,
the truth cells missed and the cells claimed where no imaged thing stands.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from panoptic_perception.data.panoptic_io import Segment
from panoptic_perception.data.synth.bev import BevTruth
from panoptic_perception.errors import InputError
from panoptic_perception.geometry.grid import OCCUPANCY_OCCUPIED
from panoptic_perception.labels import LabelSpace


@dataclass(frozen=True)
class FrameFootprints:
    """One frame: cells of thing occupancy (predicted), of true footprints, and of both."""

    name: str
    predicted_cells: int
    truth_cells: int
    intersection_cells: int
    missed_by_class: Dict[str, int]  # truth cells not occupied by a thing, by the truth thing's class
    extra_by_class: Dict[str, int]  # thing cells on no imaged thing's footprint, by the grid's class

    @property
    def union_cells(self) -> int:
        return self.predicted_cells + self.truth_cells - self.intersection_cells

    @property
    def iou(self) -> float:
        return self.intersection_cells / self.union_cells if self.union_cells else float("nan")


@dataclass
class FootprintScore:
    """Frames scored so far; pooled and per-frame figures."""

    frames: List[FrameFootprints] = field(default_factory=list)

    def add(self, frame: FrameFootprints) -> None:
        self.frames.append(frame)

    @property
    def scored(self) -> List[FrameFootprints]:
        """Frames with a thing on the grid or in the truth (others have no IoU)."""
        return [f for f in self.frames if f.union_cells]

    @property
    def pooled_iou(self) -> float:
        union = sum(f.union_cells for f in self.frames)
        return sum(f.intersection_cells for f in self.frames) / union if union else float("nan")

    def per_frame_iou(self) -> np.ndarray:
        return np.array([f.iou for f in self.scored])

    def by_class(self, which: str) -> Dict[str, int]:
        total: Counter = Counter()
        for f in self.frames:
            total.update(getattr(f, which))
        return dict(total)

    def to_dict(self) -> dict:
        ious = self.per_frame_iou()
        per_frame = ({"median": float(np.median(ious)), "mean": float(ious.mean()), "min": float(ious.min()),
                      "p10": float(np.percentile(ious, 10)), "max": float(ious.max())} if ious.size else {})
        return {"frames": len(self.frames), "frames_scored": int(ious.size), "pooled_iou": self.pooled_iou,
                "per_frame_iou": per_frame,
                "predicted_cells": sum(f.predicted_cells for f in self.frames),
                "truth_cells": sum(f.truth_cells for f in self.frames),
                "missed_cells_by_class": self.by_class("missed_by_class"),
                "extra_cells_by_class": self.by_class("extra_by_class")}


def score_frame(name: str, occupancy: np.ndarray, class_grid: np.ndarray, truth: BevTruth,
                segments: Sequence[Segment], label_space: LabelSpace) -> FrameFootprints:
    """Score one frame's grid ([rows = y, cols = x], as GridResult holds it) against its bird's-eye truth."""
    footprint_ids = truth.footprint_ids.T  # truth is [x, y]
    if footprint_ids.shape != occupancy.shape or class_grid.shape != occupancy.shape:
        raise InputError(f"{name}: grid {occupancy.shape} / class grid {class_grid.shape} and bird's-eye truth "
                         f"{footprint_ids.shape} (rows, cols) differ: the grid config must be the drive's")
    names = label_space.names
    is_thing = np.zeros(256, dtype=bool)
    is_thing[label_space.thing_ids] = True
    predicted = (occupancy == OCCUPANCY_OCCUPIED) & is_thing[class_grid]
    category_of = {s.id: s.category_id for s in segments}
    truth_mask = np.isin(footprint_ids, list(category_of)) & (footprint_ids > 0)
    missed: Counter = Counter()
    for segment_id, count in zip(*np.unique(footprint_ids[truth_mask & ~predicted], return_counts=True)):
        missed[names[category_of[int(segment_id)]]] += int(count)
    extra: Counter = Counter()
    for category, count in zip(*np.unique(class_grid[predicted & ~truth_mask], return_counts=True)):
        extra[names[int(category)]] += int(count)
    return FrameFootprints(name, int(predicted.sum()), int(truth_mask.sum()), int((predicted & truth_mask).sum()),
                           dict(missed), dict(extra))


def score_drive(pipeline, drive_dir: Path, score: FootprintScore, use_model: bool = False, camera_id: str = "02",
                max_frames: Optional[int] = None) -> FootprintScore:
    """Adds the frames of one synthetic drive to `score`: the grid the Pipeline projects from the drive's
    ground-truth panoptic (the projection alone), or from the network's output on its images."""
    from panoptic_perception.data.datasets import read_rgb
    from panoptic_perception.data.kitti import read_drive
    from panoptic_perception.data.panoptic_io import read_panoptic_json, read_panoptic_png

    drive = read_drive(drive_dir)
    camera = drive.camera(camera_id)
    gt = Path(drive_dir) / "gt"
    if not (gt / "panoptic.json").is_file() or not (gt / "bev").is_dir():
        raise InputError(f"{drive_dir}: footprints are scored on synthetic drives, which hold gt/panoptic.json and "
                         f"gt/bev/; this one lacks them")
    annotations = read_panoptic_json(gt / "panoptic.json")["annotations"][:max_frames]
    images = {p.stem: p for p in drive.images[camera_id]}
    for ann in annotations:
        name = str(ann["image_id"])
        where = f"{drive_dir.name} frame {name}"
        segments = [Segment.from_coco(info, where) for info in ann["segments_info"]]
        if use_model:
            if name not in images:
                raise InputError(f"{where}: no image image_{camera_id}/data/{name}.png")
            result = pipeline.process(read_rgb(images[name]), camera)
        else:
            result = pipeline.process_panoptic(read_panoptic_png(gt / "panoptic" / ann["file_name"]), segments,
                                               camera)
        if result.grid is None:
            raise InputError(f"{where}: the pipeline made no grid ({result.grid_error or 'grid projection is off'})")
        grid = result.grid.to_numpy()
        truth = BevTruth.load_npz(gt / "bev" / f"{name}.npz")
        score.add(score_frame(where, grid.occupancy, grid.class_grid, truth, segments, pipeline.label_space))
    return score


def format_footprints(score: FootprintScore) -> str:
    """What `eval --footprints` prints."""
    d = score.to_dict()
    lines = [f"thing footprints: pooled IoU {d['pooled_iou']:.3f} over {d['frames_scored']} frames "
             f"({d['predicted_cells']} occupied thing cells, {d['truth_cells']} true footprint cells)"]
    if d["per_frame_iou"]:
        p = d["per_frame_iou"]
        lines.append(f"per frame: median {p['median']:.3f}, mean {p['mean']:.3f}, 10th percentile {p['p10']:.3f}, "
                     f"min {p['min']:.3f}, max {p['max']:.3f}")
    missed, extra = d["missed_cells_by_class"], d["extra_cells_by_class"]
    for name in sorted(set(missed) | set(extra)):
        lines.append(f"  {name:12s} missed {missed.get(name, 0):7d} cells, extra {extra.get(name, 0):7d} cells")
    return "\n".join(lines)
