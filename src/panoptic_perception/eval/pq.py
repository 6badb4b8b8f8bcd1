"""Panoptic Quality (Kirillov et al., CVPR 2019) computed as panopticapi's `pq_compute` does.

Per image, every (gt segment, pred segment) pair's intersection comes from ONE `np.bincount`
over dense paired indices, so the cost is a few passes over the pixels whatever the number of
segments; everything after that works on the small (n_gt x n_pred) intersection matrix.

Rules (identical to panopticapi):
- id 0 in either map is VOID, except that a prediction listing id 0 in its `segments_info` makes
  it a regular segment (panopticapi scores it like any other; ground truth id 0 stays VOID).
- Categories come from the ground truth; a prediction JSON needs no `categories` list.
- A pred and a gt segment of the same category match iff IoU > 0.5, where
  IoU = |g & p| / (|g| + |p| - |g & p| - |p & VOID_gt|). Crowd gt segments never match.
- Unmatched non-crowd gt segments are false negatives.
- An unmatched pred segment is a false positive unless more than half of its pixels lie on gt VOID
  or on gt crowd regions of its own category.
- Per class PQ = sum(IoU of matches) / (TP + FP/2 + FN/2), SQ = sum(IoU)/TP, RQ = TP/(TP+FP/2+FN/2);
  All / Things / Stuff average over the classes with TP + FP + FN > 0.

Two deliberate, documented differences from panopticapi, neither changing results on valid data:
segment areas come from the PNG (panopticapi trusts the ground truth JSON's `area`), and several
crowd regions of one category in one image are all counted (panopticapi keeps only the last).

mIoU of the semantic part comes from the same intersection matrix: each pixel's class is its
segment's category (crowd included), gt VOID is ignored and pred VOID on a labelled pixel counts
as a miss of that pixel's class. Classes with an empty union are left out of the mean.

All reported numbers are percentages (0..100).
"""
from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from panoptic_perception.data.panoptic_io import Segment, read_panoptic_json, read_panoptic_png
from panoptic_perception.errors import InputError
from panoptic_perception.eval.miou import iou_from_confusion, mean_iou
from panoptic_perception.labels import Category, LabelSpace

VOID_ID = 0
MATCH_IOU = 0.5
_LUT_MAX_ID = 1 << 21  # ids below this use a lookup table (8 MiB at most); larger ones a binary search


@dataclass(frozen=True)
class EvalCategory:
    id: int
    name: str
    is_thing: bool


CategoriesLike = Union[LabelSpace, Sequence[Mapping[str, Any]], Sequence[Category], Sequence[EvalCategory]]


def eval_categories(categories: CategoriesLike) -> List[EvalCategory]:
    """Normalise a LabelSpace, COCO `categories` JSON list or Category list to EvalCategory."""
    if isinstance(categories, LabelSpace):
        categories = categories.categories
    out: List[EvalCategory] = []
    for i, cat in enumerate(categories):
        if isinstance(cat, Mapping):
            try:
                out.append(EvalCategory(int(cat["id"]), str(cat.get("name", cat["id"])),
                                        bool(int(cat.get("isthing", cat.get("is_thing", 0))))))
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"category entry {i} ({cat!r}) needs an integer 'id' and 'isthing'") from exc
        elif isinstance(cat, (Category, EvalCategory)):
            out.append(EvalCategory(int(cat.id), str(cat.name), bool(cat.is_thing)))
        else:
            raise InputError(f"category entry {i} has unsupported type {type(cat).__name__}")
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise InputError(f"category ids are not unique: {ids}")
    if not out:
        raise InputError("no categories to evaluate")
    return out


@dataclass
class PQSummary:
    pq: float
    sq: float
    rq: float
    n: int  # classes averaged


@dataclass
class ClassPQ:
    id: int
    name: str
    is_thing: bool
    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int
    iou: float  # semantic IoU in percent; nan when the class is absent from gt and pred


@dataclass
class PQResult:
    all: PQSummary
    things: PQSummary
    stuff: PQSummary
    per_class: List[ClassPQ] = field(default_factory=list)
    miou: float = float("nan")
    num_images: int = 0

    @property
    def pq(self) -> float:
        return self.all.pq

    def class_by_name(self, name: str) -> ClassPQ:
        for c in self.per_class:
            if c.name == name:
                return c
        raise KeyError(name)


