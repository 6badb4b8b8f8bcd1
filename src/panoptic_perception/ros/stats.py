"""Rolling per-stage timing statistics for /diagnostics."""
from __future__ import annotations

import collections
import threading
import time
from typing import Deque, Dict

import numpy as np


class RollingStats:
    def __init__(self, window: int = 200) -> None:
        self._lock = threading.Lock()
        self._samples: Dict[str, Deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=window))
        self._done_times: Deque[float] = collections.deque(maxlen=window)
        self.processed = 0
        self.skipped = 0

    def add(self, values_ms: Dict[str, float]) -> None:
        with self._lock:
            for key, value in values_ms.items():
                self._samples[key].append(float(value))
            self._done_times.append(time.monotonic())
            self.processed += 1

    def reset(self) -> None:
        """Forget the window (the clock jumped back): counts stay, medians and p99 start afresh."""
        with self._lock:
            self._samples.clear()
            self._done_times.clear()

    def summary(self) -> Dict[str, float]:
        """median and p99 per key, plus frames per second over the window."""
        with self._lock:
            out = {}
            for key, values in self._samples.items():
                if values:
                    arr = np.fromiter(values, dtype=np.float64)
                    out[f"{key}_median"] = float(np.median(arr))
                    out[f"{key}_p99"] = float(np.percentile(arr, 99))
            if len(self._done_times) >= 2:
                span = self._done_times[-1] - self._done_times[0]
                out["fps"] = (len(self._done_times) - 1) / span if span > 0 else 0.0
            return out
