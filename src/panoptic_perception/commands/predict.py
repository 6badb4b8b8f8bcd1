"""`predict`: run the Pipeline over images and write COCO panoptic predictions for `eval`."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from panoptic_perception.errors import ConfigError, InputError

HELP = "run the Pipeline over a KITTI drive or an image folder; write COCO panoptic predictions"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="model checkpoint (default: the shipped model)")
    parser.add_argument("--input", required=True, type=Path,
                        help="a KITTI raw drive (DATE_drive_XXXX_sync, real or synthetic), a folder holding drives "
                             "(as `synth --out` writes them), or a folder of images")
    parser.add_argument("--out", required=True, type=Path, help="output folder: panoptic.json + panoptic/*.png")
    parser.add_argument("--camera", default="02", help="KITTI camera of a drive (default: 02)")
    parser.add_argument("--backend", choices=["auto", "tensorrt", "torch", "onnxruntime"], default=None,
                        help="override the runtime config's backend")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")


def _images(input_path: Path, camera: str):
    """(image_id, path) pairs: KITTI frame names for one drive, DRIVE_FRAME for several, file stems for
    a folder of images."""
    if not input_path.is_dir():
        raise InputError(f"--input {input_path} is not a folder")
    from panoptic_perception.data.kitti import find_drives, read_drive

    drives = find_drives(input_path, camera)
    if drives:
        pairs = []
        for drive_dir in drives:
            drive = read_drive(drive_dir, require_calibration=False)
            prefix = f"{drive_dir.name}_" if len(drives) > 1 else ""
            pairs += [(prefix + p.stem, p) for p in drive.images[camera]]
        return pairs
    paths = sorted(p for p in input_path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"--input {input_path} holds no KITTI drive with camera {camera} (image_{camera}/) "
                         f"and no images")
    return [(p.stem, p) for p in paths]


def run(args: argparse.Namespace) -> int:

    from panoptic_perception.commands._outputs import check_writable
    from panoptic_perception.data.datasets import read_rgb
    from panoptic_perception.data.panoptic_io import PanopticWriter
    from panoptic_perception.pipeline import Pipeline, load_pipeline_config

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    images = _images(args.input, args.camera)[: args.max_frames]
    check_writable(args.out, "--out", folder=True)
    config = load_pipeline_config()
    config = dataclasses.replace(config, project_grid=False, **({"model_path": args.model} if args.model else {}))
    if args.backend:
        config = dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, backend=args.backend))
    pipeline = Pipeline(config)
    print(f"predict: {pipeline.describe()}", flush=True)
    written = skipped = 0
    writer = None  # made with the first good frame: a run with none leaves no empty folders behind
    try:
        for index, (image_id, path) in enumerate(images):
            try:
                result = pipeline.process(read_rgb(path))
            except InputError as exc:  # one unreadable frame must not lose the others
                print(f"predict: skipped {path}: {exc}", flush=True)
                skipped += 1
                continue
            if writer is None:
                writer = PanopticWriter(args.out / "panoptic.json", args.out / "panoptic", pipeline.label_space)
            writer.add(image_id, path.name, result.segment_map, result.segments)
            written += 1
            if (index + 1) % 10 == 0:
                print(f"predict: {index + 1}/{len(images)} frames", flush=True)
    finally:
        if writer is not None:
            writer.close()
    if not written:
        raise InputError(f"none of the {len(images)} images in {args.input} could be read; nothing written")
    print(f"predict: wrote {written} frames to {args.out} ({skipped} skipped)")
    return 0
