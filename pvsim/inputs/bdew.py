"""The BDEW standard load profile table that ships with pvsim (bdew_slp.csv, next to this file).

scripts/demandlib-reference wrote it from demandlib's copy of the BDEW (VDEW 1999) profiles: per
profile, season and day type, the 96 quarter-hours' mean power from 00:00, in kW for 1,000 kWh
a year. It is read once, on first use, and handed to pvsim.model.loadprofile, which computes.
"""

from __future__ import annotations

import functools
from importlib import resources

from pvsim.model.loadprofile import Table


@functools.cache
def table() -> Table:
    """(profile, season, day type) -> 96 mean powers."""
    text = resources.files("pvsim.inputs").joinpath("bdew_slp.csv").read_text(encoding="utf-8")
    rows: dict[tuple[str, str, str], tuple[float, ...]] = {}
    for line in text.splitlines():
        if line.startswith("#") or line.startswith("profile,") or not line.strip():
            continue
        profile, season, daytype, *values = line.split(",")
        rows[profile, season, daytype] = tuple(float(v) for v in values)
    return rows
