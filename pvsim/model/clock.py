"""Where "now" comes from: wall time for the daemons, a simulated day for pvsim-run.

The meter asks its clock for the instants to read at; nothing else reads wall time for data, which
is what makes runs reproducible and time logic testable. Instants are whole epoch seconds (int):
cheap to compare and hash, and exactly the identity a reading keeps across restarts.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from typing import Protocol
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)


class Clock(Protocol):
    """Where the meter's instants come from."""

    def ticks(self) -> Iterator[int]:
        """Yield the epoch seconds at which the meter reads, in increasing order."""
        ...


def local_midnight(day: dt.date, tz: ZoneInfo) -> int:
    """The start of a local day (zoneinfo resolves DST for us).

    Parameters
    ----------
    day : datetime.date
        The local date.
    tz : zoneinfo.ZoneInfo
        The zone.

    Returns
    -------
    instant : int
        Epoch seconds [s] of 00:00 local time on `day`.
    """
    return int(dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp())


def day_bounds(day: dt.date, tz: ZoneInfo, days: int = 1) -> tuple[int, int]:
    """The instants of `days` local calendar days: 23, 24 or 25 hours each.

    Parameters
    ----------
    day : datetime.date
        The first local date.
    tz : zoneinfo.ZoneInfo
        The zone.
    days : int, default 1
        How many days.

    Returns
    -------
    start, end : int
        Epoch seconds [s]: the days are [start, end).
    """
    return local_midnight(day, tz), local_midnight(day + dt.timedelta(days=days), tz)


class SimClock:
    """Steps through [start, end) by `step` seconds.

    With `speed=None` it never sleeps (the accelerated run); with a speed it paces the simulated
    instants at `speed` times real time, measured from the first tick without drift.
    """

    def __init__(self, start: int, end: int, step: int = 1, speed: float | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if step < 1:
            raise ValueError("step must be at least 1 second")
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive")
        self.start, self.end, self.step, self.speed = start, end, step, speed
        self._sleep, self._monotonic = sleep, monotonic

    def __len__(self) -> int:
        """The number of ticks."""
        return max(0, -(-(self.end - self.start) // self.step))

    def ticks(self) -> Iterator[int]:
        """Epoch seconds [s] from start, `step` apart, before end (paced with a speed)."""
        if self.speed is None:
            yield from range(self.start, self.end, self.step)
            return
        origin = self._monotonic()
        for instant in range(self.start, self.end, self.step):
            due = origin + (instant - self.start) / self.speed
            delay = due - self._monotonic()
            if delay > 0:
                self._sleep(delay)
            yield instant


class RealClock:
    """Whole seconds of wall time, forever, on a schedule that does not drift.

    Each tick is computed from the previous one (+1 s), not from when the previous work ended,
    so an hour yields exactly 3,600 ticks. Seconds the schedule fell behind (a stall, a suspend,
    a VM pause, an NTP step forward) are all yielded at once, as after a restart, up to
    `max_catch_up` of them: older ones are skipped and reported to `on_skip(first, count)`. A step
    backwards is waited out, in slices of at most a second (so the caller's `sleep` can show it is
    alive), so that no instant is ever yielded twice.
    """

    def __init__(self, max_catch_up: int = 86400,
                 now: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 on_skip: Callable[[int, int], None] | None = None) -> None:
        self.max_catch_up = max_catch_up
        self._now, self._sleep, self._on_skip = now, sleep, on_skip

    def ticks(self) -> Iterator[int]:
        """Every whole epoch second [s] from the next one on, each once (the class docstring)."""
        nxt = int(self._now()) + 1
        waiting = catching_up = False  # log each step back and each jump ahead once
        while True:
            now = self._now()
            if now < nxt:
                if nxt - now > 2 and not waiting:
                    log.warning("wall clock moved back %.0f s; waiting for it, so that no "
                                "instant is read twice", nxt - now)
                waiting = True
                self._sleep(min(nxt - now, 1.0))
                continue  # re-check: a signal may wake us early, the clock may move again
            waiting = False
            behind = int(now) - nxt  # seconds due besides this one
            if behind > self.max_catch_up:
                skipped = behind - self.max_catch_up
                log.warning("wall clock jumped %d s ahead: producing the last %d s, the %d s "
                            "before them are lost", behind, self.max_catch_up, skipped)
                if self._on_skip is not None:
                    self._on_skip(nxt, skipped)
                nxt += skipped
                catching_up = True
            elif behind > 2 and not catching_up:
                log.warning("wall clock jumped %d s ahead: producing the seconds missed", behind)
                catching_up = True
            elif behind == 0:
                catching_up = False
            yield nxt
            nxt += 1
