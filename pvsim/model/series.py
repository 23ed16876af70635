"""A recorded series of values over time, reused for any year: pure computation, no I/O.

Engineers have a year of data (a typical meteorological year of PV output from PVGIS, a
building's meter export) and simulate any other year with it. An instant inside the series'
span reads the series itself; any other instant reads the same month, day and time of day in
the series' own year (29 February in a year the series lacks it reads 28 February), so one
typical year serves every simulated year. Between samples the value is linear, and across the
turn of the year it joins the series' end to its beginning.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence

_UTC = dt.timezone.utc
YEAR_SECONDS = 365 * 86400


class Series:
    """Values at instants, covering at least a year; read at any instant.

    Parameters
    ----------
    instants : sequence of int
        Sample times, epoch seconds [s], increasing.
    values : sequence of float
        The sample values, in the caller's unit (kW for pvsim's series).

    Raises
    ------
    ValueError
        For fewer than two samples, times that do not increase, or less than a year covered.
    """

    def __init__(self, instants: Sequence[int], values: Sequence[float]) -> None:
        if len(instants) != len(values) or len(instants) < 2:
            raise ValueError("a series needs at least two samples")
        if any(b <= a for a, b in zip(instants, instants[1:])):
            raise ValueError("the samples' times must increase")
        step = min(b - a for a, b in zip(instants, instants[1:]))
        if instants[-1] - instants[0] + step < YEAR_SECONDS:
            days = (instants[-1] - instants[0] + step) / 86400
            raise ValueError(f"covers {days:.1f} days; a series must cover a whole year "
                             "(pvsim reuses it for every year)")
        self.first, self.last = instants[0], instants[-1]
        self._year = dt.datetime.fromtimestamp(self.first, _UTC).year
        # One sample either side, a year away, so that the turn of the year joins end to start.
        year_after = _shift_year(instants[0], self._year + 1) - instants[0]
        year_before = instants[-1] - _shift_year(instants[-1], self._year - 1)
        self._x = [instants[-1] - year_before, *instants, instants[0] + year_after]
        self._y = [values[-1], *values, values[0]]
        self._i = 1

    @property
    def peak(self) -> float:
        """The largest value of the series, in its unit."""
        return max(self._y)

    def at(self, instant: float) -> float:
        """The value at an instant, linear between samples.

        Parameters
        ----------
        instant : float
            Epoch seconds [s]; outside the series' span, the same date and time of its year.

        Returns
        -------
        value : float
            The series' value there, in its unit.
        """
        t = instant if self.first <= instant <= self.last else self._fold(instant)
        x, i = self._x, self._i
        if not x[i - 1] <= t <= x[i]:  # readings mostly come in order: try the last interval
            i = min(max(bisect.bisect_left(x, t), 1), len(x) - 1)
            self._i = i
        x0, x1 = x[i - 1], x[i]
        y0, y1 = self._y[i - 1], self._y[i]
        return y0 if x1 == x0 else y0 + (y1 - y0) * (t - x0) / (x1 - x0)

    def _fold(self, instant: float) -> float:
        """The same date and time of day in the series' year (or the next, where it runs into
        it), clamped to the span plus the joins at its ends."""
        whole = int(instant // 1)
        for year in (self._year, self._year + 1):
            t = _shift_year(whole, year) + (instant - whole)
            if self._x[0] <= t <= self._x[-1]:
                return t
        return min(max(_shift_year(whole, self._year), self._x[0]), self._x[-1])


def _shift_year(instant: int, year: int) -> int:
    """The instant with its UTC year replaced (29 February becomes the 28th where needed)."""
    moment = dt.datetime.fromtimestamp(instant, _UTC)
    try:
        return int(moment.replace(year=year).timestamp())
    except ValueError:  # 29 February into a common year
        return int(moment.replace(year=year, day=28).timestamp())
