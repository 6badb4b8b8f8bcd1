"""tf lookups that wait only for transforms that are on their way.

Waiting `timeout_s` for a frame tf has never heard of (no odometry published, no camera frame in tf)
costs every image that wait, in sim time: replayed at rate 0.05, 0.05 s of bag time is a second of
wall clock. A pair whose last lookup found a frame unknown or unconnected is therefore looked up
without waiting until it succeeds again; a transform that lags the image (extrapolation) is still
waited for, since the next message of a live tree usually closes the gap.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Set, Tuple

import numpy as np
import tf2_ros

from panoptic_perception.ros.conversions import transform_to_matrix

Pair = Tuple[str, str]


class TfLookup:
    """target <- source (4x4) at a stamp from a tf2 buffer, or (None, why)."""

    def __init__(self, buffer: Any, timeout_s: float, duration: Callable[[float], Any]) -> None:
        self.buffer = buffer
        self.timeout_s = timeout_s
        self.duration = duration  # rospy.Duration in the node; a plain float in tests
        self._absent: Set[Pair] = set()

    def matrix(self, target_frame: str, source_frame: str, stamp: Any) -> Tuple[Optional[np.ndarray], str]:
        pair = (target_frame, source_frame)
        wait_s = 0.0 if pair in self._absent else self.timeout_s
        try:
            tf = self.buffer.lookup_transform(target_frame, source_frame, stamp, self.duration(wait_s))
        except (tf2_ros.LookupException, tf2_ros.ConnectivityException) as exc:
            self._absent.add(pair)
            return None, str(exc)
        except tf2_ros.ExtrapolationException as exc:
            self._absent.discard(pair)
            return None, str(exc)
        self._absent.discard(pair)
        return transform_to_matrix(tf.transform), ""

    def forget(self) -> None:
        """After a clock jump tf2 empties its buffer: every frame is worth waiting for again."""
        self._absent.clear()
