"""output.retention_days: days older than the cutoff lose their CSV, their aggregate and their
place in memory; the days kept are untouched; a day still open in the sink is closed first."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from pvsim.model.pvcurve import PvCurve
from pvsim.model.reading import Reading
from pvsim.pipeline.csvsink import CsvSink, day_files
from pvsim.pipeline.pvservice import PvService
from pvsim.store.readingstore import ReadingStore, agg_name
from pvsim.store.retention import Retention

TZ = ZoneInfo("Europe/Madrid")
TODAY = dt.date(2026, 6, 21)


def ten_days(directory) -> tuple[CsvSink, ReadingStore]:
    sink = CsvSink(directory, max_open=20)
    store = ReadingStore(directory, TZ, today=lambda: TODAY)
    service = PvService(PvCurve(), sink, TZ)
    service.listeners.append(store.on_row)
    for d in range(10, 0, -1):
        day = TODAY - dt.timedelta(days=d)
        t0 = int(dt.datetime.combine(day, dt.time(12), TZ).timestamp())
        service.process([Reading("m", t, dt.datetime.fromtimestamp(t, TZ), 1000.0) for t in range(t0, t0 + 60)])
    service.sync()
    store.energy_by_day("m")  # loads every day, persists the aggregates of past days
    return sink, store


def test_days_before_the_cutoff_go_with_their_aggregates_and_memory(tmp_path):
    sink, store = ten_days(tmp_path)
    assert all((tmp_path / agg_name(day)).exists() for day, _ in day_files(tmp_path))
    removed = Retention(tmp_path, 3, TZ, sink=sink, store=store, today=lambda: TODAY).run()
    kept = [day for day, _ in day_files(tmp_path)]
    assert kept == [TODAY - dt.timedelta(days=d) for d in (3, 2, 1)]
    assert removed.days == 7 and removed.bytes > 0
    assert sorted(p.name for p in tmp_path.glob(".pvsim-*.agg.json")) == sorted(agg_name(d) for d in kept)
    assert sorted(store.energy_by_day("m")) == kept  # nothing of the removed days in the answers
    # a late row for a removed day, whose file was open in the sink: a new file, with its header
    late_day = TODAY - dt.timedelta(days=9)
    t = int(dt.datetime.combine(late_day, dt.time(13), TZ).timestamp())
    PvService(PvCurve(), sink, TZ).process([Reading("m", t, dt.datetime.fromtimestamp(t, TZ), 5.0)])
    sink.sync()
    assert (tmp_path / f"pvsim-{late_day}.csv").read_text().count("\n") == 2


def test_zero_keeps_everything(tmp_path):
    sink, store = ten_days(tmp_path)
    assert Retention(tmp_path, 0, TZ, sink=sink, store=store, today=lambda: TODAY).run().days == 0
    assert len(day_files(tmp_path)) == 10
