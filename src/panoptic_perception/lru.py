"""A small least-recently-used cache for per-image-size and per-camera tables.

Such tables are cheap to rebuild and a stream normally shows one size, but a hostile or broken
camera can send a new size every frame: an unbounded dict then grows memory forever (issue 15:
30 sizes took a node from 601 to 805 MB). Bounded, the worst case is `maxsize` tables.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, Optional, TypeVar

V = TypeVar("V")


class LruCache(Generic[V]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Optional[V]:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V) -> V:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)
        return value

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        value = self.get(key)
        return self.put(key, build()) if value is None else value

    def clear(self) -> None:
        self._items.clear()
