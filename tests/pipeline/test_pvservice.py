"""The PV service's row loop writes exactly the rows `row_for` below defines (the slow, obvious
definition of a row: zoneinfo and isoformat for every reading): the same CSV bytes and the same rows to
the listeners, through DST changes both ways, several meters, duplicates and late readings,
from Readings and from message bodies of both versions."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from pvsim.model.pvcurve import PvCurve
from pvsim.model.pvmodels import Clouds
from pvsim.model.reading import Reading
from pvsim.pipeline.csvformat import HEADER_LINE, Row, day_files, format_line, parse_line
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.messages import encode, encode_columns
from pvsim.pipeline.pvservice import PvService


def line_of(local: dt.datetime, row: Row) -> bytes:
    """The CSV line of a row at its local time (isoformat: the slow, obvious way)."""
    return format_line(local.isoformat(), row.meter_id, row.meter_w, row.meter_kw, row.pv_kw, row.net_kw)


def row_for(svc: PvService, reading: Reading) -> tuple[Row, bytes]:
    """The row of a reading, and its CSV line: the reading's local time in the service's
    zone, the PV power there, the net power."""
    local = reading.timestamp.astimezone(svc.tz)
    instant = int(local.timestamp())
    meter_kw = round(reading.power_w / 1000.0, 4)
    pv_kw = round(svc.pv_model.power_kw(instant), 4)
    row = Row(local.date(), reading.meter_id, instant, reading.power_w, meter_kw, pv_kw)
    return row, line_of(local, row)


def readings(tz: ZoneInfo, day: dt.date, hours: int, step: int, meters: list[str]) -> list[Reading]:
    rng = random.Random(7)
    start = int(dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp())
    return [Reading(m, t, round(rng.uniform(0, 9000), 1), tz)
            for t in range(start, start + hours * 3600, step) for m in meters]


def service(tmp_path, tz: ZoneInfo) -> tuple[PvService, list]:
    svc = PvService(Clouds(PvCurve(tz), 0.3, 7), CsvSink(tmp_path, truncate=True), tz)
    seen: list = []
    svc.listeners.append(lambda row, nbytes: seen.append((row, nbytes)))
    return svc, seen


def expected_bytes(svc: PvService, readings: list[Reading]) -> dict[dt.date, bytes]:
    """What row_for says each day's file holds (duplicates dropped)."""
    files: dict[dt.date, list[bytes]] = {}
    done = set()
    for r in readings:
        row, line = row_for(svc, r)
        if (r.meter_id, row.instant) not in done:
            done.add((r.meter_id, row.instant))
            files.setdefault(row.day, [HEADER_LINE]).append(line)
    return {day: b"".join(lines) for day, lines in files.items()}


@pytest.mark.parametrize("zone,day", [("Europe/Madrid", dt.date(2026, 3, 28)),   # spring forward
                                      ("Europe/Madrid", dt.date(2026, 10, 24)),  # fall back
                                      ("Australia/Lord_Howe", dt.date(2026, 4, 4)),  # 30 min back
                                      ("America/St_Johns", dt.date(2026, 11, 1))])
@pytest.mark.parametrize("form", ["readings", "version 1", "version 2"])
def test_the_row_loop_writes_what_row_for_defines(tmp_path, zone, day, form):
    tz = ZoneInfo(zone)
    batch = readings(tz, day, 30, 13, ["a", "b"])
    batch = batch + batch[:40] + batch[5000:5100]  # redeliveries: dropped as duplicates
    svc, seen = service(tmp_path, tz)
    if form == "readings":
        svc.process(batch)
    else:
        for i in range(0, len(batch), 500):
            part = batch[i:i + 500]
            if form == "version 1":
                svc.handle(encode(part))
            else:  # the same readings as columns: each instant has a's then b's reading
                for body in encode_columns(["a", "b"], [r.instant for r in part[::2]],
                                           [[r.power_w for r in part[::2]],
                                            [r.power_w for r in part[1::2]]]):
                    svc.handle(body)
    svc.sync()
    assert {d: p.read_bytes() for d, p in day_files(tmp_path)} == expected_bytes(svc, batch)
    reference = [row_for(svc, r) for r in batch[:len(seen)]]
    for (row, nbytes), (want, want_line) in zip(seen, reference):
        assert row == want and nbytes == len(want_line)
    assert len(seen) == svc.rows_total == len({(r.meter_id, r.instant) for r in batch})


