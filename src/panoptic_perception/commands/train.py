"""`train`: train Panoptic FPN from a config/train_*.yaml."""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from panoptic_perception.errors import ConfigError

HELP = ("train the network, or the Inria report's conv panoptic head on a trained one (CPU or CUDA with AMP; several "
        "processes under torchrun): checkpoints, resume, CSV/TensorBoard logs, periodic PQ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path,
                        help="training config, e.g. config/train_synthetic.yaml")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT_DIR/last.pt and train_state.pt")
    parser.add_argument("--out-dir", default=None, help="override the config's out_dir")
    parser.add_argument("--backbone-init", default=None, metavar="PATH_OR_URL",
                        help="override backbone_init: ImageNet backbone weights (torchvision .pth, MSRA .pkl, "
                             "or an import-weights --from torchvision file); 'none' trains from random weights")
    parser.add_argument("--iterations", type=int, default=None, help="override schedule.iterations")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="override device")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run(args: argparse.Namespace) -> int:

    from panoptic_perception.training import distributed
    from panoptic_perception.training.config import load_train_config
    from panoptic_perception.training.trainer import BEST_CHECKPOINT, LAST_CHECKPOINT, Trainer

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_train_config(args.config)
    changes = {}
    if args.out_dir is not None:
        changes["out_dir"] = args.out_dir
    if args.device is not None:
        changes["device"] = args.device
    if args.backbone_init is not None:
        changes["backbone_init"] = None if args.backbone_init.lower() == "none" else args.backbone_init
    if args.iterations is not None:
        if args.iterations <= 0:
            raise ConfigError(f"--iterations must be > 0, got {args.iterations}")
        changes["schedule"] = dataclasses.replace(config.schedule, iterations=args.iterations)
    config = dataclasses.replace(config, **changes)
    trainer = Trainer(config, resume=args.resume)
    main = trainer.dist.is_main
    stage = "" if config.stage == "network" else f"stage {config.stage} (network frozen), "
    processes = f", {trainer.dist.world_size} processes" if trainer.dist.enabled else ""
    if main:
        print(f"train: {stage}{len(trainer.train_set)} frames, model {trainer.model_config.backbone.name} "
              f"{trainer.model_config.input_width}x{trainer.model_config.input_height}, device {trainer.device}"
              f"{processes}, from iteration {trainer.iteration} to {config.schedule.iterations}")
    try:
        trainer.train(progress=not args.no_progress)
    finally:
        distributed.stop(trainer.dist)
    out = Path(config.out_dir)
    if main:
        print(f"train: done at iteration {trainer.iteration}; checkpoints {out / LAST_CHECKPOINT}"
              + (f", best {out / BEST_CHECKPOINT} (PQ {trainer.best_pq:.1f})" if trainer.best_pq >= 0 else ""))
    return 0
