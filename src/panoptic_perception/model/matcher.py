"""Training-time assignment: IoU matching of predictions to ground truth, and balanced sampling.

Both follow detectron2 (Matcher, subsample_labels). They run only in training, where shapes may
depend on the data; the inference graph never calls them.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch

from panoptic_perception.errors import ConfigError

# Match labels: ignored in the loss, background, foreground.
IGNORE = -1
BACKGROUND = 0
FOREGROUND = 1


class Matcher:
    """Assign each prediction (column) the ground truth (row) it overlaps most.

    `thresholds` [t1, ..., tk] split IoU into k+1 intervals; `labels` gives each interval's match
    label (IGNORE, BACKGROUND or FOREGROUND). RPN: thresholds (0.3, 0.7), labels (0, -1, 1) and
    low-quality matches on; ROI heads: (0.5,), (0, 1), off.
    """

    def __init__(self, thresholds: Sequence[float], labels: Sequence[int],
                 allow_low_quality_matches: bool = False) -> None:
        thresholds = [float(t) for t in thresholds]
        if any(b < a for a, b in zip(thresholds, thresholds[1:])):
            raise ConfigError(f"matcher IoU thresholds must be non-decreasing, got {thresholds}")
        if len(labels) != len(thresholds) + 1:
            raise ConfigError(f"matcher needs {len(thresholds) + 1} labels for thresholds "
                              f"{thresholds}, got {list(labels)}")
        if any(label not in (IGNORE, BACKGROUND, FOREGROUND) for label in labels):
            raise ConfigError(f"matcher labels must be -1, 0 or 1, got {list(labels)}")
        self.thresholds = [-float("inf")] + thresholds + [float("inf")]
        self.labels = [int(v) for v in labels]
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """iou [G, N] -> (matched gt index [N] int64, match label [N] int8).

        With no ground truth every prediction is background (index 0, meaningless).
        """
        num_pred = iou.shape[1]
        if iou.shape[0] == 0:
            return (iou.new_zeros(num_pred, dtype=torch.int64),
                    iou.new_full((num_pred,), BACKGROUND, dtype=torch.int8))
        best_iou, matched = iou.max(dim=0)
        match_labels = torch.full((num_pred,), IGNORE, dtype=torch.int8, device=iou.device)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            in_range = (best_iou >= low) & (best_iou < high)
            match_labels[in_range] = label
        if self.allow_low_quality_matches:
            # Every gt keeps the prediction(s) that overlap it most, even below the fg threshold,
            # so that small or oddly shaped objects still get a positive anchor.
            best_per_gt = iou.max(dim=1, keepdim=True).values
            is_best = (iou == best_per_gt) & (best_per_gt > 0)
            match_labels[is_best.any(dim=0)] = FOREGROUND
        return matched, match_labels


def subsample_labels(labels: torch.Tensor, num_samples: int, positive_fraction: float,
                     generator: torch.Generator | None = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random balanced sample: indices of positives (label 1) and negatives (label 0).

    At most num_samples * positive_fraction positives; negatives fill the rest of num_samples.
    Labels -1 are never sampled.
    """
    positive = torch.nonzero(labels == FOREGROUND).flatten()
    negative = torch.nonzero(labels == BACKGROUND).flatten()
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)
    perm_pos = torch.randperm(positive.numel(), generator=generator)[:num_pos].to(labels.device)
    perm_neg = torch.randperm(negative.numel(), generator=generator)[:num_neg].to(labels.device)
    return positive[perm_pos], negative[perm_neg]
