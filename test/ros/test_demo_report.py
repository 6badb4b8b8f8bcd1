"""The demo's report scores what the node published against the drive's truth (no roscore needed)."""
from __future__ import annotations

import re

import genpy
from std_msgs.msg import Header

from panoptic_perception.data.datasets import SyntheticDataset
from panoptic_perception.data.kitti import read_drive
from panoptic_perception.data.synth import small_config
from panoptic_perception.data.synth.writer import DriveWriter
from panoptic_perception.labels import load_label_space
from panoptic_perception.ros.conversions import panoptic_to_msg
from panoptic_perception.ros.demo_run import DemoOutputs, report


def test_the_truth_published_as_the_nodes_output_scores_pq_100(tmp_path, capsys):
    writer = DriveWriter(tmp_path, small_config(160, 48), seed=3)
    writer.write(3)
    drive = writer.drive
    stamps = read_drive(drive).timestamps_ns["02"]
    space = load_label_space("cityscapes")
    outputs = DemoOutputs()
    for index, sample in enumerate(SyntheticDataset(drive)):
        header = Header(stamp=genpy.Time(nsecs=stamps[index]), frame_id="camera")
        outputs.panoptic[stamps[index]] = panoptic_to_msg(sample["panoptic"], sample["segments"], header, space)
    assert report(tmp_path, drive, outputs, 3, None) == 0
    printed = capsys.readouterr().out
    assert re.search(r"PQ against the synthetic ground truth \(3 frames\)", printed)
    assert re.search(r"All\s+100\.0", printed), printed