def test_a_late_reading_is_written_in_its_own_day(tmp_path):
    """Readings out of order, across days: each row lands in its day's file, none twice."""
    tz = ZoneInfo("Europe/Madrid")
    two_days = readings(tz, dt.date(2026, 6, 21), 48, 600, ["m"])
    shuffled = two_days[:]
    random.Random(3).shuffle(shuffled)
    svc, _ = service(tmp_path, tz)
    svc.process(shuffled)
    svc.process(two_days)
    svc.sync()
    got = {d: sorted(p.read_bytes().splitlines()) for d, p in day_files(tmp_path)}
    want = {d: sorted(b.splitlines()) for d, b in expected_bytes(svc, two_days).items()}
    assert got == want


# ---- issue 18, 6: the exactly-once memory is bounded by the days in use, the files hold the rest

def sparse_descending(tz: ZoneInfo, first: dt.date, days: int, per_day: int) -> list[Reading]:
    """`per_day` isolated instants (a minute apart) on each of `days` days, newest first: the
    order that cost quadratic time, and memory never returned."""
    out = []
    for d in range(days):
        start = int(dt.datetime.combine(first + dt.timedelta(days=d), dt.time(1), tz).timestamp())
        out += [Reading("m", t, 100.0, tz)
                for t in range(start, start + per_day * 60, 60)]
    return out[::-1]


def ranges_held(svc: PvService) -> int:
    return sum(len(seen) for day in svc.written.values() for seen in day.values())


@pytest.mark.parametrize("recover", [True, False])
def test_memory_holds_a_few_days_and_the_files_the_rest(tmp_path, recover):
    tz = ZoneInfo("Europe/Berlin")
    svc = PvService(PvCurve(tz), CsvSink(tmp_path, truncate=not recover), tz, recover=recover,
                    days_in_memory=4)
    posted = sparse_descending(tz, dt.date(2026, 5, 1), 30, 200)
    for start in range(0, len(posted), 1000):  # POSTs of 1,000 readings
        assert svc.process(posted[start:start + 1000]).written == len(posted[start:start + 1000])
    svc.sync()
    # 6,000 isolated instants written; memory holds those of at most 4 days (200 ranges each)
    assert len(svc.written) <= 4 and ranges_held(svc) <= 4 * 200
    rows = sum(len(p.read_text().splitlines()) - 1 for _, p in day_files(tmp_path))
    assert rows == len(posted)
    # every evicted day is read back when written again: nothing doubled, a new instant written
    again = svc.process(posted[::7])
    assert (again.written, again.duplicates) == (0, len(posted[::7]))
    old = posted[-1]
    late = Reading("m", old.instant + 30, 5.0, tz)
    assert svc.process([late, late]).written == 1
    svc.sync()
    assert sum(len(p.read_text().splitlines()) - 1 for _, p in day_files(tmp_path)) == len(posted) + 1


def test_forget_drops_a_removed_days_memory_so_it_is_written_again(tmp_path):
    tz = ZoneInfo("Europe/Berlin")
    svc = PvService.recovering(PvCurve(tz), CsvSink(tmp_path), tz)
    day = sparse_descending(tz, dt.date(2020, 11, 29), 1, 50)
    assert svc.process(day).written == 50
    svc.sync()
    assert svc.process(day).duplicates == 50
    path = tmp_path / "pvsim-2020-11-29.csv"
    svc.forget(dt.date(2020, 11, 29))  # retention: the file is closed, then removed
    path.unlink()
    assert svc.process(day).written == 50
    svc.sync()
    assert len(path.read_text().splitlines()) == 51


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 40)), min_size=1, max_size=120),
       st.integers(1, 40), st.integers(1, 4), st.booleans())
