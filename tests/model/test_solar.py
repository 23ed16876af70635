"""Sun position against the NREL SPA paper's worked example and against pvlib's SPA over a year."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path

import pytest

from pvsim.model.solar import SunPosition, ephemeris, pressure_at, refraction

PVLIB = Path(__file__).resolve().parent.parent / "data" / "pvlib"


def test_spa_papers_worked_example() -> None:
    """Reda & Andreas (2003), NREL/TP-560-34302, table A4.1: Golden, Colorado, 17 October 2003
    12:30:30 at UTC-7, 820 hPa, 11 C: topocentric zenith 50.11162, azimuth 194.34024 degrees.
    NOAA's algorithm states about a minute of arc (0.0167 degrees); here it is far closer."""
    instant = dt.datetime(2003, 10, 17, 12, 30, 30, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    site = SunPosition(39.742476, -105.1786, 1830.14, temperature_c=11.0)
    site.pressure_hpa = 820.0
    sun = site.at(instant.timestamp())
    assert sun.apparent_zenith == pytest.approx(50.11162, abs=0.005)
    assert sun.azimuth == pytest.approx(194.34024, abs=0.005)


@pytest.mark.parametrize("site", ["tromso", "madrid", "nairobi"])
def test_every_hour_of_a_year_within_noaas_accuracy_of_pvlibs_spa(site: str) -> None:
    meta = json.loads((PVLIB / "sites.json").read_text())
    s = meta["sites"][site]
    sun = SunPosition(s["latitude"], s["longitude"], s["altitude_m"],
                      meta["clearsky_air"]["temperature_c"])
    checked = 0
    with open(PVLIB / f"clearsky-{site}.csv") as f:
        for row in csv.DictReader(f):
            zenith = float(row["apparent_zenith"])
            if zenith > 89.0:  # refraction near the horizon is a model of its own, not position
                continue
            t = dt.datetime.fromisoformat(row["hour_utc"].replace("Z", "+00:00")).timestamp()
            got = sun.at(t)
            assert got.apparent_zenith == pytest.approx(zenith, abs=0.0167), row["hour_utc"]
            # An arc on the sky of 0.0167 degrees is a larger azimuth angle the higher the sun
            # (and the azimuth of a sun overhead is not defined at all).
            diff = (got.azimuth - float(row["azimuth"]) + 180.0) % 360.0 - 180.0
            assert abs(diff) * max(0.05, math.sin(math.radians(zenith))) < 0.0167, row["hour_utc"]
            checked += 1
    assert checked > 3000


def test_declination_and_equation_of_time_at_known_dates() -> None:
    """Textbook values: declination about +23.44 at the June solstice, -23.44 at the December
    one, 0 at the equinoxes; the equation of time about +16.4 min early in November."""
    def at(*ymd_h):
        return ephemeris(dt.datetime(*ymd_h, tzinfo=dt.timezone.utc).timestamp())
    assert at(2026, 6, 21, 8)[0] == pytest.approx(23.44, abs=0.01)
    assert at(2026, 12, 21, 20)[0] == pytest.approx(-23.44, abs=0.01)
    assert at(2026, 3, 20, 14)[0] == pytest.approx(0.0, abs=0.02)
    assert at(2026, 11, 3, 12)[1] == pytest.approx(16.4, abs=0.1)


def test_refraction_and_pressure() -> None:
    assert refraction(90.0, 1010.0, 10.0) == pytest.approx(0.0, abs=1e-3)
    assert refraction(0.0, 1010.0, 10.0) == pytest.approx(0.48, abs=0.02)   # half a degree at the horizon
    assert refraction(-5.0, 1010.0, 10.0) == 0.0
    assert pressure_at(0.0) == pytest.approx(101325, rel=1e-3)
    assert pressure_at(1500.0) == pytest.approx(84556, rel=2e-3)


def test_bad_site_is_refused() -> None:
    with pytest.raises(ValueError):
        SunPosition(91.0, 0.0)
    with pytest.raises(ValueError):
        SunPosition(0.0, 181.0)
