"""Mask R-CNN ROI heads: box head + predictor, mask head (detectron2 StandardROIHeads layout).

Named as detectron2 so its checkpoints map by name: inside the top model this module is
`roi_heads`, with `box_head.fc1/fc2`, `box_predictor.cls_score/bbox_pred` and
`mask_head.mask_fcn1..N/deconv/predictor`.

Classes: the box head predicts K thing classes (contiguous index 0..K-1 in label-space id order)
plus background at index K, as detectron2 does. `thing_ids` maps index -> label-space category id;
outputs carry category ids.

Inference is static-shape for one image: P proposals in, D = max_detections detections out,
padded and marked by `valid`; the score threshold, NMS and top-k are masks and fixed-k top-k.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from panoptic_perception.errors import ConfigError
from panoptic_perception.model.box_ops import (
    ClipSize,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    nonempty_boxes,
)
from panoptic_perception.model.capture import is_capturing
from panoptic_perception.model.config import ROIHeadsConfig
from panoptic_perception.model.layers import msra_fill
from panoptic_perception.model.losses import box_head_losses, mask_loss
from panoptic_perception.model.matcher import BACKGROUND, FOREGROUND, Matcher, subsample_labels
from panoptic_perception.model.nms import batched_nms_keep_mask, select_topk
from panoptic_perception.model.paste_masks import paste_masks
from panoptic_perception.model.roi_align import multilevel_roi_align, roi_align

ROI_LEVELS = ("p2", "p3", "p4", "p5")  # detectron2 pools boxes from P2..P5 (P6 is RPN-only)


class FastRCNNFCHead(nn.Module):
    """Flattened pooled features -> num_fc fully connected layers with ReLU (fc1, fc2, ...)."""

    def __init__(self, in_channels: int, resolution: int, fc_dim: int, num_fc: int) -> None:
        super().__init__()
        if num_fc < 1 or fc_dim < 1:
            raise ConfigError(f"roi_heads.box_num_fc and box_fc_dim must be positive, got {num_fc}, {fc_dim}")
        dim = in_channels * resolution * resolution
        for k in range(num_fc):
            fc = nn.Linear(dim, fc_dim)
            # Caffe2 XavierFill, as detectron2's c2_xavier_fill.
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)
            self.add_module(f"fc{k + 1}", fc)
            dim = fc_dim
        self.num_fc = num_fc
        self.out_dim = fc_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for k in range(self.num_fc):
            x = F.relu(getattr(self, f"fc{k + 1}")(x))
        return x


class FastRCNNOutputLayers(nn.Module):
    """Class logits [R, K+1] (background last) and class-specific box deltas [R, K*4]."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(in_dim, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class MaskRCNNConvUpsampleHead(nn.Module):
    """num_conv 3x3 conv + ReLU, 2x transposed conv + ReLU, 1x1 predictor: K mask logits at 2x pool size."""

    def __init__(self, in_channels: int, conv_dim: int, num_conv: int, num_classes: int) -> None:
        super().__init__()
        dim = in_channels
        for k in range(num_conv):
            conv = nn.Conv2d(dim, conv_dim, kernel_size=3, padding=1)
            msra_fill(conv)
            self.add_module(f"mask_fcn{k + 1}", conv)
            dim = conv_dim
        self.num_conv = num_conv
        self.deconv = nn.ConvTranspose2d(dim, conv_dim, kernel_size=2, stride=2)
        msra_fill(self.deconv)
        self.predictor = nn.Conv2d(conv_dim, num_classes, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(self.num_conv):
            x = F.relu(getattr(self, f"mask_fcn{k + 1}")(x))
        return self.predictor(F.relu(self.deconv(x)))


class ROIHeads(nn.Module):
    """Box and mask branches on FPN levels p2..p5; losses in training, static detections in eval."""

    def __init__(self, cfg: ROIHeadsConfig, in_channels: int, strides_px: Mapping[str, int],
                 thing_ids: Sequence[int], mask_min_score: float = 0.0) -> None:
        super().__init__()
        if not thing_ids:
            raise ConfigError("the label space has no thing classes: the instance branch needs at least one")
        missing = [lv for lv in ROI_LEVELS if lv not in strides_px]
        if missing:
            raise ConfigError(f"ROI heads pool from {list(ROI_LEVELS)}; the FPN lacks {missing}")
        if cfg.max_detections < 1:
            raise ConfigError(f"roi_heads.max_detections must be positive, got {cfg.max_detections}")
        self.cfg = cfg
        self.num_classes = len(thing_ids)
        self.strides_px = [int(strides_px[lv]) for lv in ROI_LEVELS]
        self.register_buffer("thing_ids", torch.tensor(list(thing_ids), dtype=torch.int64), persistent=False)
        self.box_head = FastRCNNFCHead(in_channels, cfg.box_pooler_resolution, cfg.box_fc_dim, cfg.box_num_fc)
        self.box_predictor = FastRCNNOutputLayers(self.box_head.out_dim, self.num_classes)
        self.mask_head = MaskRCNNConvUpsampleHead(in_channels, cfg.mask_conv_dim, cfg.mask_num_conv,
                                                  self.num_classes)
        self.matcher = Matcher((cfg.iou_threshold,), (BACKGROUND, FOREGROUND))
        # Detections scoring below this get all-zero masks: the panoptic model sets it to the fusion's
        # instance score threshold, below which no fusion rule reads a mask. 0 keeps every valid one.
        self.mask_min_score = float(mask_min_score)
        # False: inference returns the mask head's M x M probabilities ("mask_rois") instead of masks
        # pasted into the input ("mask_probs"), for a fusion at another resolution (the image's).
        self.paste_masks = True

    # ----------------------------------------------------------------------------------- pooling

    def _pool(self, features: Sequence[torch.Tensor], boxes: torch.Tensor, batch_index: torch.Tensor,
              resolution: int) -> torch.Tensor:
        """RoIAlign (aligned) of boxes [R,4] of images batch_index [R] from the level their size picks."""
        return multilevel_roi_align(list(features), self.strides_px, boxes, batch_index, resolution,
                                    self.cfg.pooler_sampling_ratio)

    # ---------------------------------------------------------------------------------- training

    def forward(self, features: Sequence[torch.Tensor], proposal_boxes: torch.Tensor,
                proposal_valid: torch.Tensor, image_hw: Tuple[int, int],
                targets: Optional[Sequence[Mapping[str, torch.Tensor]]] = None,
                clip_hw: Optional[ClipSize] = None) -> Dict[str, torch.Tensor]:
        """features p2..p5; proposals [B,P,4] + valid [B,P].

        With targets (one dict per image: "boxes" [n,4], "thing_index" [n] in 0..K-1, "masks"
        [n,H,W]) returns the losses; without, the detections of image 0 (see `inference`).
        """
        if targets is not None:
            return self.losses(features, proposal_boxes, proposal_valid, targets)
        return self.inference(features, proposal_boxes[0], proposal_valid[0], image_hw, clip_hw)

    @torch.no_grad()
    def label_and_sample(self, proposals: torch.Tensor, gt_boxes: torch.Tensor, gt_index: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One image: proposals [P,4] (valid only) + gt boxes -> sampled (boxes, classes 0..K, gt idx).

        Ground-truth boxes join the proposals (detectron2 does this so early training has positives).
        """
        boxes = torch.cat([proposals, gt_boxes.to(proposals)])
        matched, labels = self.matcher(box_iou(gt_boxes.to(proposals), boxes))
        classes = torch.full((boxes.shape[0],), self.num_classes, dtype=torch.int64, device=boxes.device)
        if gt_boxes.shape[0] > 0:
            fg = labels == FOREGROUND
            classes[fg] = gt_index[matched[fg]]
        pos, neg = subsample_labels(labels, self.cfg.batch_size_per_image, self.cfg.positive_fraction)
        sampled = torch.cat([pos, neg])
        return boxes[sampled], classes[sampled], matched[sampled]

    def losses(self, features: Sequence[torch.Tensor], proposal_boxes: torch.Tensor,
               proposal_valid: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]]
               ) -> Dict[str, torch.Tensor]:
        boxes_l, classes_l, batch_l, deltas_l, mask_targets_l = [], [], [], [], []
        for i, target in enumerate(targets):
            gt_boxes = target["boxes"].to(proposal_boxes)
            proposals = proposal_boxes[i][proposal_valid[i]].detach()
            boxes, classes, matched = self.label_and_sample(proposals, gt_boxes, target["thing_index"])
            fg = classes < self.num_classes
            deltas = torch.zeros_like(boxes)
            if gt_boxes.shape[0] > 0:
                deltas[fg] = encode_boxes(gt_boxes[matched[fg]], boxes[fg], self.cfg.box_reg_weights)
                mask_targets_l.append(self._mask_targets(target["masks"], boxes[fg], matched[fg]))
            boxes_l.append(boxes)
            classes_l.append(classes)
            deltas_l.append(deltas)
            batch_l.append(torch.full((boxes.shape[0],), i, dtype=torch.int64, device=boxes.device))
        boxes = torch.cat(boxes_l)
        classes = torch.cat(classes_l)
        batch_index = torch.cat(batch_l)
        pooled = self._pool(features, boxes, batch_index, self.cfg.box_pooler_resolution)
        class_logits, box_deltas = self.box_predictor(self.box_head(pooled))
        losses = box_head_losses(class_logits, box_deltas, classes, torch.cat(deltas_l),
                                 self.cfg.smooth_l1_beta)
        fg = classes < self.num_classes
        mask_features = self._pool(features, boxes[fg], batch_index[fg], self.cfg.mask_pooler_resolution)
        mask_logits = self.mask_head(mask_features)
        mask_targets = (torch.cat(mask_targets_l) if mask_targets_l
                        else mask_logits.new_zeros((0,) + tuple(mask_logits.shape[-2:])))
        losses["loss_mask"] = mask_loss(mask_logits, classes[fg], mask_targets)
        return losses

    def _mask_targets(self, gt_masks: torch.Tensor, boxes: torch.Tensor, matched: torch.Tensor
                      ) -> torch.Tensor:
        """Each positive box's gt mask cropped and resized to the mask head's output size [R, M, M]."""
        resolution = 2 * self.cfg.mask_pooler_resolution
        masks = gt_masks.to(boxes.dtype)[:, None]  # [G,1,H,W]: each gt mask is its own "image"
        crops = roi_align(masks, boxes, matched, resolution, spatial_scale=1.0, sampling_ratio=0)
        return crops[:, 0]

    # --------------------------------------------------------------------------------- inference

    def inference(self, features: Sequence[torch.Tensor], proposals: torch.Tensor, valid: torch.Tensor,
                  image_hw: Tuple[int, int], clip_hw: Optional[ClipSize] = None) -> Dict[str, torch.Tensor]:
        """Static detections of one image from proposals [P,4] / valid [P]; boxes clipped to clip_hw
        (default: the whole input image_hw), masks pasted at image_hw.

        Returns boxes [D,4], scores [D] (0 where invalid), classes [D] category ids, valid [D] and
        mask_probs [D,H,W] (0 where invalid), D = max_detections.
        """
        cfg = self.cfg
        num_props = proposals.shape[0]
        k = self.num_classes
        height, width = int(image_hw[0]), int(image_hw[1])
        batch_index = torch.zeros(num_props, dtype=torch.int64, device=proposals.device)
        pooled = self._pool(features, proposals, batch_index, cfg.box_pooler_resolution)
        class_logits, box_deltas = self.box_predictor(self.box_head(pooled))
        scores = F.softmax(class_logits, dim=-1)[:, :k]  # [P, K]
        boxes = decode_boxes(box_deltas.view(num_props, k, 4), proposals[:, None, :], cfg.box_reg_weights)
        clip_h, clip_w = clip_hw if clip_hw is not None else (height, width)
        boxes = clip_boxes(boxes, clip_h, clip_w)  # [P, K, 4]
        # Empty (clipped-away) boxes stay candidates: as in detectron2 they take part in NMS (IoU 0:
        # they suppress nothing) and in the top max_detections, and are dropped after (below).
        candidate = valid[:, None] & (scores > cfg.score_threshold_test)
        scores = scores.reshape(-1)
        boxes = boxes.reshape(-1, 4)
        labels = torch.arange(k, device=proposals.device).repeat(num_props)
        # Bound the NMS matrix: the best P (class, box) candidates, not all P*K of them. Candidates
        # past the P-th never reach the final max_detections <= P unless P-1 better ones of their
        # class were suppressed, which detectron2 would allow and we accept as the static cost
        # (tools/detectron2_parity.py's frame: 3848 candidates; keeping 3840 changed no detection
        # and made the NMS 35x slower on a CPU, 2.2 s instead of 62 ms).
        num_candidates = max(num_props, cfg.max_detections)
        cand_idx, cand_valid = select_topk(candidate.reshape(-1), scores, num_candidates)
        cand_boxes, cand_scores, cand_labels = boxes[cand_idx], scores[cand_idx], labels[cand_idx]
        keep = batched_nms_keep_mask(cand_boxes, cand_scores, cand_labels, cfg.nms_threshold_test,
                                     valid=cand_valid)
        det_idx, det_valid = select_topk(keep, cand_scores, cfg.max_detections)
        det_boxes = cand_boxes[det_idx]
        det_valid = det_valid & nonempty_boxes(det_boxes)  # detectron2's detector_postprocess
        det_scores = torch.where(det_valid, cand_scores[det_idx], torch.zeros_like(cand_scores[det_idx]))
        det_index = cand_labels[det_idx]
        wanted = det_valid & (det_scores >= self.mask_min_score)
        out = {"boxes": det_boxes, "scores": det_scores, "classes": self.thing_ids[det_index], "valid": det_valid}
        if self.paste_masks:
            out["mask_probs"] = self.predict_masks(features, det_boxes, det_index, image_hw, wanted)
        else:
            out["mask_rois"] = self.predict_masks(features, det_boxes, det_index, None, wanted)
        return out

    def predict_masks(self, features: Sequence[torch.Tensor], boxes: torch.Tensor, class_index: torch.Tensor,
                      image_hw: Optional[Tuple[int, int]], wanted: torch.Tensor) -> torch.Tensor:
        """Mask probabilities [D,H,W] pasted at image_hw for boxes [D,4] of thing indices [D] (with image_hw
        None: the mask head's own [D,M,M], for pasting elsewhere); zero where not `wanted` [D]. Eager
        inference runs the mask head only on the wanted rows (the head costs about as much as the
        backbone at 40 detections); a captured graph runs it on all D and zeroes the rest.
        """
        if is_capturing():
            rows = None
        else:
            rows = wanted.nonzero()[:, 0]
            boxes, class_index = boxes[rows], class_index[rows]
        batch_index = torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
        pooled = self._pool(features, boxes, batch_index, self.cfg.mask_pooler_resolution)
        logits = self.mask_head(pooled)  # [D, K, M, M]
        index = class_index[:, None, None, None].expand(-1, 1, logits.shape[2], logits.shape[3])
        probs = torch.gather(logits, 1, index)[:, 0].sigmoid()
        pasted = probs if image_hw is None else paste_masks(probs, boxes, int(image_hw[0]), int(image_hw[1]))
        if rows is None:
            return pasted * wanted[:, None, None].to(pasted.dtype)
        full = pasted.new_zeros((wanted.shape[0],) + tuple(pasted.shape[1:]))
        return full.index_copy(0, rows, pasted)


def thing_index_lut(thing_ids: Sequence[int], num_categories: int) -> List[int]:
    """Category id -> thing index (or -1 for stuff), as a list indexed by category id."""
    lut = [-1] * num_categories
    for index, cid in enumerate(thing_ids):
        lut[cid] = index
    return lut
