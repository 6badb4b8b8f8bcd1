"""Run a Pipeline over a dataset and score it: training's periodic eval, the demo, tests, and the
same frames through several fusion modes of one checkpoint (`eval --compare-fusion`)."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional, Sequence, Tuple

import torch

from panoptic_perception.errors import ConfigError
from panoptic_perception.eval.pq import PQAccumulator, PQResult
from panoptic_perception.labels import LabelSpace
from panoptic_perception.model.panoptic_head import STATE_PREFIX as CONV_HEAD_PREFIX
from panoptic_perception.runtime.config import RuntimeConfig


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


def state_for_fusion(state_dict: Mapping[str, torch.Tensor], mode: str, source: str) -> Dict[str, torch.Tensor]:
    """The checkpoint's weights for a model whose fusion runs in `mode`.

    Only conv_head fusion has weights of its own: other modes leave them out; conv_head needs them
    (an untrained head would only sharpen the masks, which is not seed 000's method).
    """
    own = {name: value for name, value in state_dict.items() if not name.startswith(CONV_HEAD_PREFIX)}
    if mode != "conv_head":
        return own
    if len(own) == len(state_dict):
        raise ConfigError(f"fusion conv_head: {source} holds no trained panoptic head ({CONV_HEAD_PREFIX}*); "
                          "train one with `python -m panoptic_perception train --config "
                          "config/train_panoptic_head.yaml`")
    return dict(state_dict)


def fusion_pipelines(model_path: str | Path, modes: Sequence[str], runtime: RuntimeConfig
                     ) -> Iterator[Tuple[str, object]]:
    """(mode, Pipeline) for each fusion mode on one checkpoint's network, built one at a time.

    The checkpoint's own weights and config with only fusion.mode changed; each Pipeline gets the
    model in memory because a config override cannot add or drop the head's weights on load.
    """
    from panoptic_perception.model.checkpoint import load_checkpoint
    from panoptic_perception.model.config import FusionConfig
    from panoptic_perception.pipeline import Pipeline, PipelineConfig, resolve_path
    from panoptic_perception.runtime.model_loader import build_eval_model

    allowed = typing.get_args(typing.get_type_hints(FusionConfig)["mode"])
    unknown = [m for m in modes if m not in allowed]
    if unknown or not modes:
        raise ConfigError(f"fusion modes must be some of {', '.join(allowed)}, got {', '.join(modes) or 'none'}")
    path = resolve_path(model_path)
    state_dict, model_config, _ = load_checkpoint(path)
    for mode in modes:
        config = dataclasses.replace(model_config, fusion=dataclasses.replace(model_config.fusion, mode=mode))
        module = build_eval_model(config, state_for_fusion(state_dict, mode, str(path)), str(path))
        yield mode, Pipeline(PipelineConfig(runtime=runtime, project_grid=False), module=module,
                             model_config=config)


def compare_fusions(model_path: str | Path, modes: Sequence[str], dataset, runtime: RuntimeConfig,
                    max_frames: Optional[int] = None, log=None) -> Dict[str, PQResult]:
    """PQ of each fusion mode of one checkpoint on the same frames, through the one Pipeline + evaluate_pipeline."""
    results: Dict[str, PQResult] = {}
    for mode, pipeline in fusion_pipelines(model_path, modes, runtime):
        if log is not None:
            log(f"fusion {mode}: {pipeline.backend.describe()}")
        results[mode] = evaluate_pipeline(pipeline, dataset, pipeline.label_space, max_frames)
    return results
