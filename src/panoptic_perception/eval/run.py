"""Run a Pipeline over a dataset and score it: training's periodic eval, the demo, tests, and the
same frames through several fusion modes of one checkpoint (`eval --compare-fusion`)."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Collection, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from panoptic_perception.data.panoptic_io import Segment
from panoptic_perception.errors import ConfigError
from panoptic_perception.eval.pq import PQAccumulator, PQResult
from panoptic_perception.labels import LabelSpace
from panoptic_perception.runtime.config import RuntimeConfig


def evaluate_pipeline(pipeline, dataset, label_space: LabelSpace, max_frames: Optional[int] = None,
                      accumulator: Optional[PQAccumulator] = None, min_thing_area_px: int = 0) -> PQResult:
    """PQ / SQ / RQ and mIoU of `pipeline` on the first `max_frames` samples of `dataset`; ground-truth
    things under min_thing_area_px pixels count as crowd (void_small_things)."""
    acc = accumulator if accumulator is not None else PQAccumulator(label_space)
    count = len(dataset) if max_frames is None else min(max_frames, len(dataset))
    for index in range(count):
        sample = dataset[index]
        result = pipeline.process(sample["image"])
        segments = sample["segments"]
        if min_thing_area_px > 0:
            segments = void_small_things(sample["panoptic"], segments, label_space.thing_ids, min_thing_area_px)
        acc.add(sample["panoptic"], segments, result.segment_map, result.segments,
                image_id=str(sample.get("image_id", index)))
    return acc.result()


def void_small_things(panoptic: np.ndarray, segments: Sequence[Segment], thing_ids: Collection[int],
                      min_area_px: int) -> List[Segment]:
    """The ground-truth segments with every thing smaller than min_area_px pixels (in the panoptic map)
    marked crowd: PQ then ignores it, as COCO's crowd regions - not a miss when nothing finds it, and a
    prediction mostly on it is no false positive; its pixels still count for mIoU. Real datasets leave
    such far, tiny things unannotated (KITTI's DontCare boxes); a synthetic world labels every one."""
    ids, counts = np.unique(panoptic, return_counts=True)
    area_px = dict(zip(ids.tolist(), counts.tolist()))
    things = set(thing_ids)
    return [dataclasses.replace(s, iscrowd=True) if s.category_id in things and area_px.get(s.id, 0) < min_area_px
            else s for s in segments]


def fusion_pipelines(model_path: str | Path, modes: Sequence[str], runtime: RuntimeConfig
                     ) -> Iterator[Tuple[str, object]]:
    """(mode, Pipeline) for each fusion mode of one checkpoint (fusion.mode overridden), one at a time."""
    from panoptic_perception.model.config import FusionConfig
    from panoptic_perception.pipeline import Pipeline, PipelineConfig

    allowed = typing.get_args(typing.get_type_hints(FusionConfig)["mode"])
    unknown = [m for m in modes if m not in allowed]
    if unknown or not modes:
        raise ConfigError(f"fusion modes must be some of {', '.join(allowed)}, got {', '.join(modes) or 'none'}")
    for mode in modes:
        yield mode, Pipeline(PipelineConfig(model_path=str(model_path), runtime=runtime, project_grid=False,
                                            fusion_overrides={"mode": mode}))


def compare_fusions(model_path: str | Path, modes: Sequence[str], dataset, runtime: RuntimeConfig,
                    max_frames: Optional[int] = None, log=None) -> Dict[str, PQResult]:
    """PQ of each fusion mode of one checkpoint on the same frames, through the one Pipeline + evaluate_pipeline."""
    results: Dict[str, PQResult] = {}
    for mode, pipeline in fusion_pipelines(model_path, modes, runtime):
        if log is not None:
            log(f"fusion {mode}: {pipeline.backend.describe()}")
        results[mode] = evaluate_pipeline(pipeline, dataset, pipeline.label_space, max_frames)
    return results
