"""ProfileAggregator: the average day per meter and month, binned by local time of day from the
instant and a cached UTC offset; the same sums in any order, split over workers and merged."""

from __future__ import annotations

import datetime as dt
import pickle
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from tests.support.csvfiles import written
from pvsim.model.clock import day_bounds
from pvsim.pipeline.csvsink import Row
from pvsim.store.aggregates import AverageDay, ProfileAggregator

MADRID = ZoneInfo("Europe/Madrid")


def row(instant: int, tz: ZoneInfo, meter_kw: float = 1.0, pv_kw: float = 0.0,
        meter: str = "m") -> tuple[Row, int]:
    ts = dt.datetime.fromtimestamp(instant, tz)
    return Row(ts, meter, meter_kw * 1000, meter_kw, pv_kw, meter_kw - pv_kw), instant


def feed(agg: ProfileAggregator, rows) -> ProfileAggregator:
    for r, instant in rows:
        agg.on_rows([written(r, instant)])
    return agg


def day_rows(day: dt.date, tz: ZoneInfo, step: int = 900, **kw) -> list[tuple[Row, int]]:
    start, end = day_bounds(day, tz)
    return [row(t, tz, **kw) for t in range(start, end, step)]


def counts(agg: ProfileAggregator, meter: str, month: str) -> list[int]:
    return [int(c) for c in agg.sums[meter][month][2 * agg.bins:]]


def test_a_reading_lands_in_the_bin_of_its_local_time_of_day() -> None:
    agg = ProfileAggregator(MADRID)
    at = int(dt.datetime(2026, 6, 21, 14, 10, tzinfo=MADRID).timestamp())  # 12:10 UTC
    feed(agg, [row(at, MADRID, 2.0, 3.25), row(at + 299, MADRID, 4.0, 3.25),
               row(at + 300, MADRID, 6.0, 1.0)])  # 14:15 starts the next bin
    day = agg.average_days("m")["2026-06"]
    assert day.meter_kw[56] == 3.0 and day.pv_kw[56] == 3.25    # 14:00-14:15: two readings
    assert day.meter_kw[57] == 6.0 and day.pv_kw[57] == 1.0
    assert sum(v is not None for v in day.meter_kw) == 2
    assert day.hours()[56] == pytest.approx(14.125)


def test_a_whole_day_fills_every_bin_once() -> None:
    agg = feed(ProfileAggregator(MADRID), day_rows(dt.date(2026, 6, 21), MADRID))
    assert counts(agg, "m", "2026-06") == [1] * 96
    assert agg.average_days("m")["2026-06"] == AverageDay(900, [1.0] * 96, [0.0] * 96)


def test_spring_dst_day_leaves_the_skipped_hour_empty() -> None:
    agg = feed(ProfileAggregator(MADRID), day_rows(dt.date(2026, 3, 29), MADRID))  # 23 hours
    assert counts(agg, "m", "2026-03") == [1] * 8 + [0] * 4 + [1] * 84  # no 02:00-03:00
    assert agg.average_days("m")["2026-03"].meter_kw[8:12] == [None] * 4


def test_fall_dst_day_counts_the_repeated_hour_twice() -> None:
    agg = feed(ProfileAggregator(MADRID), day_rows(dt.date(2026, 10, 25), MADRID))  # 25 hours
    assert counts(agg, "m", "2026-10") == [1] * 8 + [2] * 4 + [1] * 84  # 02:00-03:00 twice


def test_months_are_local_months() -> None:
    ny = ZoneInfo("America/New_York")
    last = int(dt.datetime(2026, 1, 31, 23, 45, tzinfo=ny).timestamp())  # already February in UTC
    agg = feed(ProfileAggregator(ny), [row(last, ny), row(last + 900, ny, meter="n")])
    assert list(agg.sums["m"]) == ["2026-01"] and counts(agg, "m", "2026-01")[95] == 1
    assert list(agg.sums["n"]) == ["2026-02"] and counts(agg, "n", "2026-02")[0] == 1


def test_bins_must_divide_a_day() -> None:
    with pytest.raises(ValueError):
        ProfileAggregator(MADRID, 7)
    with pytest.raises(ValueError):
        ProfileAggregator(MADRID, 900).merge(ProfileAggregator(MADRID, 3600))


def reference(instants: list[int], tz: ZoneInfo, bin_seconds: int) -> dict[str, list[int]]:
    """Readings per month and bin the slow way: the local time of each instant's datetime."""
    out: dict[str, list[int]] = {}
    for t in instants:
        local = dt.datetime.fromtimestamp(t, tz)
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        out.setdefault(f"{local:%Y-%m}", [0] * (86400 // bin_seconds))[seconds // bin_seconds] += 1
    return out


DST_DAYS = st.sampled_from([(ZoneInfo(zone), dt.date(2026, m, d)) for zone, m, d in (
    ("Europe/Madrid", 3, 29), ("Europe/Madrid", 10, 25), ("America/New_York", 3, 8),
    ("America/New_York", 11, 1), ("Australia/Lord_Howe", 4, 5), ("Australia/Lord_Howe", 10, 4),
    ("Asia/Kathmandu", 6, 21), ("UTC", 6, 21))])


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(zone_day=DST_DAYS, offsets=st.lists(st.integers(-4 * 3600, 28 * 3600), min_size=1, max_size=80),
       bin_seconds=st.sampled_from([60, 900, 3600]))
def test_bins_match_the_local_time_of_day_in_any_order(zone_day, offsets, bin_seconds) -> None:
    """On the DST days of Madrid, New York and Lord Howe (a 30-minute change), and in zones
    without DST (Kathmandu at +05:45), instants in any order."""
    zone, day = zone_day
    start, _ = day_bounds(day, zone)
    instants = [start + o for o in offsets]
    agg = feed(ProfileAggregator(zone, bin_seconds), [row(t, zone) for t in instants])
    expected = reference(instants, zone, bin_seconds)
    assert {month: counts(agg, "m", month) for month in agg.sums["m"]} == expected


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(values=st.lists(st.tuples(st.integers(0, 40 * 86400), st.integers(0, 9),
                                 st.integers(0, 5), st.sampled_from(["a", "b"])),
                       min_size=1, max_size=60),
       cuts=st.lists(st.integers(0, 60), max_size=4))
def test_merging_parts_equals_one_pass(values, cuts) -> None:
    """Rows split among workers (pickled, as they come back from processes) and merged give the
    sums of one aggregator that saw every row (whole kW: the float sums are exact)."""
    start = int(dt.datetime(2026, 3, 10, tzinfo=MADRID).timestamp())
    rows = [row(start + t, MADRID, float(m), float(p), meter) for t, m, p, meter in values]
    whole = feed(ProfileAggregator(MADRID), rows)
    bounds = [0, *sorted(c % (len(rows) + 1) for c in cuts), len(rows)]
    merged = ProfileAggregator(MADRID)
    for a, b in zip(bounds, bounds[1:]):
        part = pickle.loads(pickle.dumps(feed(ProfileAggregator(MADRID), rows[a:b])))
        merged.merge(part)
    assert merged.sums == whole.sums
    # and the merged aggregator goes on taking rows into the very same lists
    more = row(start + 41 * 86400, MADRID)
    feed(merged, [more])
    feed(whole, [more])
    assert merged.sums == whole.sums
