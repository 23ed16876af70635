"""The meter's bounded, thread-safe buffer of readings not yet confirmed by RabbitMQ.

The ticker thread `put`s readings; the publishing thread `peek`s a batch, publishes it, and only
after RabbitMQ's confirm `release`s it. Every entry has a position that only grows, so a release
removes exactly what was published even if, meanwhile, a full buffer dropped some of those
entries (oldest first, counted in `dropped`).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Buffer(Generic[T]):
    def __init__(self, capacity: int, on_drop: Callable[[int], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._head = 0  # position of _items[0]
        self._cond = threading.Condition()
        self._on_drop = on_drop
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, items: Sequence[T]) -> int:
        """Append items; drop the oldest past capacity. Returns how many were dropped."""
        if not items:
            return 0
        with self._cond:
            self._items.extend(items)
            excess = len(self._items) - self.capacity
            for _ in range(max(0, excess)):
                self._items.popleft()
            if excess > 0:
                self._head += excess
                self.dropped += excess
            self._cond.notify_all()
        if excess > 0 and self._on_drop is not None:
            self._on_drop(excess)
        return max(0, excess)

    def peek(self, limit: int, timeout: float | None = None) -> tuple[int, list[T]]:
        """Up to `limit` oldest items (waiting up to `timeout` for one) and their end position."""
        with self._cond:
            if not self._items and timeout:
                self._cond.wait(timeout)
            items = list(itertools.islice(self._items, limit))
            return self._head + len(items), items

    def release(self, end: int) -> int:
        """Remove every item before position `end` (what was confirmed); returns how many."""
        with self._cond:
            count = max(0, min(end - self._head, len(self._items)))
            for _ in range(count):
                self._items.popleft()
            self._head += count
            return count

    def wake(self) -> None:
        """Wake a waiting `peek` (at shutdown)."""
        with self._cond:
            self._cond.notify_all()
