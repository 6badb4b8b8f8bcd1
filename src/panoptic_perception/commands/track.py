"""`track`: run the Pipeline and its tracker over KITTI drives; write KITTI tracking files for `eval --tracking`."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import List, Optional

from panoptic_perception.errors import ConfigError, InputError

HELP = "track things over KITTI drives (real or synthetic) with the Pipeline; write KITTI tracking files"
# KITTI raw's OXTS packets and camera images are stamped a few milliseconds apart: a frame this close
# to the first or last packet takes that packet's pose rather than none.
POSE_CLAMP_NS = 50_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path,
                        help="a KITTI raw drive (DATE_drive_XXXX_sync, real or synthetic) or a folder holding drives "
                             "(as `synth --out` writes them)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder: <drive>.txt (KITTI tracking format) and <drive>.velocity.json per drive")
    parser.add_argument("--truth", action="store_true",
                        help="track the drive's ground-truth panoptic segmentation (gt/, synthetic drives) instead of "
                             "the network's: the tracker alone")
    parser.add_argument("--model", default="", help="model checkpoint (default: the shipped model)")
    parser.add_argument("--camera", default="02", help="KITTI camera of a drive (default: 02)")
    parser.add_argument("--backend", choices=["auto", "tensorrt", "torch", "onnxruntime"], default=None,
                        help="override the runtime config's backend (--truth runs no network: torch by default)")
    parser.add_argument("--max-frames", type=int, default=None, help="track at most this many frames of each drive")
    parser.add_argument("--tracker-config", type=Path, default=None,
                        help="tracker YAML (default: the pipeline config's, config/tracker.yaml)")


class _Poses:
    """odom -> vehicle at image stamps from a drive's oxts/ (None for a drive without)."""

    def __init__(self, drive) -> None:
        from panoptic_perception.data.oxts import read_drive_oxts, vehicle_poses
        from panoptic_perception.tracking.ego_motion import PoseInterpolator

        sequence = read_drive_oxts(drive.path)
        self.interpolator = None
        if sequence is not None:
            self.interpolator = PoseInterpolator(sequence.stamps_ns, vehicle_poses(sequence.packets, drive.calibration))

    def at(self, stamp_ns: int):
        if self.interpolator is None:
            return None
        first, last = self.interpolator.first_stamp_ns, self.interpolator.last_stamp_ns
        if first - POSE_CLAMP_NS <= stamp_ns < first:
            stamp_ns = first
        elif last < stamp_ns <= last + POSE_CLAMP_NS:
            stamp_ns = last
        return self.interpolator.pose_at(stamp_ns)


class _Truth:
    """A synthetic drive's ground-truth panoptic frames, in the pipeline's label space, by frame name."""

    def __init__(self, drive_dir: Path, label_space) -> None:
        from panoptic_perception.data.datasets.synthetic import SyntheticDataset

        if not (drive_dir / "gt" / "panoptic.json").is_file():
            raise InputError(f"--truth needs the drive's ground truth, but {drive_dir} has no gt/panoptic.json "
                             f"(a synthetic drive has one)")
        self.dataset = SyntheticDataset(drive_dir)
        if self.dataset.label_space.name != label_space.name:
            raise ConfigError(f"the drive's truth is in the {self.dataset.label_space.name} label space but the "
                              f"model's is {label_space.name}")
        part = self.dataset.parts[0]
        self.index = {str(a["image_id"]): k for k, a in enumerate(part.annotations)}

    def frame(self, name: str):
        if name not in self.index:
            raise InputError(f"frame {name} has no ground truth in gt/panoptic.json")
        sample = self.dataset[self.index[name]]
        return sample["panoptic"], sample["segments"]


