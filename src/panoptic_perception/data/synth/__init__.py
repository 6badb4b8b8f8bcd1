"""Procedural street world with exact panoptic, depth and bird's-eye ground truth.

    from panoptic_perception.data.synth import StreetWorld, SynthConfig
    world = StreetWorld(SynthConfig(), seed=3)
    frame = world.render(0)   # .rgb .panoptic .semantic .depth_m .segments .camera .objects .bev

`small_config(width, height)` gives the same camera at another image size (for tests and training).
"""

from __future__ import annotations

import dataclasses

from panoptic_perception.data.synth.bev import BevTruth
from panoptic_perception.data.synth.config import (
    CameraSettings,
    SynthConfig,
    WorldSettings,
    load_synth_config,
)
from panoptic_perception.data.synth.ids import stuff_segment_id, thing_segment_id, train_id_of_segment
from panoptic_perception.data.synth.world import ObjectBox, StreetWorld, SynthFrame


def small_config(width: int = 320, height: int = 96, base: SynthConfig | None = None) -> SynthConfig:
    """`base` (default SynthConfig()) with its camera scaled to width x height (same field of view)."""
    base = base if base is not None else SynthConfig()
    cam = base.camera
    sx, sy = width / cam.width, height / cam.height
    scaled = dataclasses.replace(
        cam, width=width, height=height, fx=cam.fx * sx, fy=cam.fy * sy, cx=cam.cx * sx, cy=cam.cy * sy
    )
    return dataclasses.replace(base, camera=scaled)


__all__ = [
    "BevTruth",
    "CameraSettings",
    "ObjectBox",
    "StreetWorld",
    "SynthConfig",
    "SynthFrame",
    "WorldSettings",
    "load_synth_config",
    "small_config",
    "stuff_segment_id",
    "thing_segment_id",
    "train_id_of_segment",
]
