"""Run a Pipeline over a dataset and score it: training's periodic eval, the demo, tests, and the
same frames through several fusion modes of one checkpoint (`eval --compare-fusion`)."""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple

from panoptic_perception.errors import ConfigError
from panoptic_perception.eval.pq import PQAccumulator, PQResult
from panoptic_perception.labels import LabelSpace
from panoptic_perception.runtime.config import RuntimeConfig


def evaluate_pipeline(pipeline, dataset, label_space: LabelSpace, max_frames: Optional[int] = None,
                      accumulator: Optional[PQAccumulator] = None) -> PQResult:
    """PQ / SQ / RQ and mIoU of `pipeline` on the first `max_frames` samples of `dataset`."""
    acc = accumulator if accumulator is not None else PQAccumulator(label_space)
    count = len(dataset) if max_frames is None else min(max_frames, len(dataset))
    for index in range(count):
        sample = dataset[index]
        result = pipeline.process(sample["image"])
        acc.add(sample["panoptic"], sample["segments"], result.segment_map, result.segments,
                image_id=str(sample.get("image_id", index)))
    return acc.result()


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
