"""Run a Pipeline over a dataset and score it: training's periodic eval, the demo, tests."""
from __future__ import annotations

from typing import Optional

from panoptic_perception.eval.pq import PQAccumulator, PQResult
from panoptic_perception.labels import LabelSpace


def evaluate_pipeline(pipeline, dataset, label_space: LabelSpace, max_frames: Optional[int] = None,
                      accumulator: Optional[PQAccumulator] = None) -> PQResult:
    """PQ / SQ / RQ and mIoU of `pipeline` on the first `max_frames` samples of `dataset`."""
    acc = accumulator if accumulator is not None else PQAccumulator(label_space)
    count = len(dataset) if max_frames is None else min(max_frames, len(dataset))
    for index in range(count):
        sample = dataset[index]
        result = pipeline.process(sample["image"])
        pred_segments = [{"id": s.id, "category_id": s.category_id, "iscrowd": 0} for s in result.segments]
        acc.add(sample["panoptic"], sample["segments"], result.segment_map, pred_segments,
                image_id=str(sample.get("image_id", index)))
    return acc.result()
