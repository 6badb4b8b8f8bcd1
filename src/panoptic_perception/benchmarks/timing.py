"""Latency statistics used by every benchmark: median / p90 / p99 over repeated runs."""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Sequence

import numpy as np


def summarize_ms(samples_ms: Sequence[float]) -> Dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return {"median_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan"), "n": 0}
    return {
        "median_ms": float(np.median(values)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "n": int(values.size),
    }


def time_call_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> List[float]:
    """Wall-clock milliseconds of `repeats` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples
