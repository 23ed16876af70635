"""The local time of an instant in a zone, fast: what every row of a run needs.

A row needs its instant's local date (its file, its day's aggregate), its seconds since local
midnight (the PV curve) and its ISO 8601 text with the UTC offset (the CSV). Asking zoneinfo and
`isoformat` for each of 31.5 million instants of a year costs more than the rest of a row, yet
they only change at local midnight and at a change of UTC offset. A `LocalSpan` is such a stretch
of instants, where the date and the offset hold: inside it the wall clock is the instant minus a
constant, and the text is the span's date and offset around two table lookups ("HH:" and "MM:SS").

`LocalTime.span(instant)` finds the span of an instant by asking zoneinfo at the day's two ends
and bisecting to a change between them. That is exact because the tz database never changes a
zone's offset twice within 48 hours (the closest two changes of any zone are 95 hours apart,
Africa/Freetown 1939; tests/model/test_localtime.py checks every zone installed), so a day holds
at most one change. The text is cut from a real `isoformat()` of an instant of the span, so it is
byte for byte what `isoformat()` writes, odd offsets with seconds included.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DAY_SECONDS = 86400
# A wall-clock time's text, "HH:" + "MM:SS": HOURS[s // 3600] + MINUTES_SECONDS[s % 3600]. Two
# small tables (3,624 strings), where one of every second of a day would take 5.6 MB in every
# process, the daemons' included.
HOURS = tuple(f"{h:02d}:" for h in range(24))
MINUTES_SECONDS = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))


@dataclass(frozen=True, slots=True)
class LocalSpan:
    """Instants [start, end) of one local date at one UTC offset.

    `base` is where that date's midnight would be at this offset, so an instant's wall-clock
    seconds since midnight are `seconds = instant - base`, its ISO text is
    `prefix + HOURS[seconds // 3600] + MINUTES_SECONDS[seconds % 3600] + suffix`, and its aware
    local datetime `midnight + timedelta(seconds=seconds)`. Except in a span that `repeats`: one
    that starts at a change that turns the clocks back, whose first wall times are shown a second
    time, as `fold=1` datetimes, which `datetime.fromtimestamp(instant, tz)` builds. The PV
    service computes these inline, in the loop every row goes through.

    Attributes
    ----------
    start, end : int
        The span's instants [start, end), epoch seconds [s].
    base : int
        Epoch seconds [s] of the date's midnight at the span's offset.
    day : datetime.date
        The local date.
    midnight : datetime.datetime
        The date at 00:00 in the zone.
    prefix : str
        The date's ISO text, "YYYY-MM-DDT".
    suffix : str
        The offset as `isoformat` writes it: "+02:00", "-03:30", "+00:00".
    repeats : bool
        Whether the span's first wall times were shown before (the clocks went back at `start`).
    """

    start: int
    end: int
    base: int
    day: dt.date
    midnight: dt.datetime
    prefix: str
    suffix: str
    repeats: bool


class LocalTime:
    """Local times in one zone; keeps the last span asked for, as instants come in order."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.current: LocalSpan | None = None

    def span(self, instant: int) -> LocalSpan:
        """The span holding `instant`."""
        span = self.current
        if span is None or not span.start <= instant < span.end:
            span = self.current = self._build(instant)
        return span

    def _offset(self, instant: int) -> dt.timedelta:
        offset = dt.datetime.fromtimestamp(instant, self.tz).utcoffset()
        if offset is None:  # not for a ZoneInfo, which knows every instant's offset
            raise ValueError(f"{self.tz} gives no UTC offset at {instant}")
        return offset

    def _build(self, instant: int) -> LocalSpan:
        local = dt.datetime.fromtimestamp(instant, self.tz)
        offset = self._offset(instant)
        base = instant - (local.hour * 3600 + local.minute * 60 + local.second)
        start, end = base, base + DAY_SECONDS  # the date at this offset, if it held all day
        if self._offset(start) != offset:      # it began today (at most one change a day)
            start = self._first_at(start, instant, offset)
        if self._offset(end - 1) != offset:    # it ends today
            end = self._first_at(end - 1, instant, offset, after=True)
        iso = local.isoformat()  # an int instant: no microseconds
        repeats = self._offset(start - 1) > offset  # the clocks went back at `start`
        midnight = dt.datetime.combine(local.date(), dt.time(), tzinfo=self.tz)
        return LocalSpan(start, end, base, local.date(), midnight, iso[:11], iso[19:],
                         repeats)

    def _first_at(self, other: int, inside: int, offset: dt.timedelta, after: bool = False) -> int:
        """The boundary between `other` (another offset) and `inside` (at `offset`): the first
        instant at `offset` when `other` is before, the first one past it when after."""
        lo, hi = (inside, other) if after else (other, inside)
        # Invariant: the offset at lo differs from the one at hi; one of them is `offset`.
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if (self._offset(mid) == offset) != after:
                hi = mid
            else:
                lo = mid
        return hi
