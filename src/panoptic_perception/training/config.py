"""config/train_*.yaml -> TrainConfig."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Tuple

from panoptic_perception.config import load_dataclass
from panoptic_perception.data.augment import AugmentConfig
from panoptic_perception.data.datasets import DatasetConfig


@dataclass
class ScheduleConfig:
    # JSIS-Net / detectron2 style: SGD with momentum 0.9, linear warm-up, step decays.
    # "adam" suits the panoptic head stage: a few hundred parameters whose gradients differ by
    # orders of magnitude (the semantic weights start at zero), where one SGD rate fits none.
    optimizer: Literal["sgd", "adam"] = "sgd"
    iterations: int = 20000
    base_lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iterations: int = 500
    warmup_factor: float = 0.001
    lr_steps: Tuple[int, ...] = (14000, 18000)
    lr_gamma: float = 0.1
    grad_clip_norm: Optional[float] = 10.0

    def __post_init__(self) -> None:
        if self.iterations <= 0:
            raise ValueError(f"iterations must be > 0, got {self.iterations}")
        if self.base_lr <= 0:
            raise ValueError(f"base_lr must be > 0, got {self.base_lr}")
        if list(self.lr_steps) != sorted(self.lr_steps):
            raise ValueError(f"lr_steps must be increasing, got {list(self.lr_steps)}")


@dataclass
class PanopticHeadTrainConfig:
    """Stage panoptic_head: which detections train the Inria report's conv panoptic head and what each should become."""
    # Detections the fusion would use (None: the model's fusion.instance_score_threshold), so the
    # head learns on the inputs it refines at inference.
    min_score: Optional[float] = None
    # A detection's target is the GT instance of its class that its binarised mask overlaps with
    # IoU > match_iou, matched one-to-one by descending score (PQ's matching rule).
    match_iou: float = 0.5
    # Unmatched detections (false positives, duplicates): "background" trains them towards an
    # empty mask (the fusion then drops them); "ignore" leaves them out of the loss.
    unmatched: Literal["background", "ignore"] = "background"

    def __post_init__(self) -> None:
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"panoptic_head.min_score must be in [0, 1], got {self.min_score}")
        if not 0.0 <= self.match_iou < 1.0:
            raise ValueError(f"panoptic_head.match_iou must be in [0, 1), got {self.match_iou}")


@dataclass
class TrainConfig:
    # Relative paths resolve against the package root. null: init_from's own config, the network as it
    # was trained (normalisation, BatchNorm kind, input size), which a run continuing it should keep.
    model_config: Optional[str] = "config/model_resnet18.yaml"
    init_from: Optional[str] = None  # checkpoint whose weights start the run (same architecture)
    # ImageNet classifier weights that start the backbone (the rest starts random): our backbone file
    # from `import-weights --from torchvision`, a torchvision .pth, detectron2's MSRA R-50.pkl, or a
    # URL of one. The run then uses the weights' own input normalisation and FrozenBN (detectron2's
    # recipe); the checkpoints it writes carry both in their model config.
    backbone_init: Optional[str] = None
    # "network": train Panoptic FPN end to end. "panoptic_head": the Inria report's order - train only the
    # conv panoptic head (fusion.mode becomes conv_head) on the init_from network, frozen in eval mode.
    stage: Literal["network", "panoptic_head"] = "network"
    panoptic_head: PanopticHeadTrainConfig = field(default_factory=PanopticHeadTrainConfig)
    train_data: DatasetConfig = field(default_factory=lambda: DatasetConfig(root="data/synth_train"))
    val_data: Optional[DatasetConfig] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # The global batch: under `torchrun --nproc_per_node N` each process takes batch_size / N images
    # of it and the gradients are averaged, so base_lr belongs to this number, whatever N is. Changing
    # the global batch itself calls for the linear scaling rule (Goyal et al. 2017): base_lr and
    # batch_size in proportion, iterations and lr_steps in inverse proportion (detectron2's rule).
    batch_size: int = 4
    num_workers: int = 2
    min_instance_area_px: int = 16
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    seed: int = 0
    out_dir: str = "runs/train"
    log_every: int = 20
    eval_every: int = 2000
    eval_frames: int = 50
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        for name in ("batch_size", "log_every", "eval_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.num_workers < 0 or self.eval_frames < 0:
            raise ValueError("num_workers and eval_frames must be >= 0")
        if self.init_from and self.backbone_init:
            raise ValueError("set one of init_from (a whole trained network) and backbone_init (ImageNet "
                             "backbone weights), not both")
        if self.model_config is None and not self.init_from:
            raise ValueError("model_config is null, which means init_from's own config, but init_from is not set")
        if self.stage == "panoptic_head" and not self.init_from:
            raise ValueError("stage panoptic_head trains on top of a trained network: set init_from")


def load_train_config(path: str | Path) -> TrainConfig:
    return load_dataclass(TrainConfig, path)
