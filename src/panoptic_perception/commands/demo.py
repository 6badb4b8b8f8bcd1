"""`demo`: the main job end to end (what `make demo` runs)."""
from __future__ import annotations

import argparse
from pathlib import Path

from panoptic_perception.errors import ConfigError

HELP = "synthesise a drive, replay it as a bag through the node (kitti.launch), report speed and PQ"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: out/demo)")
    parser.add_argument("--model", default="", help="model file (default: the shipped model)")
    parser.add_argument("--frames", type=int, default=20, help="frames in the synthetic drive (default: 20)")
    parser.add_argument("--seed", type=int, default=7, help="synthetic world seed (default: 7)")
    parser.add_argument("--rate", type=float, default=0.05,
                        help="bag playback rate; on 2 idle CPU cores the node runs the shipped model at its 1280x384 "
                             "input at about 1.8 fps (bench node), so 0.05 (0.5 Hz) leaves room for a busy "
                             "machine and rviz (default: 0.05)")
    parser.add_argument("--no-rviz", action="store_true", help="skip the rviz screenshot under Xvfb")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="give up after this long (default: 900)")


def run(args: argparse.Namespace) -> int:
    from panoptic_perception.ros.demo_run import run_demo

    if args.frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {args.frames}")
    if args.rate <= 0:
        raise ConfigError(f"--rate must be > 0, got {args.rate}")
    if args.model and not Path(args.model).is_file():
        raise ConfigError(f"--model {args.model} does not exist")
    return run_demo(args.out, args.model, args.frames, args.seed, args.rate, not args.no_rviz, args.timeout_s)
