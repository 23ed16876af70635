"""The daily CSV files' format, in one place: their names, their header, a row, a line.

File `<directory>/pvsim-YYYY-MM-DD.csv` (a fleet's shard NN: `pvsim-YYYY-MM-DD.sNN.csv`), one per
local calendar day of the plant, with the header `timestamp,meter_id,meter_w,meter_kw,pv_kw,net_kw`
and one line a reading: the local time in ISO 8601 with its UTC offset, the meter's id, its
power in W (one decimal) and kW, the PV power and the net power in kW (four decimals). The store
keeps a day's aggregate beside it, hidden: `.pvsim-YYYY-MM-DD[.sNN].agg.json`.

`csvsink` writes the files, `store.readingstore` reads them, `store.retention` removes them, and
all of them (and the tests) know the format from here only.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import NamedTuple

from pvsim.model.shard import label

HEADER = "timestamp,meter_id,meter_w,meter_kw,pv_kw,net_kw"
HEADER_LINE = (HEADER + "\n").encode()
_NAME = re.compile(r"^pvsim-(\d{4}-\d{2}-\d{2})(?:\.s(\d{2,3}))?\.csv$")


class Row(NamedTuple):
    """A reading as written: what the PV service's listeners hear of it and a line reads back as.

    Its local date (the day's file it is in) and its instant rather than a local datetime: the
    PV service makes one per reading of a run (31.5 million a year at 1-second steps), and a
    datetime each would cost more than the row. A named tuple, not a frozen dataclass: as
    immutable, and built four times faster."""

    day: dt.date      # local date in the plant's time zone
    meter_id: str
    instant: int      # epoch seconds
    meter_w: float
    meter_kw: float
    pv_kw: float

    @property
    def net_kw(self) -> float:
        """Meter minus PV, as the line has it."""
        return round(self.meter_kw - self.pv_kw, 4)


def format_line(timestamp: str, meter_id: str, meter_w: float, meter_kw: float, pv_kw: float,
                net_kw: float) -> bytes:
    """The one CSV line format; `timestamp` is the local time's ISO text (with the offset).
    `+ 0.0` turns a -0.0 net into 0.0."""
    return f"{timestamp},{meter_id},{meter_w:.1f},{meter_kw:.4f},{pv_kw:.4f},{net_kw + 0.0:.4f}\n".encode()


def _fields(line: str, meter_id: str | None) -> list[str] | None:
    """The six fields of a data line; None for the header, a line that is not a row, or (with
    `meter_id`) another meter's row, passed over before its time and numbers are parsed."""
    parts = line.rstrip("\n").split(",")
    if len(parts) != 6 or parts[0] == "timestamp" or (meter_id is not None and parts[1] != meter_id):
        return None
    return parts


def parse_line(line: str, meter_id: str | None = None) -> tuple[dt.datetime, Row] | None:
    """A data line back into its local time (as written, with the offset) and its Row; None for
    the header, a line that is not a row, or (with `meter_id`) another meter's row."""
    parts = _fields(line, meter_id)
    if parts is None:
        return None
    try:
        local = dt.datetime.fromisoformat(parts[0])
        return local, Row(local.date(), parts[1], int(local.timestamp()), float(parts[2]),
                          float(parts[3]), float(parts[4]))
    except ValueError:
        return None


def parse_sample(line: str, meter_id: str | None = None) -> tuple[str, int, float, float] | None:
    """(meter id, instant, meter kW, PV kW) of a data line, None as for `parse_line`: what the
    store and a restarted service read of every line of a day (86,400 at 1-second steps), at
    half the cost of a Row and a datetime."""
    parts = _fields(line, meter_id)
    if parts is None:
        return None
    try:
        instant = int(dt.datetime.fromisoformat(parts[0]).timestamp())
        return parts[1], instant, float(parts[3]), float(parts[4])
    except ValueError:
        return None


def file_name(day: dt.date, shard: int | None = None) -> str:
    """A day's file: pvsim-YYYY-MM-DD.csv, or pvsim-YYYY-MM-DD.sNN.csv for shard NN."""
    return f"pvsim-{day.isoformat()}{'' if shard is None else '.' + label(shard)}.csv"


def agg_name(day: dt.date, shard: int | None = None) -> str:
    """The aggregate file beside a day's CSV (of a shard): the CSV's name, hidden, .agg.json."""
    return "." + file_name(day, shard).removesuffix(".csv") + ".agg.json"


def day_files(directory: Path, shard: int | None = None) -> list[tuple[dt.date, Path]]:
    """The daily CSV files of one shard (None: the files of a run without shards), oldest
    first."""
    return [(day, path) for day, s, path in all_day_files(directory) if s == shard]


def all_day_files(directory: Path) -> list[tuple[dt.date, int | None, Path]]:
    """Every daily CSV file in a directory, whatever its shard: (day, shard, path), oldest
    first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if m := _NAME.match(name):
            try:
                day = dt.date.fromisoformat(m.group(1))
            except ValueError:  # pvsim-2026-02-30.csv: not one of ours
                continue
            found.append((day, None if m.group(2) is None else int(m.group(2)), directory / name))
    return sorted(found, key=lambda f: (f[0], -1 if f[1] is None else f[1]))
