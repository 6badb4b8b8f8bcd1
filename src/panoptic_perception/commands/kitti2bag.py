"""`kitti2bag`: a KITTI raw drive (real or synthetic) -> a rosbag the node can replay (ros/bag.py writes it)."""
from __future__ import annotations

import argparse
from pathlib import Path

from panoptic_perception.commands._outputs import check_writable
from panoptic_perception.errors import ConfigError

HELP = ("convert a KITTI raw drive folder (real or synthetic) into a rosbag (Image, CameraInfo, /tf_static, "
        "and /tf odom -> vehicle from oxts/)")
COMPRESSIONS = ("none", "bz2", "lz4")  # rosbag's; ros/bag.py checks the same list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drive", required=True, type=Path,
                        help="drive folder DATE/DATE_drive_XXXX_sync (calibration files in DATE/)")
    parser.add_argument("--out", required=True, type=Path, help="bag file to write")
    parser.add_argument("--camera", default="02",
                        help="KITTI camera 00, 01, 02 or 03 (default: 02, colour left)")
    parser.add_argument("--frame-id", default=None,
                        help="optical frame id of the camera (default: camera_color_left for 02, ...)")
    parser.add_argument("--vehicle-frame", default="base_link", help="tf parent frame (default: base_link)")
    parser.add_argument("--odom-frame", default="odom",
                        help="tf frame of the ego motion from oxts/: the vehicle at the first packet (default: odom)")
    parser.add_argument("--namespace", default="/kitti", help="topic namespace (default: /kitti)")
    parser.add_argument("--max-frames", type=int, default=None, help="write at most this many frames")
    parser.add_argument("--compression", default="none", choices=COMPRESSIONS, help="bag compression")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"--out {args.out} exists; pass --overwrite to replace it")
    if args.out.suffix != ".bag":
        raise ConfigError(f"--out must name a .bag file, got {args.out}")
    check_writable(args.out, "--out")
    from panoptic_perception.ros.bag import write_kitti_bag  # rosbag and the messages: not for --help

    summary = write_kitti_bag(args.drive, args.out, camera=args.camera, frame_id=args.frame_id,
                              vehicle_frame=args.vehicle_frame, namespace=args.namespace,
                              max_frames=args.max_frames, compression=args.compression,
                              odom_frame=args.odom_frame)
    duration_s = (summary.last_stamp_ns - summary.first_stamp_ns) / 1e9
    print(f"kitti2bag: wrote {summary.frames_written} frames ({duration_s:.2f} s) to {summary.path}")
    print(f"  {summary.image_topic}, {summary.info_topic}, /tf_static "
          f"({summary.vehicle_frame} -> {summary.camera_frame})")
    if summary.tf_written:
        print(f"  /tf ({summary.odom_frame} -> {summary.vehicle_frame}) at {summary.tf_written} OXTS stamps")
    else:
        print(f"  no oxts/ in {args.drive}: no /tf ({summary.odom_frame} -> {summary.vehicle_frame}) written")
    if summary.skipped:
        print(f"  skipped {len(summary.skipped)} frame(s): " + "; ".join(summary.skipped))
    return 0
