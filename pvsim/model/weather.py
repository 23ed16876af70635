"""A typical weather year, hour by hour, read at any instant: pure computation, no I/O.

Weather files (EPW: EnergyPlus weather, which PVGIS and most climate services export) give one
record per hour of a typical year in the site's standard time (no daylight saving), each the
average over the hour that ends at its stamp. pvsim places each record at the middle of its hour
and interpolates linearly between them, so the energy of an hour is kept while the irradiance
changes smoothly from one hour to the next. Any simulated year reads the same date and time of
the typical year: 29 February reads 28 February.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

HOURS = 8760
_UTC = dt.timezone.utc


class Hour(NamedTuple):
    """One hour's weather.

    Attributes
    ----------
    ghi, dni, dhi : float
        Global horizontal, direct normal and diffuse horizontal irradiance [W/m^2].
    temperature_c : float
        Air temperature [C].
    wind_m_s : float
        Wind speed [m/s].
    """

    ghi: float
    dni: float
    dhi: float
    temperature_c: float
    wind_m_s: float


class WeatherYear:
    """8760 hourly records from 1 January 01:00 to 31 December 24:00, standard time.

    Parameters
    ----------
    hours : sequence of Hour
        The year's records, each the mean over the hour ending at its stamp.
    utc_offset_hours : float
        The file's standard time zone [hours east of UTC].

    Raises
    ------
    ValueError
        Unless there are 8760 records.
    """

    def __init__(self, hours: Sequence[Hour], utc_offset_hours: float) -> None:
        if len(hours) != HOURS:
            raise ValueError(f"a weather year has {HOURS} hours, got {len(hours)}")
        self.hours = tuple(hours)
        self.offset_seconds = round(utc_offset_hours * 3600)
        self._day: tuple[int, int] | None = None  # (UTC day, hour of the year at its midnight)

    def at(self, instant: float) -> Hour:
        """The weather at an instant, linear between the middles of the hours.

        Parameters
        ----------
        instant : float
            Epoch seconds [s]: any year's, read as the same date and time of the typical year.

        Returns
        -------
        hour : Hour
            Irradiance [W/m^2], temperature [C] and wind speed [m/s] there.
        """
        local = instant + self.offset_seconds
        day = int(local // 86400)
        if self._day is None or self._day[0] != day:
            date = dt.datetime.fromtimestamp(day * 86400, _UTC).date()
            self._day = (day, _hour_of_year(date))
        x = self._day[1] + (local - day * 86400) / 3600.0 - 0.5
        i0 = int(x // 1)
        w = x - i0
        a, b = self.hours[i0 % HOURS], self.hours[(i0 + 1) % HOURS]
        if w == 0.0:
            return a
        return Hour(*(p + (q - p) * w for p, q in zip(a, b)))


def _hour_of_year(date: dt.date) -> int:
    """Hours from 1 January 00:00 to this date's midnight in a common year."""
    doy = date.timetuple().tm_yday
    leap = date.year % 4 == 0 and (date.year % 100 != 0 or date.year % 400 == 0)
    if leap and doy >= 60:  # 29 February reads the 28th; later days shift back a day
        doy -= 1
    return (doy - 1) * 24
