"""Recorded series in CSV: PVGIS hourly PV output, and plain timestamp,value files.

PVGIS (the EU's Photovoltaic Geographical Information System, "Hourly data" as CSV) writes a
metadata header (site, database, slope, azimuth, nominal power, losses), then a table headed
`time,P,G(i),H_sun,T2m,WS10m,Int` with times `YYYYMMDD:HHMM` in UTC and P the PV system's power
in W, then a footer explaining the columns. pvsim takes `time` and `P` and skips the rest.

A plain file has a header line naming two columns, a timestamp and a value, then one row per
sample. The value's unit is kW for PV; for a meter, meter.series_unit says it: w, kw or kwh.
A header that names a unit (`timestamp,kwh`) must agree with it; any other name (`time,value`,
`timestamp,consumption`) is read in it.
Timestamps are ISO 8601 (`2026-03-01T12:00:00+01:00`, or `2026-03-01 12:00`); one without an
offset is in the config's time zone. A `kwh` row is the energy of the interval that starts at
its stamp and ends at the next row's: pvsim places its mean power at the interval's middle.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from pvsim.inputs.datafile import DataFileError, lines, number
from pvsim.model.series import Series

_UTC = dt.timezone.utc
PVGIS_COLUMNS = "time,P,G(i),H_sun,T2m,WS10m,Int"
UNITS = {"w": 0.001, "kw": 1.0, "kwh": 1.0}  # to kW (kWh per interval is handled apart)


def read(path: str | Path, tz: ZoneInfo, max_kw: float, unit: str = "kw",
         unit_key: str | None = None) -> Series:
    """A series in kW from a PVGIS hourly CSV (PV output; `unit_key` None) or a plain CSV whose
    values are in `unit` (the config key `unit_key` says so); values beyond [0, max_kw]
    (limits.max_power_w) are an error naming the line."""
    numbered = list(lines(path))
    header = next(((n, t) for n, t in numbered if t.strip()), None)
    if header is None:
        raise DataFileError(path, None, "is empty")
    pvgis = next(((n, t) for n, t in numbered if t.startswith("time,P,")), None)
    if pvgis is not None or header[1].startswith(("Latitude", "latitude")):
        if unit_key is not None:
            raise DataFileError(path, header[0], "is PVGIS PV output; a meter series needs a plain "
                                "timestamp,value file")
        return _pvgis(path, numbered, pvgis, max_kw)
    return _plain(path, numbered, header, tz, max_kw, unit, unit_key)


def _pvgis(path, numbered, header, max_kw: float) -> Series:
    if header is None:
        raise DataFileError(path, None, f"looks like PVGIS output but has no table headed "
                            f"'{PVGIS_COLUMNS}' (export hourly data with PV power as CSV)")
    n0, text = header
    column = text.split(",").index("P")
    instants: list[int] = []
    values: list[float] = []
    for n, row in numbered[n0:]:
        if not row.strip() or not row[:1].isdigit():
            break  # the footer: a blank line, then the columns' explanations
        fields = row.split(",")
        if len(fields) <= column:
            raise DataFileError(path, n, f"has {len(fields)} fields; the header names {len(text.split(','))}")
        try:
            moment = dt.datetime.strptime(fields[0], "%Y%m%d:%H%M").replace(tzinfo=_UTC)
        except ValueError:
            raise DataFileError(path, n, f"time {fields[0][:30]!r} is not YYYYMMDD:HHMM") from None
        _append_instant(instants, int(moment.timestamp()), path, n)
        values.append(number(fields[column], path, n, "P (W)", 0.0, max_kw * 1000.0) / 1000.0)
    return _series(path, instants, values)


def _plain(path, numbered, header, tz: ZoneInfo, max_kw: float, unit: str,
           unit_key: str | None) -> Series:
    n0, text = header
    names = [c.strip().lower() for c in text.split(",")]
    if len(names) != 2 or names[0] not in ("timestamp", "time") or not names[1]:
        raise DataFileError(path, n0, f"the header must be timestamp,{unit}, got {text.strip()[:60]!r}")
    if names[1] in UNITS and names[1] != unit:  # any other name is taken to be in `unit`
        said = f"{unit_key} is {unit}" if unit_key else f"a PV series is in {unit}"
        raise DataFileError(path, n0, f"the header's unit {names[1]} contradicts the config "
                            f"({said})")
    instants: list[int] = []
    values: list[float] = []
    for n, row in numbered[n0:]:
        if not row.strip():
            continue
        fields = row.split(",")
        if len(fields) != 2:
            raise DataFileError(path, n, f"has {len(fields)} fields; expected 2 ({text.strip()})")
        _append_instant(instants, _instant(fields[0], tz, path, n, instants[-1] if instants else None),
                        path, n)
        values.append(number(fields[1], path, n, unit, 0.0, None if unit == "kwh" else max_kw / UNITS[unit])
                      * UNITS[unit])
    if unit == "kwh":
        instants, values = _interval_power(path, instants, values, max_kw, n0)
    return _series(path, instants, values)


def _instant(text: str, tz: ZoneInfo, path, n: int, previous: int | None) -> int:
    """The instant of a stamp. Without an offset it is local time, where the hour that the
    clocks repeat in autumn is ambiguous: read it as the later one when the earlier one would
    not follow the row before (exports in local time simply write that hour twice)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise DataFileError(path, n, f"timestamp {text.strip()[:40]!r} is not ISO 8601 "
                            "(2026-03-01T12:00:00+01:00)") from None
    if moment.tzinfo is not None:
        return int(moment.timestamp())
    instant = int(moment.replace(tzinfo=tz).timestamp())
    if previous is not None and instant <= previous:
        instant = int(moment.replace(tzinfo=tz, fold=1).timestamp())
    return instant


def _interval_power(path, instants: list[int], kwh: list[float], max_kw: float,
                    n0: int) -> tuple[list[int], list[float]]:
    """kWh per interval (stamped at its start) into mean kW at each interval's middle; the last
    row's interval is as long as the one before it."""
    if len(instants) < 2:
        raise DataFileError(path, None, "has fewer than two rows")
    ends = instants[1:] + [2 * instants[-1] - instants[-2]]
    mids, kws = [], []
    for i, (start, end, energy) in enumerate(zip(instants, ends, kwh)):
        kw = energy * 3600.0 / (end - start)
        if kw > max_kw:
            raise DataFileError(path, n0 + 1 + i, f"{energy:g} kWh over {end - start} s is "
                                f"{kw:g} kW, above limits.max_power_w ({max_kw * 1000:g} W)")
        mids.append((start + end) // 2)
        kws.append(kw)
    return mids, kws


def _append_instant(instants: list[int], instant: int, path, n: int) -> None:
    if instants and instant <= instants[-1]:
        raise DataFileError(path, n, "is not later than the line before it (rows must be in "
                            "time order, each instant once)")
    instants.append(instant)


def _series(path, instants: list[int], values: list[float]) -> Series:
    try:
        return Series(instants, values)
    except ValueError as exc:
        raise DataFileError(path, None, str(exc)) from None
