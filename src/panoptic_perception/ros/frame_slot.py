"""A one-frame mailbox between the subscriber callback and the worker thread.

The camera never waits for the network: a new frame replaces an unprocessed one (counted as
dropped), so latency stays bounded at any input rate and no backlog builds up.
"""
from __future__ import annotations

import threading
from typing import Any, Optional


class NewestFrameSlot:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[Any] = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            self.received += 1
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout_s: Optional[float] = None) -> Optional[Any]:
        """The newest item, or None when closed or after timeout_s without one."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
