"""EnergyPlus weather files (EPW): a typical year, hour by hour, with its site.

The format (EnergyPlus "Auxiliary Programs", Weather Converter): eight header lines, the first
`LOCATION,city,state,country,source,WMO,latitude,longitude,time zone,elevation`, then one line
per hour of 35 comma-separated fields: year, month, day, hour (1-24, the hour ending at it, local
standard time), minute, a data-source string, then dry-bulb temperature (field 7), ... global
horizontal (14), direct normal (15) and diffuse horizontal (16) irradiance in W/m2, ... wind
speed (22) in m/s. PVGIS, Climate.OneBuilding, EnergyPlus' own library and most climate
services export typical years in it.

A record with a missing-value code in a field pvsim uses (9999 for irradiance, 99.9 for the
temperature, 999 for the wind) is an error naming the line: a gap filled by guesswork would
change the year's energy without anyone knowing. A leap year's 29 February is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pvsim.inputs.datafile import DataFileError, lines, number
from pvsim.model.weather import HOURS, Hour, WeatherYear

HEADER_LINES = 8
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# (field index, name, lowest, highest, missing code): the fields pvsim uses
_FIELDS = ((6, "dry-bulb temperature", -90.0, 70.0, 99.9),
           (13, "global horizontal irradiance", 0.0, 2000.0, 9999.0),
           (14, "direct normal irradiance", 0.0, 2000.0, 9999.0),
           (15, "diffuse horizontal irradiance", 0.0, 2000.0, 9999.0),
           (21, "wind speed", 0.0, 80.0, 999.0))


@dataclass(frozen=True)
class Location:
    name: str
    latitude: float
    longitude: float
    utc_offset_hours: float
    elevation_m: float


def read(path: str | Path) -> tuple[Location, WeatherYear]:
    """The site and the year of an EPW file; DataFileError on anything pvsim cannot use."""
    location: Location | None = None
    slots: list[Hour | None] = [None] * HOURS
    for n, text in lines(path, encoding="latin-1"):
        if n == 1:
            location = _location(text, path)
        elif n > HEADER_LINES and text.strip():
            _record(text, n, path, slots)
    if location is None:
        raise DataFileError(path, None, "is empty (an EPW file starts with a LOCATION line)")
    missing = [i for i, hour in enumerate(slots) if hour is None]
    if missing:
        raise DataFileError(path, None, f"has no record for {_slot_name(missing[0])}"
                            f"{f' and {len(missing) - 1} more hours' if len(missing) > 1 else ''}"
                            " (an EPW year has 8760 hourly records)")
    return location, WeatherYear(slots, location.utc_offset_hours)  # type: ignore[arg-type]


def _location(text: str, path: str | Path) -> Location:
    fields = text.split(",")
    if fields[0].strip().upper() != "LOCATION" or len(fields) < 10:
        raise DataFileError(path, 1, "not an EPW file: the first line must be "
                            "LOCATION,city,state,country,source,WMO,latitude,longitude,time zone,elevation")
    return Location(fields[1].strip(),
                    number(fields[6], path, 1, "latitude", -90, 90),
                    number(fields[7], path, 1, "longitude", -180, 180),
                    number(fields[8], path, 1, "time zone (hours from UTC)", -12, 14),
                    number(fields[9], path, 1, "elevation (m)", -1000, 9000))


def _record(text: str, n: int, path: str | Path, slots: list[Hour | None]) -> None:
    fields = text.split(",")
    if len(fields) < 22:
        raise DataFileError(path, n, f"has {len(fields)} fields; an EPW record has 35")
    month = int(number(fields[1], path, n, "month", 1, 12))
    day = int(number(fields[2], path, n, "day", 1, 31))
    hour = int(number(fields[3], path, n, "hour", 1, 24))
    if month == 2 and day == 29:
        return  # a leap year's extra day: the typical year has 365
    if day > _DAYS_IN_MONTH[month - 1]:
        raise DataFileError(path, n, f"{month:02d}-{day:02d} is not a date")
    values = []
    for index, name, lo, hi, missing in _FIELDS:
        value = number(fields[index], path, n, name)
        if value == missing:
            raise DataFileError(path, n, f"{name} is missing (EPW's code {missing:g})")
        if not lo <= value <= hi:
            raise DataFileError(path, n, f"{name} {value:g} is outside [{lo:g}, {hi:g}]")
        values.append(value)
    temperature, ghi, dni, dhi, wind = values
    slot = (sum(_DAYS_IN_MONTH[:month - 1]) + day - 1) * 24 + hour - 1
    if slots[slot] is not None:
        raise DataFileError(path, n, f"a second record for {_slot_name(slot)}")
    slots[slot] = Hour(ghi, dni, dhi, temperature, wind)


def _slot_name(slot: int) -> str:
    day, hour = divmod(slot, 24)
    month = 0
    while day >= _DAYS_IN_MONTH[month]:
        day -= _DAYS_IN_MONTH[month]
        month += 1
    return f"{month + 1:02d}-{day + 1:02d} hour {hour + 1}"
