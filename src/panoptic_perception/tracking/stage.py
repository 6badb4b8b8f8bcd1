"""The stage after a frame's projection: tracks over time, track ids for segments, the fused grid.

The Pipeline calls it once per frame with the frame's ground objects and grid, the image stamp and
the ego pose (odom_from_vehicle, None when odometry is unknown). Without a pose the tracks live in
the vehicle frame with velocities relative to the ego, and there is no fused grid: fusing frames
needs to know how the vehicle moved between them, and guessing would smear the map.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import numpy as np

from panoptic_perception.geometry.objects import GroundObject, footprints_corners
from panoptic_perception.tracking.config import TrackerConfig
from panoptic_perception.tracking.tracker import CONFIRMED, Track, Tracker

if TYPE_CHECKING:
    from panoptic_perception.geometry.projection import GridResult
    from panoptic_perception.tracking.fused_grid import FusedGrid, FusedGridResult


@dataclass
class TrackingResult:
    """What tracking adds to one frame."""

    tracks: List[Track] = field(default_factory=list)  # every live track, by id
    frame: str = "vehicle"  # odom | vehicle: the frame of the tracks' coordinates
    track_of_segment: Dict[int, int] = field(default_factory=dict)  # segment id -> confirmed track id
    fused_grid: Optional[FusedGridResult] = None  # None without a pose or a frame grid
    reset_reason: Optional[str] = None  # why this frame started the tracks afresh (a bag loop...)


class TrackingStage:
    """Tracker plus fused grid, one frame at a time. Not thread-safe (the node calls it from one thread)."""

    def __init__(self, tracker_config: TrackerConfig, fused_grid: Optional[FusedGrid] = None,
                 label_space_names: Optional[Sequence[str]] = None) -> None:
        self.tracker = Tracker(tracker_config, label_space_names)
        self.fused_grid = fused_grid

    def reset(self) -> None:
        """Forget every track and the fused grid (a new drive); track ids keep counting up."""
        self.tracker.reset()
        if self.fused_grid is not None:
            self.fused_grid.reset()

    def update(self, objects: Sequence[GroundObject], stamp_ns: int, odom_from_vehicle: Optional[np.ndarray],
               grid: Optional[GridResult] = None) -> TrackingResult:
        """Tracks after this frame's objects (vehicle frame at stamp_ns) and, with a pose and a grid,
        the grid fused over time."""
        tracks = self.tracker.update(objects, stamp_ns, odom_from_vehicle)
        track_of_segment = {t.segment_id: t.track_id for t in tracks if t.status == CONFIRMED and t.segment_id}
        fused = None
        if self.fused_grid is not None and odom_from_vehicle is not None and grid is not None:
            moving_segments = {t.segment_id for t in tracks if t.is_moving and t.segment_id}
            footprints = footprints_corners([o.footprint for o in objects if o.segment_id in moving_segments])
            fused = self.fused_grid.update(grid, odom_from_vehicle, stamp_ns, footprints)
        return TrackingResult(tracks, self.tracker.frame or "vehicle", track_of_segment, fused,
                              self.tracker.reset_reason)
