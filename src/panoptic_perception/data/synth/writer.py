"""Writes a synthetic drive to disk in KITTI raw layout with its ground truth beside it.

    OUT/DATE/calib_cam_to_cam.txt calib_velo_to_cam.txt calib_imu_to_velo.txt
    OUT/DATE/DATE_drive_XXXX_sync/image_02/data/0000000000.png   image_02/timestamps.txt
    OUT/DATE/DATE_drive_XXXX_sync/oxts/data/0000000000.txt  oxts/timestamps.txt  oxts/dataformat.txt
                                    (the ego's exact trajectory as KITTI GPS/IMU packets, see synth.ego)
    OUT/DATE/DATE_drive_XXXX_sync/gt/panoptic.json + panoptic/0000000000.png   (COCO panoptic)
                                    semantic/0000000000.png  (train ids, 255 void)
                                    bev/0000000000.npz       (see synth.bev.BevTruth)
                                    objects/0000000000.json  (3D boxes, vehicle frame)
                                    meta.json                (seed, config, frame conventions)

Frames are rendered and written by worker processes (each owns its own StreetWorld built from
the same seed, so they agree exactly); the parent appends timestamps and the panoptic JSON in
frame order and rewrites the JSON periodically, so an interrupted run keeps its finished frames.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple

import cv2
import numpy as np

from panoptic_perception.config import to_dict
from panoptic_perception.data import kitti, oxts
from panoptic_perception.data.panoptic_io import PanopticAnnotation, categories_json, id2rgb
from panoptic_perception.data.synth import ego
from panoptic_perception.data.synth.config import SynthConfig
from panoptic_perception.data.synth.world import StreetWorld, SynthFrame

_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # lossless either way; level 1 is ~4x faster than 6


def frame_name(index: int) -> str:
    return f"{index:010d}"


def drive_dir(out_dir: str | Path, config: SynthConfig) -> Path:
    return Path(out_dir) / config.date / f"{config.date}_drive_{config.drive:04d}_sync"


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image, _PNG_FAST):
        raise OSError(f"could not write {path}")


def write_frame_files(drive: Path, frame: SynthFrame) -> dict:
    """Write one frame's image and per-frame truth; returns its panoptic annotation as plain data."""
    name = frame_name(frame.index)
    _imwrite(drive / "image_02" / "data" / f"{name}.png", np.ascontiguousarray(frame.rgb[:, :, ::-1]))
    gt = drive / "gt"
    _imwrite(gt / "panoptic" / f"{name}.png", np.ascontiguousarray(id2rgb(frame.panoptic)[:, :, ::-1]))
    _imwrite(gt / "semantic" / f"{name}.png", frame.semantic)
    frame.bev.save_npz(gt / "bev" / f"{name}.npz")
    objects = {
        "frame": frame.index,
        "timestamp": kitti.format_timestamp_ns(frame.timestamp_ns),
        "frame_id": "vehicle",
        "objects": [o.to_json() for o in frame.objects],
    }
    (gt / "objects" / f"{name}.json").write_text(json.dumps(objects, indent=1))
    return PanopticAnnotation(name, f"{name}.png", frame.segments).to_coco()


_WORKER: dict = {}


def _worker_init(config: SynthConfig, seed: int, drive: str) -> None:
    _WORKER["world"] = StreetWorld(config, seed)
    _WORKER["drive"] = Path(drive)


def _worker_frame(index: int) -> Tuple[int, int, dict]:
    frame = _WORKER["world"].render(index)
    return index, frame.timestamp_ns, write_frame_files(_WORKER["drive"], frame)


