"""The PV service's row loop writes exactly the rows `row_for` below defines (the slow, obvious
definition of a row: zoneinfo and isoformat for every reading): the same CSV bytes and the same rows to
the listeners, through DST changes both ways, several meters, duplicates and late readings,
from Readings and from message bodies of both versions."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from pvsim.model.pvcurve import PvCurve
from pvsim.model.pvmodels import Clouds
from pvsim.model.reading import Reading
from pvsim.model.pvcurve import local_seconds
from pvsim.pipeline.csvsink import HEADER, CsvSink, Row, day_files
from pvsim.pipeline.messages import encode, encode_columns
from pvsim.pipeline.pvservice import PvService


def row_for(svc: PvService, reading: Reading) -> tuple[Row, int]:
    """The CSV row of a reading, and its instant: the reading's local time in the service's
    zone, the PV power there, the net power."""
    local = reading.timestamp.astimezone(svc.tz)
    instant = int(local.timestamp())
    meter_kw = round(reading.power_w / 1000.0, 4)
    pv_kw = round(svc.curve.power_kw(local_seconds(local), instant), 4)
    return Row(local, reading.meter_id, reading.power_w, meter_kw, pv_kw,
               round(meter_kw - pv_kw, 4)), instant


def readings(tz: ZoneInfo, day: dt.date, hours: int, step: int, meters: list[str]) -> list[Reading]:
    rng = random.Random(7)
    start = int(dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp())
    return [Reading(m, t, dt.datetime.fromtimestamp(t, tz), round(rng.uniform(0, 9000), 1))
            for t in range(start, start + hours * 3600, step) for m in meters]


def service(tmp_path, tz: ZoneInfo) -> tuple[PvService, list]:
    svc = PvService(Clouds(PvCurve(), 0.3, 7), CsvSink(tmp_path, truncate=True), tz)
    seen: list = []
    svc.listeners.append(lambda row, instant: seen.append((row, instant)))
    return svc, seen


def expected_bytes(svc: PvService, readings: list[Reading]) -> dict[dt.date, bytes]:
    """What row_for says each day's file holds (duplicates dropped)."""
    files: dict[dt.date, list[bytes]] = {}
    done = set()
    for r in readings:
        row, instant = row_for(svc, r)
        if (r.meter_id, instant) not in done:
            done.add((r.meter_id, instant))
            files.setdefault(row.timestamp.date(), [(HEADER + "\n").encode()]).append(row.to_line())
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
                for body in encode_columns(["a", "b"], [r.seq for r in part[::2]],
                                           [[r.power_w for r in part[::2]],
                                            [r.power_w for r in part[1::2]]]):
                    svc.handle(body)
    svc.sync()
    assert {d: p.read_bytes() for d, p in day_files(tmp_path)} == expected_bytes(svc, batch)
    reference = [row_for(svc, r) for r in batch[:len(seen)]]
    for (row, instant), (want, want_instant) in zip(seen, reference):
        assert row == want and instant == want_instant
        assert row.timestamp.fold == want.timestamp.fold
        assert row.timestamp.utcoffset() == want.timestamp.utcoffset()
    assert len(seen) == svc.rows_total == len({(r.meter_id, r.seq) for r in batch})


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
