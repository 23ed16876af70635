"""LocalTime gives what zoneinfo and isoformat give, for every instant of every zone: the ISO
text byte for byte, the aware datetime (fold included), the local date and the wall-clock
seconds, through DST changes both ways, odd offsets and offsets with seconds; and the tz
database keeps the promise its exactness rests on."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from pvsim.model.localtime import HOURS, MINUTES_SECONDS, LocalSpan, LocalTime

ODD_ZONES = [
    "Europe/Madrid", "America/New_York", "UTC",
    "Australia/Lord_Howe",   # DST of half an hour
    "Asia/Kathmandu",        # +05:45
    "Pacific/Chatham",       # +12:45 / +13:45
    "America/St_Johns",      # -03:30 / -02:30
    "Europe/Dublin",         # "negative DST" in the tz database
    "America/Santiago",      # changes at midnight
    "Asia/Gaza",             # changes at midnight, some years on odd dates
    "Africa/Casablanca",     # DST suspended for Ramadan: several changes a year
    "Pacific/Apia",          # skipped 30 December 2011 entirely
    "Antarctica/Troll",      # +00 / +02
    "Africa/Monrovia",       # -00:44:30 until 1972: an offset with seconds
]
UTC = dt.timezone.utc


def iso(span: LocalSpan, instant: int) -> str:
    """An instant's ISO text from its span, as LocalSpan says (and the PV service computes)."""
    hours, rest = divmod(instant - span.base, 3600)
    return span.prefix + HOURS[hours] + MINUTES_SECONDS[rest] + span.suffix


def local_datetime(span: LocalSpan, instant: int) -> dt.datetime:
    """An instant's aware local datetime from its span, as LocalSpan says."""
    if span.repeats:
        return dt.datetime.fromtimestamp(instant, span.midnight.tzinfo)
    return span.midnight + dt.timedelta(seconds=instant - span.base)


def assert_local(lt: LocalTime, instant: int) -> None:
    want = dt.datetime.fromtimestamp(instant, lt.tz)
    span = lt.span(instant)
    got = local_datetime(span, instant)
    assert iso(span, instant) == want.isoformat()
    assert got == want and got.fold == want.fold and got.isoformat() == want.isoformat()
    assert span.day == want.date()
    assert instant - span.base == want.hour * 3600 + want.minute * 60 + want.second


def changes(tz: ZoneInfo, start: int, end: int, step: int = 3600) -> list[int]:
    """Instants (to the hour) just after a change of UTC offset in [start, end)."""
    found, last = [], dt.datetime.fromtimestamp(start, tz).utcoffset()
    for t in range(start, end, step):
        offset = dt.datetime.fromtimestamp(t, tz).utcoffset()
        if offset != last:
            found.append(t)
            last = offset
    return found


@pytest.mark.parametrize("key", ODD_ZONES)
def test_every_second_around_each_change_of_a_year(key):
    tz = ZoneInfo(key)
    year = 2011 if key == "Pacific/Apia" else 1972 if key == "Africa/Monrovia" else 2026
    start = int(dt.datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(dt.datetime(year + 1, 1, 3, tzinfo=UTC).timestamp())
    lt = LocalTime(tz)
    for change in changes(tz, start, end):
        for instant in range(change - 2 * 3600, change + 2 * 3600):  # in order, as a run goes
            assert_local(lt, instant)
    for instant in range(start, end, 577):  # and through the year, across every midnight
        assert_local(lt, instant)


def test_a_fall_back_day_shows_its_repeated_hour_twice_with_the_right_offsets():
    lt = LocalTime(ZoneInfo("Europe/Madrid"))
    start = int(dt.datetime(2026, 10, 25, tzinfo=ZoneInfo("Europe/Madrid")).timestamp())
    texts = [iso(lt.span(t), t) for t in range(start, start + 25 * 3600, 1800)]
    assert texts[4:8] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00",
                          "2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00"]
    assert len(set(texts)) == 50
    second = local_datetime(lt.span(start + 3 * 3600), start + 3 * 3600)
    assert second.fold == 1 and second.timestamp() == start + 3 * 3600


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(key=st.sampled_from(ODD_ZONES), instant=st.integers(0, 4_102_444_800),  # 1970-2100
       offsets=st.lists(st.integers(-100_000, 100_000), max_size=20))
def test_any_instant_and_its_neighbours_in_any_order(key, instant, offsets):
    lt = LocalTime(ZoneInfo(key))
    for t in [instant, *(instant + o for o in offsets)]:
        assert_local(lt, max(0, t))


def test_no_zone_changes_its_offset_twice_within_48_hours():
    """What LocalTime's bisection assumes of the installed tz database (at most one change in a
    local day), checked over every zone's transitions (zoneinfo's own TZif reader)."""
    common = pytest.importorskip("zoneinfo._common")
    closest = None
    for key in sorted(zoneinfo.available_timezones()):
        path = zoneinfo._tzpath.find_tzfile(key)
        if path is None:
            continue
        with open(path, "rb") as f:
            trans_idx, trans_utc, utcoff, *_ = common.load_data(f)
        last, changed = None, []
        for t, i in zip(trans_utc, trans_idx):
            if last is not None and utcoff[i] != last:
                changed.append(t)
            last = utcoff[i]
        for a, b in zip(changed, changed[1:]):
            if closest is None or b - a < closest[0]:
                closest = (b - a, key, a)
    assert closest is not None and closest[0] > 48 * 3600, closest
