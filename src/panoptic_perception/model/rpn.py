"""Region Proposal Network over the FPN levels (detectron2 StandardRPNHead + RPN).

Named as detectron2 so its checkpoints map by name: inside the top model this module is
`proposal_generator`, its head `rpn_head.conv` / `rpn_head.objectness_logits` /
`rpn_head.anchor_deltas`.

Proposal selection is static-shape (the same code in training and inference, only the k's
differ): per level the top-k anchors by objectness (k fixed by config and the level's size),
decode, clip, one NMS over all levels with levels kept apart (detectron2's batched NMS by level),
then the top post_nms_topk by score. Boxes that are empty or were suppressed stay in the fixed
output but are marked invalid.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from panoptic_perception.model.anchors import AnchorGenerator
from panoptic_perception.model.box_ops import (
    ClipSize,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    nonempty_boxes,
)
from panoptic_perception.model.config import RPNConfig
from panoptic_perception.model.losses import rpn_losses
from panoptic_perception.model.matcher import BACKGROUND, FOREGROUND, IGNORE, Matcher, subsample_labels
from panoptic_perception.model.nms import nms_keep_mask, select_topk

Proposals = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # boxes [B,P,4], scores [B,P], valid [B,P]


class RPNHead(nn.Module):
    """Shared 3x3 conv + ReLU, then 1x1 convs for A objectness logits and 4A anchor deltas per cell."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.objectness_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1)
        for layer in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Per level: logits [B, H*W*A] and deltas [B, H*W*A, 4], ordered (y, x, anchor)."""
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            batch, _, height, width = x.shape
            logits.append(self.objectness_logits(t).permute(0, 2, 3, 1).reshape(batch, -1))
            d = self.anchor_deltas(t)
            d = d.view(batch, -1, 4, height, width).permute(0, 3, 4, 1, 2)
            deltas.append(d.reshape(batch, -1, 4))
        return logits, deltas


class RPN(nn.Module):
    """Anchors + head + static proposal selection; training also returns the RPN losses."""

    def __init__(self, cfg: RPNConfig, in_channels: int, strides_px: Sequence[int]) -> None:
        super().__init__()
        self.cfg = cfg
        self.anchor_generator = AnchorGenerator(cfg.anchor_sizes, cfg.aspect_ratios, strides_px)
        self.rpn_head = RPNHead(in_channels, self.anchor_generator.num_anchors_per_cell)
        low, high = cfg.iou_thresholds
        self.matcher = Matcher((low, high), (BACKGROUND, IGNORE, FOREGROUND), allow_low_quality_matches=True)

    def forward(self, features: Sequence[torch.Tensor], image_hw: ClipSize,
                gt_boxes: Optional[Sequence[torch.Tensor]] = None
                ) -> Tuple[Proposals, Dict[str, torch.Tensor]]:
        """features: FPN maps finest first; image_hw: the (H, W) to clip to (ints, or 0-dim tensors for
        the image region of a padded input).

        Returns ((boxes [B,P,4], objectness logits [B,P], valid [B,P]), losses). Losses are computed
        when gt_boxes (one [n,4] tensor per image) is given; the proposals never carry gradient.
        """
        grid_sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        anchors = self.anchor_generator(grid_sizes)
        logits, deltas = self.rpn_head(features)
        losses: Dict[str, torch.Tensor] = {}
        if gt_boxes is not None:
            losses = self.losses(anchors, logits, deltas, gt_boxes)
        if self.training:
            pre_k, post_k = self.cfg.pre_nms_topk_train, self.cfg.post_nms_topk_train
        else:
            pre_k, post_k = self.cfg.pre_nms_topk_test, self.cfg.post_nms_topk_test
        with torch.no_grad():
            proposals = self.select_proposals(anchors, [x.detach() for x in logits],
                                              [d.detach() for d in deltas], image_hw, pre_k, post_k)
        return proposals, losses

    def select_proposals(self, anchors: Sequence[torch.Tensor], logits: Sequence[torch.Tensor],
                         deltas: Sequence[torch.Tensor], image_hw: ClipSize, pre_nms_topk: int,
                         post_nms_topk: int) -> Proposals:
        """Static-shape top-k -> decode -> clip -> NMS per level -> top-k over levels, batched over images.

        Levels are padded to a common k and stacked so NMS runs as one batched [B, L, k, k]
        problem: the same result as one NMS over all levels with levels kept apart, at 1/L the cost.
        """
        batch = logits[0].shape[0]
        level_k = [min(pre_nms_topk, int(x.shape[1])) for x in logits]
        k_max = max(level_k)
        boxes_l, scores_l, valid_l = [], [], []
        for anchors_i, logits_i, deltas_i, k in zip(anchors, logits, deltas, level_k):
            top_scores, top_idx = logits_i.topk(k, dim=1)
            top_deltas = torch.gather(deltas_i, 1, top_idx[..., None].expand(batch, k, 4))
            boxes = decode_boxes(top_deltas, anchors_i[top_idx], self.cfg.box_reg_weights)
            boxes = clip_boxes(boxes, image_hw[0], image_hw[1])
            # amin over 0/1 instead of all(): aten.all.dim has no torch-tensorrt converter
            finite = torch.isfinite(boxes).to(torch.int32).amin(dim=-1) > 0
            valid = nonempty_boxes(boxes) & finite & torch.isfinite(top_scores)
            if k < k_max:
                pad = k_max - k
                boxes = F.pad(boxes, (0, 0, 0, pad))
                top_scores = F.pad(top_scores, (0, pad), value=-float("inf"))
                valid = F.pad(valid, (0, pad), value=False)
            boxes_l.append(boxes)
            scores_l.append(top_scores)
            valid_l.append(valid)
        boxes = torch.stack(boxes_l, dim=1)  # [B, L, k, 4]
        scores = torch.stack(scores_l, dim=1)
        keep = nms_keep_mask(boxes, scores, self.cfg.nms_threshold, valid=torch.stack(valid_l, dim=1))
        boxes = boxes.reshape(batch, -1, 4)
        scores = scores.reshape(batch, -1)
        index, valid = select_topk(keep.reshape(batch, -1), scores, min(post_nms_topk, sum(level_k)))
        boxes = torch.gather(boxes, 1, index[..., None].expand(*index.shape, 4))
        return boxes, torch.gather(scores, 1, index), valid

    def losses(self, anchors: Sequence[torch.Tensor], logits: Sequence[torch.Tensor],
               deltas: Sequence[torch.Tensor], gt_boxes: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
        all_anchors = torch.cat(list(anchors))
        labels, targets = [], []
        for boxes in gt_boxes:
            label, target = self.label_anchors(all_anchors, boxes)
            labels.append(label)
            targets.append(target)
        normalizer = float(self.cfg.batch_size_per_image * len(gt_boxes))
        return rpn_losses(torch.cat(list(logits), dim=1).reshape(-1),
                          torch.cat(list(deltas), dim=1).reshape(-1, 4),
                          torch.cat(labels), torch.cat(targets), normalizer, self.cfg.smooth_l1_beta)

    @torch.no_grad()
    def label_anchors(self, anchors: torch.Tensor, gt_boxes: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sampled labels [N] (1, 0, -1 unused) and regression targets [N,4] for one image."""
        gt_boxes = gt_boxes.to(anchors)
        matched, match_labels = self.matcher(box_iou(gt_boxes, anchors))
        pos, neg = subsample_labels(match_labels, self.cfg.batch_size_per_image, self.cfg.positive_fraction)
        labels = torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
        labels[pos] = 1
        labels[neg] = 0
        if gt_boxes.shape[0] == 0:
            return labels, torch.zeros_like(anchors)
        targets = encode_boxes(gt_boxes[matched], anchors, self.cfg.box_reg_weights)
        return labels, targets
