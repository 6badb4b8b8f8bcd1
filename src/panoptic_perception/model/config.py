"""Model configuration: one dataclass tree, loaded once from YAML (config/model_*.yaml).

Defaults follow detectron2's Panoptic FPN where a choice exists; the light defaults for the
vehicle (ResNet-18, 128-wide FPN, 640x192 input, 50 detections) are set in the YAML files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Tuple

from panoptic_perception.config import load_dataclass

BACKBONE_NAMES = ("resnet50", "resnet18", "mobilenetv2")  # the values BackboneConfig.name takes
INPUT_DIVISIBILITY = 32  # the static input's width and height are multiples of this (see ModelConfig)


@dataclass
class BackboneConfig:
    name: Literal["resnet50", "resnet18", "mobilenetv2"] = "resnet18"
    norm: Literal["FrozenBN", "BN"] = "FrozenBN"
    freeze_at: int = 0  # detectron2 FREEZE_AT: 0 none, 1 stem, 2 stem+res2
    stride_in_1x1: bool = True  # MSRA ResNets (detectron2's R-50) put the stride in the 1x1 conv


@dataclass
class FPNConfig:
    channels: int = 256
    levels: Tuple[str, ...] = ("p2", "p3", "p4", "p5", "p6")  # strides 4, 8, 16, 32, 64


@dataclass
class RPNConfig:
    anchor_sizes: Tuple[int, ...] = (32, 64, 128, 256, 512)  # one size per FPN level
    aspect_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)
    iou_thresholds: Tuple[float, float] = (0.3, 0.7)  # below: background, above: foreground
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    nms_threshold: float = 0.7
    pre_nms_topk_train: int = 2000  # per level
    post_nms_topk_train: int = 1000
    pre_nms_topk_test: int = 1000  # per level; static
    post_nms_topk_test: int = 1000  # the fixed number of proposals at inference
    box_reg_weights: Tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    smooth_l1_beta: float = 0.0


@dataclass
class ROIHeadsConfig:
    box_pooler_resolution: int = 7
    mask_pooler_resolution: int = 14
    pooler_sampling_ratio: int = 0  # 0: adaptive, as detectron2
    box_fc_dim: int = 1024
    box_num_fc: int = 2
    mask_conv_dim: int = 256
    mask_num_conv: int = 4
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    iou_threshold: float = 0.5
    box_reg_weights: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    score_threshold_test: float = 0.05
    nms_threshold_test: float = 0.5
    max_detections: int = 100  # the fixed number of detections at inference (padded)
    smooth_l1_beta: float = 0.0


@dataclass
class SemanticHeadConfig:
    # "all": one channel per class of the label space (JSIS / Cityscapes style);
    # "stuff_plus_things": stuff classes then one "things" channel (detectron2 COCO style).
    mode: Literal["all", "stuff_plus_things"] = "all"
    conv_dims: int = 128
    common_stride: int = 4
    norm: Literal["GN", "none"] = "GN"
    ignore_value: int = 255


@dataclass
class LossWeights:
    # JSIS-Net Table 2 (lambda1..lambda6); Panoptic FPN's lambda_i scales the instance terms.
    rpn_objectness: float = 1.0
    rpn_box: float = 1.0
    box_cls: float = 1.0
    box_reg: float = 0.15
    mask: float = 0.3
    semantic: float = 1.0
    instance_scale: float = 1.0  # lambda_i
    semantic_scale: float = 0.5  # lambda_s


@dataclass
class FusionConfig:
    # "panoptic_fpn": detectron2's heuristic; "jsis": JSIS-Net's per-pixel probability rule;
    # "conv_head": the learned per-class refinement of the Inria report "Contribution to Panoptic
    # Segmentation", then the JSIS rule.
    mode: Literal["panoptic_fpn", "jsis", "conv_head"] = "panoptic_fpn"
    instance_score_threshold: float = 0.5
    overlap_threshold: float = 0.5
    mask_threshold: float = 0.5
    stuff_area_px: int = 4096
    # Input area at which stuff_area_px applies (resolution "network"); the limit scales with the
    # real input area.
    stuff_area_reference_px: int = 1024 * 2048
    # Where the fusion runs. "network": inside the graph at the input size (masks pasted and stuff
    # counted on the network canvas, maps upsampled nearest to the image): the fast path. "image":
    # detectron2's postprocessing: the graph stops at detections, the mask head's M x M
    # probabilities and the semantic logits; the Pipeline pastes masks at the image's own size,
    # resizes the semantic logits bilinearly to it and fuses there, counting stuff_area_px in image
    # pixels (no reference area). CPU, one thread: the imported R-50 on KITTI 1.08 s image vs 1.29 s
    # network (the image is smaller than its canvas); the light model 414 ms vs 79 ms, so it stays on
    # "network".
    resolution: Literal["network", "image"] = "network"

    def __post_init__(self) -> None:
        if self.resolution not in ("network", "image"):
            raise ValueError(f"fusion.resolution must be 'network' or 'image', got {self.resolution!r}")
        if self.resolution == "image" and self.mode == "conv_head":
            raise ValueError("fusion.resolution 'image' runs outside the graph, without the conv head's "
                             "weights: use mode panoptic_fpn or jsis, or resolution 'network'")

    def stuff_area_limit_px(self, input_area_px: int) -> int:
        return int(math.ceil(self.stuff_area_px * input_area_px / self.stuff_area_reference_px))


@dataclass
class ModelConfig:
    label_space: str = "cityscapes"
    input_width: int = 640
    input_height: int = 192
    input_format: Literal["RGB", "BGR"] = "RGB"  # channel order the network's weights expect
    pixel_mean: Tuple[float, float, float] = (123.675, 116.28, 103.53)  # in input_format order
    pixel_std: Tuple[float, float, float] = (58.395, 57.12, 57.375)
    # How a camera image becomes the static input. "stretch": scaled to input_width x input_height
    # (aspect ratio changes; what the shipped models were trained with). "fit_pad": detectron2's
    # rule - one scale factor, the image anchored top-left, the rest padded with the pixel mean
    # (0 after normalisation, as detectron2 pads); outputs are cropped back to the image region.
    resize: Literal["stretch", "fit_pad"] = "stretch"
    # fit_pad only, 0 = off: detectron2's ResizeShortestEdge (shortest edge to this, longest at
    # most resize_max_size_px), then capped to fit the static input.
    resize_shortest_edge_px: int = 0
    resize_max_size_px: int = 0
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: ROIHeadsConfig = field(default_factory=ROIHeadsConfig)
    semantic_head: SemanticHeadConfig = field(default_factory=SemanticHeadConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def __post_init__(self) -> None:
        # The FPN's coarsest bottom-up stride is 32 (P5); P6 (stride 64, RPN only) pools P5 to
        # ceil(P5 / 2), so 32 is enough, as detectron2's size_divisibility. KITTI at detectron2's
        # scale (1333x402) then pads to 1344x416, not 1344x448.
        for name, value in (("input_width", self.input_width), ("input_height", self.input_height)):
            if value <= 0 or value % INPUT_DIVISIBILITY:
                raise ValueError(f"{name} must be a positive multiple of {INPUT_DIVISIBILITY}, got {value}")
        if self.resize_shortest_edge_px < 0 or self.resize_max_size_px < 0:
            raise ValueError(f"resize_shortest_edge_px and resize_max_size_px must be >= 0 (0 = off), got "
                             f"{self.resize_shortest_edge_px} and {self.resize_max_size_px}")


def load_model_config(path: str | Path) -> ModelConfig:
    return load_dataclass(ModelConfig, path)
