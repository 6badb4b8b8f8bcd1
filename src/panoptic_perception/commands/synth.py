"""`synth`: write a synthetic street drive in KITTI raw layout with exact panoptic / BEV truth."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from panoptic_perception.errors import ConfigError

HELP = "render a synthetic street drive (KITTI raw layout + COCO panoptic, semantic, BEV and 3D box truth)"

_CAMERA_FLAGS = ("width", "height", "height_m", "pitch_deg", "roll_deg", "fx", "fy", "cx", "cy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output root (DATE/ folders go here)")
    parser.add_argument("--frames", type=int, default=100, help="number of frames (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    parser.add_argument("--drives", type=int, default=1,
                        help="number of drives, numbered from --drive, with seeds --seed, --seed+1, ... "
                             "(default: 1)")
    parser.add_argument(
        "--config", type=Path, default=None, help="SynthConfig YAML (default: config/synth.yaml)"
    )
    parser.add_argument("--width", type=int, help="image width in pixels (default 1242)")
    parser.add_argument("--height", type=int, help="image height in pixels (default 375)")
    parser.add_argument(
        "--height-m", type=float, help="camera height above the road in metres (default 1.65)"
    )
    parser.add_argument("--pitch-deg", type=float, help="camera pitch, positive looks down (default 0)")
    parser.add_argument("--roll-deg", type=float, help="camera roll (default 0)")
    parser.add_argument("--fx", type=float, help="focal length x in pixels (default KITTI P_rect_02)")
    parser.add_argument("--fy", type=float, help="focal length y in pixels")
    parser.add_argument("--cx", type=float, help="principal point x in pixels")
    parser.add_argument("--cy", type=float, help="principal point y in pixels")
    parser.add_argument(
        "--scale-intrinsics",
        action="store_true",
        help="with --width/--height: scale fx, fy, cx, cy with the image instead of keeping them",
    )
    parser.add_argument("--speed-mps", type=float, help="ego speed in m/s (default 8)")
    parser.add_argument("--date", help="KITTI date folder name, YYYY_MM_DD (default 2011_09_26)")
    parser.add_argument("--drive", type=int, help="drive number (default 1)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="render processes (default: min(2, cores))",
    )


def build_config(args: argparse.Namespace):
    """SynthConfig from --config plus the command-line overrides (validated like the YAML)."""
    from panoptic_perception.config import from_dict, to_dict
    from panoptic_perception.data.synth import load_synth_config, small_config

    config = load_synth_config(args.config)
    data = to_dict(config)
    for flag in _CAMERA_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            data["camera"][flag] = value
    for flag in ("speed_mps", "date", "drive"):
        value = getattr(args, flag, None)
        if value is not None:
            data[flag] = value
    if args.scale_intrinsics and (args.width or args.height):
        base = dataclasses.replace(
            config,
            camera=from_dict(
                type(config.camera),
                {k: v for k, v in data["camera"].items() if k not in ("width", "height")},
                where="camera",
            ),
        )
        scaled = small_config(args.width or config.camera.width, args.height or config.camera.height, base)
        data["camera"] = to_dict(scaled.camera)
    return from_dict(type(config), data, where="synth arguments")


def run(args: argparse.Namespace) -> int:
    from panoptic_perception.data.synth.writer import DriveWriter

    if args.frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {args.frames}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.drives < 1:
        raise ConfigError(f"--drives must be at least 1, got {args.drives}")
    config = build_config(args)

    def progress(done: int, elapsed_s: float) -> None:
        if done == args.frames or done % 10 == 0:
            print(f"synth: {done}/{args.frames} frames, {elapsed_s:.1f} s", flush=True)

    # Several short drives (one street each, seeds seed, seed+1, ...) give a training set far more
    # variety than one long drive of similar consecutive frames.
    for k in range(args.drives):
        drive_config = dataclasses.replace(config, drive=config.drive + k)
        writer = DriveWriter(args.out, drive_config, args.seed + k)
        done = writer.write(args.frames, workers=args.workers, progress=progress)
        print(f"synth: wrote {done} frames to {writer.drive} (seed {args.seed + k})")
    return 0
