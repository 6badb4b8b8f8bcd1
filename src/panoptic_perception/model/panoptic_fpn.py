"""Panoptic FPN: one backbone + FPN shared by a Mask R-CNN instance branch and a semantic branch.

`PanopticFPN` is the network (Kirillov et al. 2019; JSIS-Net's joint training): in training mode it
returns the weighted losses, in eval mode the raw static-shape outputs of one image.
`PanopticModel` adds the panoptic fusion to the same graph; it is what torch.export, ONNX and
TensorRT capture and what the runtime backends run. Module names follow detectron2's
PanopticFPN (`backbone`, `proposal_generator`, `roi_heads`, `sem_seg_head`) so its checkpoints
map by name.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from panoptic_perception.errors import InputError
from panoptic_perception.labels import LabelSpace, load_label_space
from panoptic_perception.model.backbone import Preprocess
from panoptic_perception.model.config import ModelConfig
from panoptic_perception.model.fpn import build_fpn_backbone
from panoptic_perception.model.fusion import PanopticFusion
from panoptic_perception.model.losses import weight_losses
from panoptic_perception.model.roi_heads import ROI_LEVELS, ROIHeads, thing_index_lut
from panoptic_perception.model.rpn import RPN
from panoptic_perception.model.semantic_head import build_semantic_head, semantic_loss

Target = Mapping[str, torch.Tensor]


class PanopticFPN(nn.Module):
    """forward(images float RGB 0..255 [B,3,H,W], targets=None).

    Training: dict of weighted losses (loss_rpn_cls, loss_rpn_loc, loss_cls, loss_box_reg,
    loss_mask, loss_sem_seg); targets, one dict per image: "boxes" [n,4] xyxy pixels, "classes" [n]
    thing category ids, "masks" [n,H,W] uint8, "semantic" [H,W] category ids (255 ignore).
    Eval (batch 1): "boxes" [D,4], "scores" [D], "classes" [D] category ids, "valid" [D] bool,
    "mask_probs" [D,H,W], "sem_logits" [1,C,H,W].
    """

    def __init__(self, config: ModelConfig, label_space: Optional[LabelSpace] = None,
                 mask_min_score: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.label_space = label_space if label_space is not None else load_label_space(config.label_space)
        self.preprocess = Preprocess.from_config(config)
        self.backbone = build_fpn_backbone(config)
        strides = self.backbone.strides
        channels = self.backbone.out_channels
        self.rpn_levels: List[str] = list(self.backbone.levels)
        self.proposal_generator = RPN(config.rpn, channels, [strides[lv] for lv in self.rpn_levels])
        # Detections below mask_min_score get no mask at inference (the panoptic model: below the
        # fusion's instance threshold no rule reads one). 0 keeps every valid detection's mask.
        self.roi_heads = ROIHeads(config.roi_heads, channels, strides, self.label_space.thing_ids, mask_min_score)
        self.sem_seg_head = build_semantic_head(config, channels, strides, self.label_space)
        self.size_divisibility = self.backbone.size_divisibility
        lut = thing_index_lut(self.label_space.thing_ids, self.label_space.num_classes)
        self.register_buffer("_thing_index", torch.tensor(lut, dtype=torch.int64), persistent=False)

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"images must be [B,3,H,W] RGB, got shape {tuple(images.shape)}")
        height, width = int(images.shape[2]), int(images.shape[3])
        if height % self.size_divisibility or width % self.size_divisibility:
            raise InputError(f"image size {width}x{height} must be a multiple of {self.size_divisibility} "
                             "(the FPN's coarsest stride); pad or resize the input")

    def forward(self, images: torch.Tensor, targets: Optional[Sequence[Target]] = None,
                image_size: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """image_size (eval): float [2] (height, width) of the image region of a padded input
        (fit_pad), a runtime input of the graph; proposals and detections are clipped to it, as
        detectron2 clips to the resized image. None: the whole input."""
        self._check_images(images)
        image_hw = (int(images.shape[2]), int(images.shape[3]))
        features = self.backbone(self.preprocess(images))
        rpn_features = [features[lv] for lv in self.rpn_levels]
        roi_features = [features[lv] for lv in ROI_LEVELS]
        sem_logits = self.sem_seg_head(features)
        if self.training:
            if targets is None:
                raise InputError("PanopticFPN in training mode needs targets (one dict per image)")
            return self._losses(images, rpn_features, roi_features, sem_logits, image_hw, targets)
        if images.shape[0] != 1:
            raise InputError(f"inference runs on one image at a time (static shapes), "
                             f"got batch {images.shape[0]}")
        clip_hw = image_hw if image_size is None else (image_size[0], image_size[1])
        (boxes, _, valid), _ = self.proposal_generator(rpn_features, clip_hw)
        outputs = self.roi_heads(roi_features, boxes, valid, image_hw, clip_hw=clip_hw)
        outputs["sem_logits"] = sem_logits
        return outputs

    def _losses(self, images: torch.Tensor, rpn_features: List[torch.Tensor],
                roi_features: List[torch.Tensor], sem_logits: torch.Tensor, image_hw: tuple,
                targets: Sequence[Target]) -> Dict[str, torch.Tensor]:
        if len(targets) != images.shape[0]:
            raise InputError(f"got {len(targets)} targets for a batch of {images.shape[0]} images")
        instance_targets = [self._instance_target(t, i, image_hw) for i, t in enumerate(targets)]
        gt_boxes = [t["boxes"] for t in instance_targets]
        (boxes, _, valid), losses = self.proposal_generator(rpn_features, image_hw, gt_boxes)
        losses.update(self.roi_heads(roi_features, boxes, valid, image_hw, instance_targets))
        semantic = torch.stack([self._semantic_target(t, i, image_hw) for i, t in enumerate(targets)])
        head = self.config.semantic_head
        losses["loss_sem_seg"] = semantic_loss(sem_logits, semantic, self.label_space, head.mode,
                                               head.ignore_value)
        return weight_losses(losses, self.config.loss_weights)

    def _instance_target(self, target: Target, index: int, image_hw: tuple) -> Dict[str, torch.Tensor]:
        for key in ("boxes", "classes", "masks"):
            if key not in target:
                raise InputError(f"target {index} has no '{key}' (needs boxes, classes, masks, semantic)")
        boxes = torch.as_tensor(target["boxes"], dtype=torch.float32, device=self._thing_index.device)
        classes = torch.as_tensor(target["classes"], dtype=torch.int64, device=boxes.device)
        masks = torch.as_tensor(target["masks"], device=boxes.device)
        num = boxes.shape[0] if boxes.dim() == 2 else -1
        if boxes.dim() != 2 or boxes.shape[1] != 4 or classes.shape != (num,) \
                or masks.shape != (num,) + tuple(image_hw):
            raise InputError(f"target {index}: boxes [n,4], classes [n], masks [n,{image_hw[0]},"
                             f"{image_hw[1]}] expected, got {tuple(boxes.shape)}, "
                             f"{tuple(classes.shape)}, {tuple(masks.shape)}")
        num_categories = self._thing_index.shape[0]
        if num and (int(classes.min()) < 0 or int(classes.max()) >= num_categories):
            raise InputError(f"target {index}: classes {classes.tolist()} outside label space "
                             f"'{self.label_space.name}' (0..{num_categories - 1})")
        thing_index = self._thing_index[classes] if num else classes
        if num and bool((thing_index < 0).any()):
            stuff = sorted(set(classes[thing_index < 0].tolist()))
            raise InputError(f"target {index}: classes {stuff} are stuff in '{self.label_space.name}'; "
                             "instances must be thing classes")
        # Empty boxes cannot be regressed to (log of zero size); drop them with their masks.
        keep = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
        return {"boxes": boxes[keep], "thing_index": thing_index[keep], "masks": masks[keep]}

    def _semantic_target(self, target: Target, index: int, image_hw: tuple) -> torch.Tensor:
        if "semantic" not in target:
            raise InputError(f"target {index} has no 'semantic' label map")
        semantic = torch.as_tensor(target["semantic"], device=self._thing_index.device)
        if tuple(semantic.shape) != tuple(image_hw):
            raise InputError(f"target {index}: semantic must be [{image_hw[0]},{image_hw[1]}], "
                             f"got {tuple(semantic.shape)}")
        return semantic.long()


class PanopticModel(PanopticFPN):
    """PanopticFPN + PanopticFusion: the one inference graph (batch 1, fixed input size).

    Eval forward(image [1,3,H,W] float RGB 0..255, image_size=None) -> the fusion's dict (segment_map,
    category_map, segment table ...) merged with the network's raw outputs; with fusion.resolution
    "image" the raw outputs only ("mask_rois" [D,M,M] in place of "mask_probs"), fused by the
    Pipeline at the image's size. Training forward is PanopticFPN's.
    """

    def __init__(self, config: ModelConfig, label_space: Optional[LabelSpace] = None) -> None:
        super().__init__(config, label_space, mask_min_score=config.fusion.instance_score_threshold)
        self.fusion = PanopticFusion(config.fusion, self.label_space, config.semantic_head.mode,
                                     config.input_height, config.input_width, config.roi_heads.max_detections)
        # fusion.resolution "image": the graph ends at the network's outputs (M x M masks); the
        # Pipeline fuses at the image's size (fuse_at_image_size).
        self.fuse_in_graph = config.fusion.resolution == "network"
        self.roi_heads.paste_masks = self.fuse_in_graph

    @torch.no_grad()
    def network_outputs(self, image: torch.Tensor, mask_min_score: float) -> Dict[str, torch.Tensor]:
        """The network's raw inference outputs for one image, before the fusion (what training the
        fusion's conv head consumes), with masks for every detection scoring >= mask_min_score."""
        kept = self.roi_heads.mask_min_score
        self.roi_heads.mask_min_score = float(mask_min_score)
        try:
            return PanopticFPN.forward(self, image)
        finally:
            self.roi_heads.mask_min_score = kept

    def forward(self, images: torch.Tensor, targets: Optional[Sequence[Target]] = None,
                image_size: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        if self.training:
            return super().forward(images, targets)
        expected = (self.config.input_height, self.config.input_width)
        if tuple(images.shape[-2:]) != expected:
            raise InputError(f"PanopticModel runs at its configured input size {expected[1]}x{expected[0]}, "
                             f"got {images.shape[-1]}x{images.shape[-2]}")
        raw = super().forward(images, image_size=image_size)
        if not self.fuse_in_graph:
            return raw
        fused = self.fusion(raw["mask_probs"], raw["scores"], raw["classes"], raw["valid"], raw["sem_logits"])
        return {**raw, **fused}


def build_model(config: ModelConfig, label_space: Optional[LabelSpace] = None) -> PanopticModel:
    """The inference + training model for config (random weights; load a checkpoint onto it)."""
    return PanopticModel(config, label_space)
