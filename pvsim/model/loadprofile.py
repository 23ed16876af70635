"""BDEW standard load profiles: a year of a customer's mean power from a quarter-hour table.

German utilities forecast customers without interval metering with these profiles (VDEW 1999,
now BDEW): H0 households, G0-G6 commercial (G0 general, G1 weekdays 8-18 h, G2 evenings, G3
continuous, G4 shops, G5 bakeries, G6 weekends), L0-L2 agriculture. Each gives the mean power of
every quarter-hour of a day for three seasons and three day types, for 1,000 kWh a year:
- seasons: winter 1 Nov - 20 Mar, summer 15 May - 14 Sep, transition the rest;
- day types: workday (Monday to Friday), Saturday, Sunday. Public holidays (`holidays`) are
  Sundays; 24 and 31 December are Saturdays unless they fall on a Sunday or are listed holidays;
- H0 is dynamised: each day's values are multiplied by the BDEW's fourth-order polynomial of the
  day of the year (1.24 in January, 0.8 in summer: households use more in winter than the
  three seasons alone say). The factor is rounded to four decimals, as the standard does.

A year is scaled so that its quarter-hours add up to `annual_kwh` exactly (the table's own year
does not quite: its seasons cover calendar years unevenly). The table itself is data, shipped
with the package and read by pvsim.inputs.bdew; this module only computes with it.

`power_w` is linear between the quarter-hours' middles, so a 1-second meter does not jump every
15 minutes, and the energy of each quarter-hour stays the table's (each value weighs 1/8 + 6/8 +
1/8 across its neighbours: the year's total is unchanged).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping

PROFILES = ("H0", "G0", "G1", "G2", "G3", "G4", "G5", "G6", "L0", "L1", "L2")
QUARTER = 900
# (profile, season, day type) -> the 96 quarter-hours' mean power, in any unit (each year is
# scaled to annual_kwh).
Table = Mapping[tuple[str, str, str], tuple[float, ...]]


def season(day: dt.date) -> str:
    """The BDEW season of a date: "winter", "summer" or "transition"."""
    md = (day.month, day.day)
    if md >= (11, 1) or md <= (3, 20):
        return "winter"
    if (5, 15) <= md <= (9, 14):
        return "summer"
    return "transition"


def day_type(day: dt.date, holidays: frozenset[dt.date]) -> str:
    """The BDEW day type of a date: "workday", "saturday" or "sunday" (holidays count as
    Sundays; 24 and 31 December as Saturdays)."""
    if day in holidays or day.weekday() == 6:
        return "sunday"
    if day.weekday() == 5 or (day.month == 12 and day.day in (24, 31)):
        return "saturday"
    return "workday"


def dynamisation(day: dt.date) -> float:
    """The H0 factor of a day: BDEW's polynomial of the day of the year, to four decimals.

    Parameters
    ----------
    day : datetime.date
        The local date.

    Returns
    -------
    factor : float
        The dynamisation factor [unitless]: 1.24 in January, about 0.8 in summer.
    """
    t = day.timetuple().tm_yday
    return round(-3.92e-10 * t**4 + 3.2e-7 * t**3 - 7.02e-5 * t**2 + 2.1e-3 * t + 1.24, 4)


class StandardLoadProfile:
    """A customer's mean power by a BDEW profile, scaled to an energy a calendar year.

    Parameters
    ----------
    table : Table
        (profile, season, day type) -> the 96 quarter-hours' values (pvsim.inputs.bdew).
    profile : str
        One of PROFILES: "H0", "G0" ... "L2".
    annual_kwh : float
        Energy over each calendar year [kWh].
    holidays : iterable of datetime.date, default ()
        Public holidays: they count as Sundays.

    Raises
    ------
    ValueError
        For a profile not in PROFILES.
    """

    def __init__(self, table: Table, profile: str, annual_kwh: float,
                 holidays: Iterable[dt.date] = ()) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown BDEW profile {profile!r}; one of {', '.join(PROFILES)}")
        self.table, self.profile, self.annual_kwh = table, profile, annual_kwh
        self.holidays = frozenset(holidays)
        self._day: dt.date | None = None
        self._around: list[float] = []

    def power_w(self, local: dt.datetime) -> float:
        """The power at a local time: linear between the middles of the quarter-hours.

        Parameters
        ----------
        local : datetime.datetime
            The local time.

        Returns
        -------
        power_w : float
            Mean power [W].
        """
        day = local.date()
        if day != self._day:
            before, this, after = (self.quarters_w(day + dt.timedelta(days=d)) for d in (-1, 0, 1))
            self._around = [before[-1], *this, after[0]]  # quarter -1 .. 96
            self._day = day
        x = (local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
             - QUARTER / 2) / QUARTER + 1.0    # index into _around
        i = int(x)
        frac = x - i
        a = self._around
        return a[i] + (a[i + 1] - a[i]) * frac

    @functools.lru_cache(maxsize=8)
    def quarters_w(self, day: dt.date) -> tuple[float, ...]:
        """The 96 quarter-hours' mean power [W] of local date `day`, from 00:00, scaled to its
        year."""
        values = self.table[self.profile, season(day), day_type(day, self.holidays)]
        factor = self._scale(day.year) * (dynamisation(day) if self.profile == "H0" else 1.0)
        return tuple(v * factor for v in values)

    @functools.lru_cache(maxsize=4)
    def _scale(self, year: int) -> float:
        """W per table unit that makes `year` add up to annual_kwh."""
        day, total = dt.date(year, 1, 1), 0.0
        while day.year == year:
            dyn = dynamisation(day) if self.profile == "H0" else 1.0
            total += dyn * sum(self.table[self.profile, season(day), day_type(day, self.holidays)])
            day += dt.timedelta(days=1)
        return self.annual_kwh * 1000.0 / (total * QUARTER / 3600.0)
