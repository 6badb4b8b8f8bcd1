"""The node's pure-Python helpers, without roscore: the newest-frame slot and the rolling statistics."""
from __future__ import annotations

import threading

import pytest

from panoptic_perception.ros.frame_slot import NewestFrameSlot
from panoptic_perception.ros.stats import RollingStats


def test_newest_frame_slot_keeps_only_the_newest_and_counts_the_replaced():
    slot = NewestFrameSlot()
    for frame in range(5):
        slot.put(frame)
    assert slot.take(timeout_s=0.0) == 4
    assert (slot.received, slot.dropped) == (5, 4)
    assert slot.take(timeout_s=0.01) is None  # empty: the timeout passes, nothing is invented
    slot.put("a")
    assert slot.take() == "a" and slot.dropped == 4  # taken in time: not dropped


def test_newest_frame_slot_wakes_a_waiting_worker_and_close_releases_it():
    slot = NewestFrameSlot()
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout_s=10.0)))
    worker.start()
    slot.put("frame")
    worker.join(timeout=10.0)
    assert got == ["frame"]
    waiting = threading.Thread(target=lambda: got.append(slot.take(timeout_s=10.0)))
    waiting.start()
    slot.close()
    waiting.join(timeout=10.0)
    assert not waiting.is_alive() and got[-1] is None


def test_rolling_stats_median_p99_over_the_window_and_reset():
    stats = RollingStats(window=100)
    for value in range(1, 201):  # only the last 100 (101..200) are in the window
        stats.add({"network_ms": float(value)})
    summary = stats.summary()
    assert summary["network_ms_median"] == pytest.approx(150.5)
    assert summary["network_ms_p99"] == pytest.approx(199.01)
    assert stats.processed == 200 and "fps" in summary
    stats.reset()
    assert stats.summary() == {} and stats.processed == 200  # counts survive a reset, windows do not