def _track_drive(pipeline, drive_dir: Path, args: argparse.Namespace) -> int:
    """Tracks one drive into args.out; returns the number of frames tracked."""
    import numpy as np

    from panoptic_perception.data.datasets import read_rgb
    from panoptic_perception.data.kitti import read_drive
    from panoptic_perception.tracking.kitti_tracking import (
        KittiBoxConverter,
        TrackVelocities,
        track_labels,
        write_tracking_file,
        write_velocity_file,
    )

    drive = read_drive(drive_dir)
    camera_id = args.camera
    if camera_id not in drive.images:
        raise InputError(f"drive {drive_dir} has no camera {camera_id} (image_{camera_id}/)")
    camera = drive.camera(camera_id)
    converter = KittiBoxConverter(drive.calibration, camera_id)
    images = drive.images[camera_id][: args.max_frames]
    stamps = drive.timestamps_ns[camera_id]
    poses = _Poses(drive)
    truth = _Truth(drive_dir, pipeline.label_space) if args.truth else None
    name = drive_dir.name
    if poses.interpolator is None:
        print(f"track: {name} has no oxts/: no ego poses, so tracks live in the vehicle frame and their velocities "
              f"are relative to the moving ego", flush=True)
    pipeline.reset_tracking()
    labels, velocities, class_names = [], {}, {}
    frames_without_pose = 0
    grid_errors: List[str] = []
    for index, path in enumerate(images):
        stamp_ns = stamps[index]
        pose = poses.at(stamp_ns)
        frames_without_pose += pose is None
        if truth is not None:
            segment_map, segments = truth.frame(path.stem)
            result = pipeline.process_panoptic(segment_map, segments, camera, stamp_ns=stamp_ns, odom_from_vehicle=pose)
        else:
            try:
                rgb = read_rgb(path)
            except InputError as exc:  # one unreadable frame must not lose the drive: the tracker bridges it
                print(f"track: skipped {path}: {exc}", flush=True)
                continue
            result = pipeline.process(rgb, camera, stamp_ns=stamp_ns, odom_from_vehicle=pose)
        if result.tracking_frame is None:
            raise ConfigError("the pipeline config has tracking turned off; `track` needs it")
        if result.grid_error:
            grid_errors.append(result.grid_error)
        if result.tracking_reset:
            print(f"track: {name} frame {index}: tracks reset: {result.tracking_reset}", flush=True)
        vehicle_from_tracking = np.linalg.inv(pose) if result.tracking_frame == "odom" else None
        for label, track in track_labels(result.tracks, index, converter, vehicle_from_tracking):
            labels.append(label)
            velocities[(index, track.track_id)] = (track.vx_mps, track.vy_mps)
            class_names[track.track_id] = track.class_name
        if (index + 1) % 50 == 0:
            print(f"track: {name}: {index + 1}/{len(images)} frames", flush=True)
    if poses.interpolator is not None and frames_without_pose:
        print(f"track: {name}: {frames_without_pose} frame(s) outside the oxts/ time range had no ego pose "
              f"(their tracks are in the vehicle frame, velocities relative to the ego)", flush=True)
    if grid_errors:
        print(f"track: {name}: {len(grid_errors)} frame(s) had no grid, so no objects; first: {grid_errors[0]}",
              flush=True)
    write_tracking_file(args.out / f"{name}.txt", labels)
    write_velocity_file(args.out / f"{name}.velocity.json", TrackVelocities(
        name, len(images), poses.interpolator is not None and frames_without_pose == 0, velocities, class_names))
    tracks = len(class_names)
    print(f"track: {name}: {len(images)} frames, {tracks} tracks, {len(labels)} track-frames -> "
          f"{args.out / (name + '.txt')}", flush=True)
    return len(images)


def _drives(input_path: Path, camera: str) -> List[Path]:
    from panoptic_perception.data.kitti import find_drives

    if not input_path.is_dir():
        raise InputError(f"--input {input_path} is not a folder")
    drives = find_drives(input_path, camera)
    if not drives:
        raise InputError(f"--input {input_path} holds no KITTI drive with camera {camera} (image_{camera}/); "
                         f"tracking needs drives (timestamps and calibration), not loose images")
    return drives


def run(args: argparse.Namespace) -> int:
    from panoptic_perception.commands._outputs import check_writable
    from panoptic_perception.pipeline import Pipeline, load_pipeline_config

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    drives = _drives(args.input, args.camera)
    check_writable(args.out, "--out", folder=True)
    config = load_pipeline_config()
    config = dataclasses.replace(config, project_grid=True, **({"model_path": args.model} if args.model else {}),
                                 **({"tracker_config": str(args.tracker_config)} if args.tracker_config else {}))
    backend: Optional[str] = args.backend or ("torch" if args.truth else None)
    if backend:
        config = dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, backend=backend))
    pipeline = Pipeline(config)
    source = "ground-truth panoptic" if args.truth else pipeline.describe()
    print(f"track: {len(drives)} drive(s) from {source}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    frames = sum(_track_drive(pipeline, drive_dir, args) for drive_dir in drives)
    print(f"track: wrote {len(drives)} drive(s), {frames} frames, to {args.out}")
    return 0
