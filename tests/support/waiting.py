"""The one `wait_for` of the tests and benches: poll a condition until it holds or time runs out."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05,
             message: str = "", ignoring: tuple[type[BaseException], ...] = (),
             detail: Callable[[], str] | None = None) -> T:
    """Until `predicate()` is truthy, and return that value; an error in `ignoring` (a daemon or
    a node between two states) counts as not yet. On time-out, fail naming `message` and, when
    given, adding `detail()` (a journal, a log) to the failure."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ignoring:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}"
                                 + (f"\n{detail()}" if detail else ""))
        time.sleep(interval)
