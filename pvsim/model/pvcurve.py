"""The PV plant's output over a day: pure computation, no I/O.

The default curve reproduces the reference chart (docs/reference/pv-curve-chart.png): zero
until about 05:22, a slow rise to ~0.34 kW at 08:00, a steep climb to a 3.25 kW peak at about
14:10, down to zero at about 20:56, ~26.8 kWh over the day. The knots below were read off the chart
at 20-30 minute spacing, finer than the hourly table where the shape bends (the knee at 08:00,
the plateau round the peak, the tail after 20:00); between knots the power is linear, so the
curve passes exactly through every value read and its energy is the trapezoid sum of the knots.

The curve is indexed by the local time of day (seconds since local midnight as a wall clock
shows it), so the plant produces at 14:10 on the clock whatever the UTC offset of the day.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence


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


def local_seconds(moment: dt.datetime) -> int:
    """Seconds since local midnight as the wall clock shows them (DST-aware datetimes)."""
    return moment.hour * 3600 + moment.minute * 60 + moment.second


class PvCurve:
    """PV power in kW at a local time of day, scaled to a peak (clouds: pvmodels.Clouds)."""

    def __init__(self, knots: Sequence[tuple[str, float]] = REFERENCE_KNOTS,
                 peak_kw: float = REFERENCE_PEAK_KW) -> None:
        self._x = [float(_seconds(t)) for t, _ in knots]
        if self._x[0] != 0 or self._x[-1] != DAY_SECONDS or self._x != sorted(self._x):
            raise ValueError("knots must run from 00:00 to 24:00 in order")
        top = max(kw for _, kw in knots)
        scale = peak_kw / top if top > 0 else 0.0
        self._y = [kw * scale for _, kw in knots]
        self.peak_kw = peak_kw

    def clear_sky_kw(self, seconds_of_day: float) -> float:
        """Noise-free power at a local time of day (seconds since local midnight)."""
        s = seconds_of_day % DAY_SECONDS
        i = bisect.bisect_right(self._x, s) - 1
        x0, x1 = self._x[i], self._x[i + 1]
        y0, y1 = self._y[i], self._y[i + 1]
        return y0 + (y1 - y0) * (s - x0) / (x1 - x0)

    def power_kw(self, seconds_of_day: float, instant: int = 0) -> float:
        """Power at a local time of day (the PV models' face: the instant is not needed)."""
        return self.clear_sky_kw(seconds_of_day)

    def energy_kwh(self) -> float:
        """Clear-sky energy over a 24-hour day (exact: the curve is piecewise linear)."""
        total = 0.0
        for i in range(len(self._x) - 1):
            total += (self._y[i] + self._y[i + 1]) / 2 * (self._x[i + 1] - self._x[i])
        return total / 3600.0