class PQAccumulator:
    """Sums per-class TP / FP / FN / IoU and a semantic confusion matrix over images.

    Picklable and mergeable (`merge`), so worker processes can each fill one and the parent
    sums them.
    """

    def __init__(self, categories: CategoriesLike) -> None:
        self.categories = eval_categories(categories)
        self._index: Dict[int, int] = {c.id: i for i, c in enumerate(self.categories)}
        n = len(self.categories)
        self.tp = np.zeros(n, dtype=np.int64)
        self.fp = np.zeros(n, dtype=np.int64)
        self.fn = np.zeros(n, dtype=np.int64)
        self.iou_sum = np.zeros(n, dtype=np.float64)
        # rows: gt class, cols: pred class; index n is VOID
        self.confusion = np.zeros((n + 1, n + 1), dtype=np.int64)
        self.num_images = 0

    # ---------------------------------------------------------------- per image
    def _table(self, segments: Sequence[Segment], what: str, image_id: str, void_listable: bool = False
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment ids sorted ascending, their category indices and crowd flags. With `void_listable`
        (predictions), an entry with id 0 is a regular segment, as panopticapi treats it."""
        n = len(segments)
        ids = np.empty(n, dtype=np.int64)
        cats = np.empty(n, dtype=np.int64)
        crowd = np.zeros(n, dtype=bool)
        for k, seg in enumerate(segments):
            if not isinstance(seg, Segment):
                raise InputError(f"{what} of image {image_id}: {seg!r} is not a panoptic_io.Segment (read COCO "
                                 f"segments_info entries with Segment.from_coco)")
            seg_id, cat_id = seg.id, seg.category_id
            if seg_id == VOID_ID and not void_listable:
                raise InputError(f"{what} of image {image_id}: segment id 0 is reserved for VOID")
            if cat_id not in self._index:
                raise InputError(f"{what} of image {image_id}: segment {seg_id} has unknown category id "
                                 f"{cat_id} (known: {sorted(self._index)})")
            ids[k] = seg_id
            cats[k] = self._index[cat_id]
            crowd[k] = seg.iscrowd
        order = np.argsort(ids, kind="stable")
        ids, cats, crowd = ids[order], cats[order], crowd[order]
        if n > 1 and np.any(ids[1:] == ids[:-1]):
            dup = int(ids[1:][ids[1:] == ids[:-1]][0])
            raise InputError(f"{what} of image {image_id}: segment id {dup} appears twice in segments_info")
        return ids, cats, crowd

    @staticmethod
    def _dense(seg_map: np.ndarray, sorted_ids: np.ndarray, what: str, image_id: str) -> np.ndarray:
        """Map segment ids to 0 (VOID) or 1 + their position in `sorted_ids`; -1 marks unknown ids."""
        lo, hi = (int(seg_map.min()), int(seg_map.max())) if seg_map.size else (0, 0)
        if lo >= 0 and hi < _LUT_MAX_ID:
            # direct lookup table: one gather, about 4x faster than a binary search per pixel
            lut = np.full(hi + 1, -1, dtype=np.int32)
            lut[0] = 0
            inside = sorted_ids <= hi
            lut[sorted_ids[inside]] = np.nonzero(inside)[0].astype(np.int32) + 1
            dense = lut[seg_map]
        else:
            # a listed id 0 is a segment (dense 1), otherwise 0 is VOID (dense 0)
            listed_void = sorted_ids.size > 0 and sorted_ids[0] == VOID_ID
            table = sorted_ids if listed_void else np.concatenate([[VOID_ID], sorted_ids])
            dense = np.searchsorted(table, seg_map)
            np.minimum(dense, len(table) - 1, out=dense)
            unknown = table[dense] != seg_map
            dense += int(listed_void)
            dense[unknown] = -1
        if dense.min(initial=0) < 0:
            unknown = np.unique(seg_map[dense < 0])
            raise InputError(f"{what} of image {image_id}: segment id(s) {unknown[:10].tolist()} are in the "
                             f"PNG but have no segments_info entry")
        return dense

    def add(self, gt_map: np.ndarray, gt_segments: Sequence[Segment], pred_map: np.ndarray,
            pred_segments: Sequence[Segment], image_id: str = "?") -> None:
        """Add one image."""
        gt_map = np.asarray(gt_map)
        pred_map = np.asarray(pred_map)
        if gt_map.ndim != 2 or gt_map.shape != pred_map.shape:
            raise InputError(f"image {image_id}: ground truth is {gt_map.shape} but prediction is "
                             f"{pred_map.shape}; both must be the same (H, W)")
        g_ids, g_cat, g_crowd = self._table(gt_segments, "ground truth", image_id)
        p_ids, p_cat, _ = self._table(pred_segments, "prediction", image_id, void_listable=True)
        g_dense = self._dense(gt_map, g_ids, "ground truth", image_id)
        p_dense = self._dense(pred_map, p_ids, "prediction", image_id)
        n_g, n_p = len(g_ids) + 1, len(p_ids) + 1
        pair = g_dense * n_p
        pair += p_dense
        inter = np.bincount(pair.ravel(), minlength=n_g * n_p).reshape(n_g, n_p)
        self._add_counts(inter, g_cat, g_crowd, p_ids, p_cat, image_id)

    def _add_counts(self, inter: np.ndarray, g_cat: np.ndarray, g_crowd: np.ndarray,
                    p_ids: np.ndarray, p_cat: np.ndarray, image_id: str) -> None:
        n_cls = len(self.categories)
        g_area = inter[1:, :].sum(axis=1)
        p_area = inter[:, 1:].sum(axis=0)
        if np.any(p_area == 0):
            missing = p_ids[p_area == 0][:10].tolist()
            raise InputError(f"prediction of image {image_id}: segment id(s) {missing} are in segments_info "
                             f"but not in the PNG")
        overlap = inter[1:, 1:]
        pred_on_void = inter[0, 1:]
        same_cat = g_cat[:, None] == p_cat[None, :]
        union = g_area[:, None] + p_area[None, :] - overlap - pred_on_void[None, :]
        iou = overlap / np.maximum(union, 1)
        matched = (iou > MATCH_IOU) & same_cat & ~g_crowd[:, None] & (overlap > 0)
        gi, pj = np.nonzero(matched)
        self.tp += np.bincount(g_cat[gi], minlength=n_cls)
        self.iou_sum += np.bincount(g_cat[gi], weights=iou[gi, pj], minlength=n_cls)
        g_matched = np.zeros(len(g_cat), dtype=bool)
        g_matched[gi] = True
        p_matched = np.zeros(len(p_cat), dtype=bool)
        p_matched[pj] = True
        self.fn += np.bincount(g_cat[~g_matched & ~g_crowd], minlength=n_cls)
        on_crowd = ((g_crowd[:, None] & same_cat) * overlap).sum(axis=0)
        ignored = (pred_on_void + on_crowd) / p_area > 0.5
        self.fp += np.bincount(p_cat[~p_matched & ~ignored], minlength=n_cls)
        # semantic confusion from the same matrix: dense index 0 (VOID) -> class slot n_cls
        g_cls = np.concatenate([[n_cls], g_cat])
        p_cls = np.concatenate([[n_cls], p_cat])
        flat = (g_cls[:, None] * (n_cls + 1) + p_cls[None, :]).ravel()
        self.confusion += np.bincount(flat, weights=inter.ravel(),
                                      minlength=(n_cls + 1) ** 2).astype(np.int64).reshape(n_cls + 1, -1)
        self.num_images += 1

    # ------------------------------------------------------------------ totals
    def merge(self, other: PQAccumulator) -> PQAccumulator:
        if [c.id for c in other.categories] != [c.id for c in self.categories]:
            raise InputError("cannot merge PQ accumulators over different categories")
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.iou_sum += other.iou_sum
        self.confusion += other.confusion
        self.num_images += other.num_images
        return self

    def class_iou(self) -> np.ndarray:
        """Semantic IoU per class in percent (nan where gt and pred never have the class)."""
        return iou_from_confusion(self.confusion)

    def result(self) -> PQResult:
        per_class: List[ClassPQ] = []
        ious = self.class_iou()
        for i, cat in enumerate(self.categories):
            tp, fp, fn = int(self.tp[i]), int(self.fp[i]), int(self.fn[i])
            denom = tp + 0.5 * fp + 0.5 * fn
            pq = 100.0 * self.iou_sum[i] / denom if denom > 0 else 0.0
            sq = 100.0 * self.iou_sum[i] / tp if tp > 0 else 0.0
            rq = 100.0 * tp / denom if denom > 0 else 0.0
            per_class.append(ClassPQ(cat.id, cat.name, cat.is_thing, pq, sq, rq, tp, fp, fn, float(ious[i])))
        return PQResult(
            all=_average(per_class, None), things=_average(per_class, True), stuff=_average(per_class, False),
            per_class=per_class, miou=mean_iou(ious),
            num_images=self.num_images)


def _average(per_class: Sequence[ClassPQ], is_thing: bool | None) -> PQSummary:
    chosen = [c for c in per_class if (is_thing is None or c.is_thing == is_thing) and c.tp + c.fp + c.fn > 0]
    if not chosen:
        return PQSummary(0.0, 0.0, 0.0, 0)
    n = len(chosen)
    return PQSummary(math.fsum(c.pq for c in chosen) / n, math.fsum(c.sq for c in chosen) / n,
                     math.fsum(c.rq for c in chosen) / n, n)


# ------------------------------------------------------------------ files on disk
_Job = Tuple[str, str, list, str, list]  # image id, gt png, gt segments, pred png, pred segments


def _evaluate_jobs(categories: List[EvalCategory], jobs: Sequence[_Job]) -> PQAccumulator:
    acc = PQAccumulator(categories)
    for image_id, gt_png, gt_segments, pred_png, pred_segments in jobs:
        gt_map = read_panoptic_png(gt_png)
        pred_map = read_panoptic_png(pred_png)
        if gt_map.shape != pred_map.shape:
            (gh, gw), (ph, pw) = gt_map.shape, pred_map.shape
            raise InputError(f"image {image_id}: ground truth {gt_png} is {gw}x{gh} "
                             f"but prediction {pred_png} is {pw}x{ph}")
        acc.add(gt_map, gt_segments, pred_map, pred_segments, image_id=image_id)
    return acc


def _segments(annotation: Mapping[str, Any], where: str) -> List[Segment]:
    return [Segment.from_coco(info, where) for info in annotation.get("segments_info", [])]


def _annotation_jobs(gt_json: str, gt_dir: str, pred_json: str, pred_dir: str
                     ) -> Tuple[List[_Job], List[dict]]:


    gt = read_panoptic_json(gt_json)
    pred = read_panoptic_json(pred_json, require_categories=False)  # panopticapi uses the ground truth's
    gt_dir_p, pred_dir_p = Path(gt_dir), Path(pred_dir)
    for folder, what in ((gt_dir_p, "ground truth"), (pred_dir_p, "prediction")):
        if not folder.is_dir():
            raise InputError(f"{what} PNG folder not found: {folder}")
    preds: Dict[str, dict] = {}
    for ann in pred["annotations"]:
        preds[str(ann.get("image_id"))] = ann
    jobs: List[_Job] = []
    for ann in gt["annotations"]:
        image_id = str(ann.get("image_id"))
        if image_id not in preds:
            raise InputError(f"image {image_id} of {gt_json} has no prediction in {pred_json}")
        p_ann = preds[image_id]
        gt_png, pred_png = gt_dir_p / str(ann["file_name"]), pred_dir_p / str(p_ann["file_name"])
        for png, what in ((gt_png, "ground truth"), (pred_png, "prediction")):
            if not png.is_file():
                raise InputError(f"{what} PNG for image {image_id} not found: {png}")
        jobs.append((image_id, str(gt_png), _segments(ann, f"{gt_json} image {image_id}"),
                     str(pred_png), _segments(p_ann, f"{pred_json} image {image_id}")))
    if not jobs:
        raise InputError(f"{gt_json} has no annotations to evaluate")
    return jobs, gt["categories"]


def evaluate_dirs(gt_json: str, gt_dir: str, pred_json: str, pred_dir: str,
                  categories: CategoriesLike | None = None, workers: int = 1) -> PQResult:
    """PQ of a COCO panoptic prediction (JSON + PNG folder) against ground truth in the same format.

    Categories default to the ground truth JSON's. `workers` > 1 spreads images over processes.
    """
    jobs, gt_categories = _annotation_jobs(str(gt_json), str(gt_dir), str(pred_json), str(pred_dir))
    cats = eval_categories(categories if categories is not None else gt_categories)
    workers = max(1, min(int(workers), len(jobs)))
    if workers == 1:
        return _evaluate_jobs(cats, jobs).result()

    # contiguous chunks, several per worker so one slow chunk does not idle the others
    n_chunks = min(len(jobs), workers * 4)
    bounds = np.linspace(0, len(jobs), n_chunks + 1).astype(int)
    chunks = [jobs[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    total = PQAccumulator(cats)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        for part in pool.map(_evaluate_jobs, [cats] * len(chunks), chunks):
            total.merge(part)
    return total.result()
