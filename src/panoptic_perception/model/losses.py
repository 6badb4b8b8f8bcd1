"""Mask R-CNN losses (detectron2 normalisations) and their weighting into one training objective.

Unweighted terms come from the RPN and ROI heads; `weight_losses` applies the config's per-term
weights (JSIS-Net Table 2) and Panoptic FPN's lambda_i / lambda_s to the instance / semantic terms.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from panoptic_perception.model.config import LossWeights

# Loss names -> (LossWeights field, branch). The branch picks instance_scale or semantic_scale.
LOSS_TERMS = {
    "loss_rpn_cls": ("rpn_objectness", "instance"),
    "loss_rpn_loc": ("rpn_box", "instance"),
    "loss_cls": ("box_cls", "instance"),
    "loss_box_reg": ("box_reg", "instance"),
    "loss_mask": ("mask", "instance"),
    "loss_sem_seg": ("semantic", "semantic"),
}


def smooth_l1_sum(pred: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Summed smooth L1; beta < 1e-5 is plain L1 (detectron2's default for both heads)."""
    diff = (pred - target).abs()
    if beta < 1e-5:
        return diff.sum()
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta).sum()


def rpn_losses(objectness_logits: torch.Tensor, anchor_deltas: torch.Tensor, labels: torch.Tensor,
               target_deltas: torch.Tensor, normalizer: float, smooth_l1_beta: float = 0.0
               ) -> Dict[str, torch.Tensor]:
    """RPN objectness BCE and box L1 over all images' anchors.

    objectness_logits [N], anchor_deltas [N,4], labels [N] (1 fg, 0 bg, -1 not sampled),
    target_deltas [N,4] (used where labels == 1). Both terms are divided by
    `normalizer` = batch_size_per_image * num_images, as detectron2 does, so they do not depend on
    how many positives a frame happens to have.
    """
    sampled = labels >= 0
    positive = labels == 1
    loss_cls = F.binary_cross_entropy_with_logits(
        objectness_logits[sampled], labels[sampled].to(objectness_logits.dtype), reduction="sum")
    loss_loc = smooth_l1_sum(anchor_deltas[positive], target_deltas[positive], smooth_l1_beta)
    return {"loss_rpn_cls": loss_cls / normalizer, "loss_rpn_loc": loss_loc / normalizer}


def box_head_losses(class_logits: torch.Tensor, box_deltas: torch.Tensor, gt_classes: torch.Tensor,
                    target_deltas: torch.Tensor, smooth_l1_beta: float = 0.0) -> Dict[str, torch.Tensor]:
    """Fast R-CNN losses over sampled proposals.

    class_logits [R, K+1] (index K = background), box_deltas [R, K*4] class-specific,
    gt_classes [R] in 0..K, target_deltas [R, 4]. The regression loss uses only the gt class's
    deltas of foreground proposals and is normalised by all R proposals (detectron2).
    """
    num_rois = max(int(class_logits.shape[0]), 1)
    num_classes = class_logits.shape[1] - 1
    loss_cls = F.cross_entropy(class_logits, gt_classes, reduction="sum") / num_rois
    foreground = torch.nonzero((gt_classes >= 0) & (gt_classes < num_classes)).flatten()
    deltas = box_deltas.view(box_deltas.shape[0], num_classes, 4)[foreground, gt_classes[foreground]]
    loss_reg = smooth_l1_sum(deltas, target_deltas[foreground], smooth_l1_beta) / num_rois
    return {"loss_cls": loss_cls, "loss_box_reg": loss_reg}


def mask_loss(mask_logits: torch.Tensor, gt_classes: torch.Tensor, gt_masks: torch.Tensor) -> torch.Tensor:
    """Per-pixel BCE of the gt class's mask channel.

    mask_logits [R, K, M, M], gt_classes [R] in 0..K-1, gt_masks [R, M, M] in [0, 1] (soft targets
    from RoIAlign of the binary mask are binarised at 0.5, as detectron2 does).
    """
    if mask_logits.shape[0] == 0:
        return mask_logits.sum() * 0.0
    index = torch.arange(mask_logits.shape[0], device=mask_logits.device)
    logits = mask_logits[index, gt_classes]
    target = (gt_masks >= 0.5).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="mean")


def weight_losses(losses: Dict[str, torch.Tensor], weights: LossWeights) -> Dict[str, torch.Tensor]:
    """Each raw term times its config weight and its branch's scale (lambda_i or lambda_s)."""
    weighted = {}
    for name, value in losses.items():
        if name not in LOSS_TERMS:
            raise KeyError(f"unknown loss term {name}; known: {', '.join(LOSS_TERMS)}")
        field, branch = LOSS_TERMS[name]
        scale = weights.instance_scale if branch == "instance" else weights.semantic_scale
        weighted[name] = value * (getattr(weights, field) * scale)
    return weighted