def test_every_reading_is_written_once_whatever_the_order_and_the_days_in_memory(
        tmp_path_factory, slots, chunk, days_in_memory, restart):
    """60 examples: readings of 12 days, in any order and repeats, sent in chunks of any size
    twice, through a service that keeps 1 to 4 days in memory (and, with `restart`, a new
    service for the second pass): each (meter, instant) is a row exactly once."""
    tz = ZoneInfo("Europe/Berlin")
    directory = tmp_path_factory.mktemp("once")
    first = int(dt.datetime(2026, 3, 20, tzinfo=tz).timestamp())
    sent = [Reading(f"m{x % 2}", t, 1.0, tz)
            for d, x in slots for t in [first + d * 86_400 + x * 37]]
    svc = PvService.recovering(PvCurve(tz), CsvSink(directory), tz, days_in_memory=days_in_memory)
    for attempt in range(2):
        if attempt and restart:
            svc.sync()
            svc = PvService.recovering(PvCurve(tz), CsvSink(directory), tz, days_in_memory=days_in_memory)
        for start in range(0, len(sent), chunk):
            svc.process(sent[start:start + chunk])
        svc.sync()  # the daemon's: before every ack, after every POST
        assert len(svc.written) <= days_in_memory
    svc.sync()
    rows = [(parse_line(line)[1].meter_id, parse_line(line)[1].instant) for _, p in day_files(directory)
            for line in p.read_text().splitlines()[1:]]
    assert len(rows) == len(set(rows)) == len({(r.meter_id, r.instant) for r in sent})


def test_a_run_that_comes_back_to_a_day_it_let_go_of_keeps_the_days_rows(tmp_path):
    """pvsim-run's sink starts each day's file afresh once; a day dropped from memory and
    written again is read back, never started afresh a second time."""
    tz = ZoneInfo("Europe/Berlin")
    svc = PvService(PvCurve(tz), CsvSink(tmp_path, truncate=True), tz, days_in_memory=1)
    first = sparse_descending(tz, dt.date(2026, 5, 1), 1, 10)
    assert svc.process(first).written == 10
    assert svc.process(sparse_descending(tz, dt.date(2026, 5, 2), 1, 10)).written == 10  # lets go of May 1
    new = first[0].instant + 1
    assert svc.process(first + [Reading("m", new, 1.0, tz)]).written == 1
    svc.sync()
    assert len((tmp_path / "pvsim-2026-05-01.csv").read_text().splitlines()) == 1 + 11


class CountingSink(CsvSink):
    """A sink that counts the days read back (each is a read of the day's whole file)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_back: list[dt.date] = []

    def written(self, day):
        self.read_back.append(day)
        return super().written(day)


@pytest.mark.slow
def test_a_posts_chunks_over_many_days_read_each_day_back_once(tmp_path):
    """pvsim-pv processes a POST in chunks of 5,000 under its lock, and syncs at the end: the
    memory is trimmed at the sync, so chunks that all touch the same 30 days do not read them
    back from their files chunk after chunk (that would cost chunks x the days' rows)."""
    tz = ZoneInfo("Europe/Berlin")
    sink = CountingSink(tmp_path)
    svc = PvService.recovering(PvCurve(tz), sink, tz, days_in_memory=4)
    posted = sparse_descending(tz, dt.date(2026, 5, 1), 30, 100)
    round_robin = [posted[d * 100 + i] for i in range(100) for d in range(30)]
    for start in range(0, len(round_robin), 300):  # 10 chunks, each touching all 30 days
        assert svc.process(round_robin[start:start + 300]).written == 300
    svc.sync()
    assert sorted(sink.read_back) == sorted(set(sink.read_back)) and len(sink.read_back) == 30
    assert len(svc.written) == 4
    again = svc.process(round_robin)  # the next POST: the 26 days dropped are read once more
    svc.sync()
    assert again.duplicates == 3000 and len(sink.read_back) == 30 + 26
