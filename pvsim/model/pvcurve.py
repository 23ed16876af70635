"""The PV plant's output over a day: pure computation, no I/O.

The reference curve reproduces the reference chart (docs/reference/pv-curve-chart.png): zero
until about 05:22, a slow rise to ~0.34 kW at 08:00, a steep climb to a 3.25 kW peak at about
14:10, down to zero at about 20:56, ~26.8 kWh over the day. The knots below were read off the chart
at 20-30 minute spacing, finer than the hourly table where the shape bends (the knee at 08:00,
the plateau round the peak, the tail after 20:00); between knots the power is linear, so the
curve passes exactly through every value read and its energy is the trapezoid sum of the knots.

The curve is indexed by the local time of day in the plant's zone (seconds since local midnight
as a wall clock shows it), so the plant produces at 14:10 on the clock whatever the UTC offset of
the day; the zone is the model's own, so it answers, as every PV model does, for an instant.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from pvsim.model.localtime import LocalTime


# (local time "HH:MM", kW), read off the reference chart.
REFERENCE_KNOTS: tuple[tuple[str, float], ...] = (
    ("00:00", 0.00), ("05:22", 0.00), ("05:40", 0.03), ("06:00", 0.09), ("06:30", 0.15),
    ("07:00", 0.21), ("07:30", 0.27), ("08:00", 0.34), ("08:20", 0.48), ("08:40", 0.68),
    ("09:00", 0.91), ("09:30", 1.30), ("10:00", 1.71), ("10:30", 2.04), ("11:00", 2.34),
    ("11:30", 2.60), ("12:00", 2.82), ("12:30", 2.98), ("13:00", 3.10), ("13:30", 3.18),
    ("14:00", 3.22), ("14:10", 3.25), ("14:30", 3.24), ("15:00", 3.15), ("15:30", 3.08),
    ("16:00", 2.98), ("16:30", 2.80), ("17:00", 2.56), ("17:30", 2.29), ("18:00", 1.95),
    ("18:30", 1.58), ("19:00", 1.18), ("19:30", 0.70), ("20:00", 0.21), ("20:20", 0.08),
    ("20:40", 0.03), ("20:56", 0.00), ("24:00", 0.00),
)
REFERENCE_PEAK_KW = max(kw for _, kw in REFERENCE_KNOTS)
DAY_SECONDS = 86400


def _seconds(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 3600 + int(minutes) * 60


class PvCurve:
    """The reference chart as a PV model: power by the plant's wall clock, scaled to a peak.

    Clouds go over it as over any model (`pvmodels.Clouds`).

    Parameters
    ----------
    tz : zoneinfo.ZoneInfo
        The plant's time zone, whose wall clock the chart is read by.
    knots : sequence of (str, float), default REFERENCE_KNOTS
        ("HH:MM" local time, power [kW]) from "00:00" to "24:00" in order; linear in between.
    peak_kw : float, default REFERENCE_PEAK_KW
        The curve's maximum [kW] (AC): the knots are scaled to it.

    Raises
    ------
    ValueError
        When the knots do not run from 00:00 to 24:00 in order.
    """

    def __init__(self, tz: ZoneInfo, knots: Sequence[tuple[str, float]] = REFERENCE_KNOTS,
                 peak_kw: float = REFERENCE_PEAK_KW) -> None:
        self._x = [float(_seconds(t)) for t, _ in knots]
        if self._x[0] != 0 or self._x[-1] != DAY_SECONDS or self._x != sorted(self._x):
            raise ValueError("knots must run from 00:00 to 24:00 in order")
        top = max(kw for _, kw in knots)
        scale = peak_kw / top if top > 0 else 0.0
        self._y = [kw * scale for _, kw in knots]
        self.peak_kw = peak_kw
        self.local_time = LocalTime(tz)
        # The local span of the last instant asked for (instants come in order): its instants
        # [start, end) and `base`, where its wall-clock seconds since midnight count from.
        self._start = self._end = self._base = 0

    def clear_sky_kw(self, seconds_of_day: float) -> float:
        """Power at a local time of day.

        Parameters
        ----------
        seconds_of_day : float
            Seconds [s] since local midnight, as the wall clock shows them.

        Returns
        -------
        power_kw : float
            Power [kW] (AC), noise-free.
        """
        s = seconds_of_day % DAY_SECONDS
        i = bisect.bisect_right(self._x, s) - 1
        x0, x1 = self._x[i], self._x[i + 1]
        y0, y1 = self._y[i], self._y[i + 1]
        return y0 + (y1 - y0) * (s - x0) / (x1 - x0)

    def power_kw(self, instant: int) -> float:
        """`PvModel.power_kw`: power [kW] at epoch second `instant` [s], the chart read at its
        wall-clock time in the plant's zone."""
        if not self._start <= instant < self._end:
            span = self.local_time.span(instant)
            self._start, self._end, self._base = span.start, span.end, span.base
        return self.clear_sky_kw(instant - self._base)
