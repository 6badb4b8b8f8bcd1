"""Fixtures shared by the node tests."""
from __future__ import annotations

import pytest
from rosharness import DRIVE_FRAMES, DRIVE_HEIGHT, DRIVE_WIDTH


@pytest.fixture(scope="module")
def drive_bag(tmp_path_factory):
    """A synthetic drive (with oxts/) and its bag from kitti2bag: (drive folder, bag path)."""
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter
    from panoptic_perception.ros.bag import write_kitti_bag

    root = tmp_path_factory.mktemp("drive")
    writer = DriveWriter(root, small_config(DRIVE_WIDTH, DRIVE_HEIGHT), seed=5)
    writer.write(DRIVE_FRAMES)
    bag = root / "drive.bag"
    write_kitti_bag(writer.drive, bag)
    return writer.drive, bag
