"""The node's pure-Python helpers, without roscore: the newest-frame slot, the rolling statistics and
the tf lookup's wait policy."""
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


class _Buffer:
    """A tf2 buffer stand-in: answers from a script of outcomes and records each wait it was given."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.waits_s = []

    def lookup_transform(self, target, source, stamp, timeout):
        self.waits_s.append(timeout)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        from geometry_msgs.msg import TransformStamped

        msg = TransformStamped()
        msg.transform.rotation.w = 1.0
        msg.transform.translation.x = outcome
        return msg


def test_tf_lookup_stops_waiting_for_a_frame_tf_does_not_know_and_waits_again_once_it_appears():
    import tf2_ros

    from panoptic_perception.ros.tf_lookup import TfLookup

    missing = tf2_ros.LookupException('"odom" passed to lookupTransform argument target_frame does not exist')
    late = tf2_ros.ExtrapolationException("Lookup would require extrapolation into the future")
    buffer = _Buffer([missing, missing, 2.0, late, late, missing])
    lookup = TfLookup(buffer, timeout_s=0.05, duration=float)
    matrix, why = lookup.matrix("odom", "base_link", 0)
    assert matrix is None and "does not exist" in why
    assert lookup.matrix("odom", "base_link", 1)[0] is None
    matrix, _ = lookup.matrix("odom", "base_link", 2)
    assert matrix[0, 3] == 2.0
    lookup.matrix("odom", "base_link", 3)  # lagging odometry: worth waiting for, every time
    lookup.matrix("odom", "base_link", 4)
    lookup.matrix("odom", "base_link", 5)
    # waits: first try, then none while odom is unknown (it appears then), then the full wait again
    assert buffer.waits_s == [0.05, 0.0, 0.0, 0.05, 0.05, 0.05]


def test_tf_lookup_waits_again_after_a_clock_jump_and_keeps_pairs_apart():
    import tf2_ros

    from panoptic_perception.ros.tf_lookup import TfLookup

    missing = tf2_ros.LookupException("no such frame")
    buffer = _Buffer([missing, 1.0, missing, missing])
    lookup = TfLookup(buffer, timeout_s=0.05, duration=float)
    lookup.matrix("odom", "base_link", 0)
    lookup.matrix("base_link", "camera", 0)  # another pair: its own first wait
    lookup.matrix("odom", "base_link", 1)
    lookup.forget()  # tf2 emptied its buffer: what was absent may be on its way again
    lookup.matrix("odom", "base_link", 2)
    assert buffer.waits_s == [0.05, 0.05, 0.0, 0.05]