class DriveWriter:
    """Writes frames 0..N-1 of StreetWorld(config, seed) under out_dir."""

    def __init__(self, out_dir: str | Path, config: SynthConfig, seed: int) -> None:
        self.config = config
        self.seed = int(seed)
        self.out_dir = Path(out_dir)
        self.drive = drive_dir(out_dir, config)
        self.world = StreetWorld(config, seed)
        self._images: List[dict] = []
        self._annotations: List[dict] = []
        self._stamps: List[int] = []
        self._ego: Optional[ego.EgoOxts] = None

    def prepare(self) -> None:
        for sub in ("image_02/data", "gt/panoptic", "gt/semantic", "gt/bev", "gt/objects"):
            (self.drive / sub).mkdir(parents=True, exist_ok=True)
        kitti.write_calibration(self.drive.parent, self.world.camera, "02")
        # The IMU where the written calib_imu_to_velo.txt puts it, read back as any reader will.
        calibration = kitti.KittiCalibration.read(self.drive.parent)
        self._ego = ego.EgoOxts(self.world, calibration.vehicle_from_imu())
        meta = {
            "generator": "panoptic_perception synth",
            "seed": self.seed,
            "config": to_dict(self.config),
            "label_space": self.config.label_space,
            "vehicle_frame": "x forward, y left, z up; origin on the ground below the camera (and below the "
            f"Velodyne, {kitti.VELODYNE_HEIGHT_M} m up); moves with the ego",
            "segment_ids": "stuff: train_id + 1; things: (train_id + 1) * 100000 + track_id",
            "street": {
                "road_right_m": self.world.section.road_right_m,
                "road_left_m": self.world.section.road_left_m,
                "curb_height_m": self.world.section.curb_height_m,
                "ego_y_m": self.world.section.ego_y_m,
            },
            "oxts": {
                "origin_lat_deg": ego.ORIGIN_LAT_DEG,
                "origin_lon_deg": ego.ORIGIN_LON_DEG,
                "origin_alt_m": ego.ORIGIN_ALT_M,
                "street_heading_rad": ego.HEADING_RAD,
                "note": "packets describe the IMU (calib_imu_to_velo.txt); the street's +x points "
                "street_heading_rad counter-clockwise from east",
            },
        }
        (self.drive / "gt" / "meta.json").write_text(json.dumps(meta, indent=1))
        (self.drive / "image_02" / "timestamps.txt").write_text("")
        oxts.write_dataformat(self.drive / oxts.OXTS_DIR)
        (self.drive / oxts.OXTS_DIR / "timestamps.txt").write_text("")

    def _accept(self, index: int, stamp_ns: int, annotation: dict) -> None:
        name = frame_name(index)
        self._images.append(
            {
                "id": name,
                "file_name": f"{name}.png",
                "width": self.world.camera.width,
                "height": self.world.camera.height,
            }
        )
        self._annotations.append(annotation)
        with (self.drive / "image_02" / "timestamps.txt").open("a") as handle:
            handle.write(kitti.format_timestamp_ns(stamp_ns) + "\n")
        # One packet per written frame, at its stamp: an interrupted run keeps oxts/ and images in step.
        oxts.write_oxts_packet(self.drive / oxts.OXTS_DIR, index, self._ego.packet(index))
        with (self.drive / oxts.OXTS_DIR / "timestamps.txt").open("a") as handle:
            handle.write(kitti.format_timestamp_ns(stamp_ns) + "\n")

    def _write_json(self) -> None:
        payload = {
            "images": self._images,
            "annotations": self._annotations,
            "categories": categories_json(self.world.labels),
        }
        path = self.drive / "gt" / "panoptic.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(path)

    def write(
        self, frames: int, workers: int = 1, progress: Optional[Callable[[int, float], None]] = None
    ) -> int:
        """Render and write frames 0..frames-1; returns how many were written."""
        self.prepare()
        start = time.perf_counter()
        done = 0
        try:
            for index, stamp, ann in self._results(range(frames), workers):
                self._accept(index, stamp, ann)
                done += 1
                if done % 25 == 0:
                    self._write_json()
                if progress is not None:
                    progress(done, time.perf_counter() - start)
        finally:
            self._write_json()
        return done

    def _results(self, indices: Iterable[int], workers: int):
        if workers <= 1:
            for i in indices:
                frame = self.world.render(i)
                yield i, frame.timestamp_ns, write_frame_files(self.drive, frame)
            return
        ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
        with ctx.Pool(
            workers, initializer=_worker_init, initargs=(self.config, self.seed, str(self.drive))
        ) as pool:
            yield from pool.imap(_worker_frame, indices, chunksize=1)
