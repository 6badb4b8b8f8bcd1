"""Stage panoptic_head: train the convolutional panoptic head (Inria report "Contribution to Panoptic
Segmentation") on a trained, frozen network.

Seed 000 trains its per-class CNNs after the segmentation networks, on their outputs. Here the
frozen Panoptic FPN runs in eval mode exactly as at inference (RPN, RoI heads, mask pasting), the
fusion's own `conv_head_logits` turns each kept detection's pasted mask + the semantic
probabilities into refined-mask logits, and the loss is per-pixel binary cross-entropy against the
ground-truth mask of the instance the detection found. The seed names no loss; BCE on the whole
image (not only inside the box) is used because the head's semantic term acts everywhere: a head
that learnt "car semantics -> car" would claim every car in the image for each car detection,
and only whole-image negatives teach it not to.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Sequence

import torch
from torch import nn

from panoptic_perception.errors import ConfigError
from panoptic_perception.model.config import ModelConfig
from panoptic_perception.model.panoptic_head import STATE_PREFIX as HEAD_PREFIX
from panoptic_perception.model.panoptic_head import conv_head_loss
from panoptic_perception.training.config import PanopticHeadTrainConfig


def with_conv_head(model_config: ModelConfig) -> ModelConfig:
    """The model config with fusion.mode conv_head (every other fusion setting kept)."""
    return dataclasses.replace(model_config, fusion=dataclasses.replace(model_config.fusion, mode="conv_head"))


def start_state(model: nn.Module, network_state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Weights to start the head stage from: the network's, plus the model's initial head unless the
    checkpoint already holds one (continuing from an earlier head run)."""
    state = dict(network_state)
    if not any(name.startswith(HEAD_PREFIX) for name in state):
        state.update({name: value for name, value in model.state_dict().items() if name.startswith(HEAD_PREFIX)})
    return state


def freeze_all_but_head(model: nn.Module) -> List[nn.Parameter]:
    """requires_grad only on the conv head's parameters; returns them."""
    head = []
    for name, param in model.named_parameters():
        trainable = name.startswith(HEAD_PREFIX)
        param.requires_grad_(trainable)
        if trainable:
            head.append(param)
    if not head:
        raise ConfigError("stage panoptic_head: the model has no conv head (fusion.mode must be conv_head)")
    return head


def match_detections(det_masks: torch.Tensor, det_classes: torch.Tensor, det_scores: torch.Tensor,
                     gt_masks: torch.Tensor, gt_classes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """GT index per detection (-1: none), one-to-one by descending score, same class, mask IoU > threshold.

    det_masks [D, H, W] bool, gt_masks [N, H, W] bool.
    """
    num_det, num_gt = int(det_masks.shape[0]), int(gt_masks.shape[0])
    matched = torch.full((num_det,), -1, dtype=torch.int64, device=det_masks.device)
    if num_det == 0 or num_gt == 0:
        return matched
    det = det_masks.reshape(num_det, -1).to(torch.float32)
    gt = gt_masks.reshape(num_gt, -1).to(torch.float32)
    inter = det @ gt.T
    union = det.sum(1)[:, None] + gt.sum(1)[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))
    iou = torch.where(det_classes[:, None].to(torch.int64) == gt_classes[None, :].to(torch.int64), iou,
                      torch.full_like(iou, -1.0))
    taken = torch.zeros(num_gt, dtype=torch.bool, device=det_masks.device)
    for d in torch.argsort(det_scores, descending=True, stable=True).tolist():
        candidates = torch.where(taken, torch.full_like(iou[d], -1.0), iou[d])
        best = int(candidates.argmax())
        if float(candidates[best]) > iou_threshold:
            matched[d] = best
            taken[best] = True
    return matched


def _loss_pixels(semantic: torch.Tensor, gt_masks: torch.Tensor, thing_index_of_category: torch.Tensor,
                 ignore_id: int) -> torch.Tensor:
    """[H, W] 1 where a pixel's truth is known: not void / crowd, and not a thing pixel whose instance
    was dropped from the targets (too small), which would otherwise read as background."""
    known = semantic != ignore_id
    category = semantic.clamp(min=0, max=thing_index_of_category.shape[0] - 1)
    thing_pixel = known & (thing_index_of_category[category] >= 0)
    covered = gt_masks.any(dim=0) if gt_masks.shape[0] else torch.zeros_like(known)
    return (known & ~(thing_pixel & ~covered)).to(torch.float32)


def panoptic_head_losses(model: nn.Module, images: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]],
                         config: PanopticHeadTrainConfig) -> Dict[str, torch.Tensor]:
    """{"loss_panoptic_head": BCE of the refined masks} for a batch; the network runs frozen, batch 1 each."""
    fusion = model.fusion
    if fusion.conv_head is None:
        raise ConfigError("stage panoptic_head: the model's fusion has no conv head")
    height, width = int(images.shape[-2]), int(images.shape[-1])
    if (height, width) != (fusion.height, fusion.width):
        raise ConfigError(f"stage panoptic_head: training images are {width}x{height} but the model runs at "
                          f"{fusion.width}x{fusion.height}; set augment crop_width_px / crop_height_px to it")
    min_score = fusion.score_threshold if config.min_score is None else config.min_score
    logits, gts, valids, weights = [], [], [], []
    for index, target in enumerate(targets):
        with torch.no_grad():
            # Inference zeroes masks below the fusion's threshold; training may want lower-scoring ones.
            raw = model.network_outputs(images[index:index + 1], min(min_score, fusion.score_threshold))
            category = raw["classes"].to(torch.int64).clamp(min=0, max=fusion.num_classes - 1)
            keep = raw["valid"].to(torch.bool) & (raw["scores"] >= min_score) \
                & (fusion.thing_index_of_category[category] >= 0)
            if not bool(keep.any()):
                continue
            mask_probs = raw["mask_probs"][keep].to(torch.float32)
            gt_masks = target["masks"].to(torch.bool)
            matched = match_detections(mask_probs > fusion.mask_threshold, raw["classes"][keep],
                                       raw["scores"][keep], gt_masks, target["classes"], config.match_iou)
            gt = torch.zeros_like(mask_probs)
            hit = matched >= 0
            if bool(hit.any()):
                gt[hit] = gt_masks[matched[hit]].to(gt.dtype)
            valid = hit if config.unmatched == "ignore" else torch.ones_like(hit)
            pixels = _loss_pixels(target["semantic"].to(torch.int64), gt_masks, fusion.thing_index_of_category,
                                  fusion.ignore_id)
        logits.append(fusion.conv_head_logits(mask_probs, raw["classes"][keep], raw["sem_logits"]))
        gts.append(gt)
        valids.append(valid)
        weights.append(pixels.expand_as(gt))
    if not logits:
        # No detection to learn from in this batch: a zero that still reaches the head's parameters.
        return {"loss_panoptic_head": sum(p.sum() for p in fusion.conv_head.parameters()) * 0.0}
    loss = conv_head_loss(torch.cat(logits), torch.cat(gts), torch.cat(valids), torch.cat(weights))
    return {"loss_panoptic_head": loss}
