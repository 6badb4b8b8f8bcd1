"""Semantic segmentation IoU / mIoU from a confusion matrix (Cityscapes pixel-level convention).

The confusion matrix has one extra row and column at index `num_classes` for VOID: gt VOID pixels
are ignored, a VOID (or ignore) prediction on a labelled pixel counts as a miss of that pixel's
class. Classes whose union is empty are nan and left out of the mean.
"""
from __future__ import annotations

import numpy as np

from panoptic_perception.errors import InputError


def iou_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU in percent from an (N+1, N+1) gt x pred matrix whose last index is VOID."""
    confusion = np.asarray(confusion)
    n = confusion.shape[0] - 1
    tp = np.diag(confusion)[:n].astype(np.float64)
    fn = confusion[:n, :].sum(axis=1) - tp  # includes pred VOID
    fp = confusion[:n, :n].sum(axis=0) - tp  # gt VOID row excluded
    denom = tp + fp + fn
    out = np.full(n, np.nan)
    np.divide(100.0 * tp, denom, out=out, where=denom > 0)
    return out


def mean_iou(ious: np.ndarray) -> float:
    valid = np.asarray(ious)[~np.isnan(ious)]
    return float(valid.mean()) if valid.size else float("nan")


class SemanticConfusion:
    """Accumulates a confusion matrix over [H, W] class-id maps; `ignore_id` (and any id outside
    0..num_classes-1) is VOID."""

    def __init__(self, num_classes: int, ignore_id: int = 255) -> None:
        if num_classes <= 0:
            raise InputError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_id = ignore_id
        self.matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)

    def _slot(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels).astype(np.int64)
        return np.where((labels >= 0) & (labels < self.num_classes), labels, self.num_classes)

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        gt = np.asarray(gt)
        pred = np.asarray(pred)
        if gt.shape != pred.shape:
            raise InputError(f"semantic maps differ in shape: gt {gt.shape}, pred {pred.shape}")
        n = self.num_classes + 1
        flat = (self._slot(gt) * n + self._slot(pred)).ravel()
        self.matrix += np.bincount(flat, minlength=n * n).reshape(n, n)

    def iou(self) -> np.ndarray:
        return iou_from_confusion(self.matrix)

    def miou(self) -> float:
        return mean_iou(self.iou())
