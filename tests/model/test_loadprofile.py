"""BDEW standard load profiles, held against demandlib's year (tests/data/demandlib, written by
scripts/demandlib-reference) and against the profile's own rules."""

import csv
import datetime as dt
import gzip
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pvsim.inputs.bdew import table
from pvsim.model.loadprofile import PROFILES, StandardLoadProfile, day_type, season
from pvsim.model.metermodel import MeterModel, Profiled, read

DATA = Path(__file__).parent.parent / "data" / "demandlib"
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(scope="module")
def reference() -> tuple[dict, dict[str, list[float]]]:
    meta = json.loads((DATA / "meta.json").read_text())
    with gzip.open(DATA / "profiles.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    return meta, {col: [float(r[col]) for r in rows] for col in ("h0_dyn", "g0", "l0")}


def test_the_table_has_every_profile_season_and_day_type():
    rows = table()
    assert len(rows) == len(PROFILES) * 3 * 3
    assert all(len(v) == 96 and min(v) >= 0 for v in rows.values())
    # The published H0 winter workday starts at 67.6 W for 1,000 kWh a year.
    assert rows["H0", "winter", "workday"][0] == pytest.approx(0.0676)


@pytest.mark.parametrize("profile,column", [("H0", "h0_dyn"), ("G0", "g0"), ("L0", "l0")])
def test_a_year_has_demandlibs_shape(reference, profile: str, column: str):
    """Every quarter-hour of 2026 within 0.5 % of the profile's peak of demandlib's, and every
    day's energy within 0.5 %. H0 differs most: demandlib evaluates the dynamisation on
    fractional days with a retuned coefficient, pvsim as the BDEW publishes it (whole days,
    four decimals). 24 and 31 December are left out: the BDEW counts them as Saturdays,
    demandlib as workdays (tested below)."""
    meta, ref = reference
    holidays = [dt.date.fromisoformat(d) for d in meta["holidays"]]
    model = StandardLoadProfile(table(), profile, meta["annual_kwh"], holidays)
    peak = max(ref[column])
    for d in range(365):
        day = dt.date(meta["year"], 1, 1) + dt.timedelta(days=d)
        if (day.month, day.day) in ((12, 24), (12, 31)):
            continue
        ours, theirs = model.quarters_w(day), ref[column][96 * d:96 * (d + 1)]
        worst = max(abs(a - b) for a, b in zip(ours, theirs))
        assert worst < 0.005 * peak, f"{day}: off by {worst:.2f} W"
        assert sum(ours) == pytest.approx(sum(theirs), rel=0.005), day


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("year", [2026, 2028])
def test_each_calendar_year_adds_up_to_annual_kwh(profile: str, year: int):
    model = StandardLoadProfile(table(), profile, 4200.0)
    day, kwh = dt.date(year, 1, 1), 0.0
    while day.year == year:
        kwh += sum(model.quarters_w(day)) * 0.25 / 1000
        day += dt.timedelta(days=1)
    assert kwh == pytest.approx(4200.0, rel=1e-9)


@pytest.mark.slow
def test_the_meter_with_its_fluctuation_keeps_the_years_energy():
    """What a user runs: meter.model slp through MeterModel, sampled every 30 s for a year."""
    model = MeterModel("house-1", 7, Profiled(StandardLoadProfile(table(), "H0", 3500.0)), max_w=9000)
    start = int(dt.datetime(2026, 1, 1, tzinfo=BERLIN).timestamp())
    end = int(dt.datetime(2027, 1, 1, tzinfo=BERLIN).timestamp())
    kwh = sum(r.power_w for r in read([model], range(start, end, 30), BERLIN)) * 30 / 3.6e6
    assert kwh == pytest.approx(3500.0, rel=0.005)


def test_seasons_and_day_types_follow_the_bdew_rules():
    assert [season(dt.date(2026, m, d)) for m, d in
            [(3, 20), (3, 21), (5, 14), (5, 15), (9, 14), (9, 15), (10, 31), (11, 1)]] == \
        ["winter", "transition", "transition", "summer", "summer", "transition", "transition",
         "winter"]
    none: frozenset[dt.date] = frozenset()
    assert day_type(dt.date(2026, 11, 20), none) == "workday"    # a Friday
    assert day_type(dt.date(2026, 11, 21), none) == "saturday"
    assert day_type(dt.date(2026, 11, 22), none) == "sunday"
    assert day_type(dt.date(2026, 12, 24), none) == "saturday"   # a Thursday
    assert day_type(dt.date(2026, 12, 31), none) == "saturday"
    assert day_type(dt.date(2028, 12, 24), none) == "sunday"     # a Sunday stays one
    assert day_type(dt.date(2026, 11, 20), frozenset({dt.date(2026, 11, 20)})) == "sunday"


def test_a_holiday_takes_the_sunday_profile():
    plain = StandardLoadProfile(table(), "G0", 1000.0)
    holiday = StandardLoadProfile(table(), "G0", 1000.0, [dt.date(2026, 5, 1)])
    friday, sunday = dt.date(2026, 5, 1), dt.date(2026, 5, 3)
    assert holiday.quarters_w(friday) != plain.quarters_w(friday)
    # Same season, same (G0: undynamised) table row, same year's scale: the same values.
    assert holiday.quarters_w(friday) == holiday.quarters_w(sunday)


def test_power_is_continuous_and_keeps_each_days_energy():
    model = StandardLoadProfile(table(), "H0", 3500.0)
    for day in (dt.date(2026, 3, 20), dt.date(2026, 6, 21), dt.date(2026, 12, 31)):
        start = dt.datetime.combine(day, dt.time(), BERLIN)
        watts = [model.power_w(start + dt.timedelta(seconds=s)) for s in range(0, 86400, 10)]
        assert max(abs(b - a) for a, b in zip(watts, watts[1:])) < 5.0  # no 15-minute steps
        # Across midnight too: the last second of the day runs into the next day's first.
        assert abs(model.power_w(start + dt.timedelta(days=1)) - watts[-1]) < 5.0
        # Linear between the middles moves an eighth of each edge quarter into the next day.
        q = model.quarters_w(day)
        assert sum(watts) * 10 / 900 == pytest.approx(sum(q), rel=0.01)


def test_an_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown BDEW profile 'H9'"):
        StandardLoadProfile(table(), "H9", 1000.0)
