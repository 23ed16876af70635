"""output.retention_days: days older than the cutoff lose their CSVs (every shard's), their
aggregates and their place in memory; the days kept are untouched; a day still open in a sink is
closed first."""

from __future__ import annotations

import datetime as dt
import json
import os
from zoneinfo import ZoneInfo

from pvsim import config
from pvsim.api.joi import JoiApi
from pvsim.model.pvcurve import PvCurve
from pvsim.model.reading import Reading
from pvsim.model.shard import shard_of
from pvsim.pipeline.csvformat import agg_name, all_day_files, day_files
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.pvservice import PvService
from pvsim.store.readingstore import ReadingStore
from pvsim.store.retention import Retention
from pvsim.store.shardedstore import ShardedStore

TZ = ZoneInfo("Europe/Madrid")
TODAY = dt.date(2026, 6, 21)


def written_on_their_day(directory) -> None:
    """Each CSV last modified at the end of its day, as a live meter's file is (the tests
    write them now, and retention keeps a file written within the window)."""
    for day, _, path in all_day_files(directory):
        end = dt.datetime.combine(day, dt.time(23, 59, 59), TZ).timestamp()
        os.utime(path, (end, end))


def ten_days(directory) -> tuple[CsvSink, ReadingStore]:
    sink = CsvSink(directory, max_open=20)
    store = ReadingStore(directory, TZ, today=lambda: TODAY)
    service = PvService(PvCurve(TZ), sink, TZ)
    service.listeners.append(store.on_row)
    for d in range(10, 0, -1):
        day = TODAY - dt.timedelta(days=d)
        t0 = int(dt.datetime.combine(day, dt.time(12), TZ).timestamp())
        service.process([Reading("m", t, 1000.0, TZ) for t in range(t0, t0 + 60)])
    service.sync()
    written_on_their_day(directory)
    store.energy_by_day("m")  # loads every day, persists the aggregates of past days
    return sink, store


def test_days_before_the_cutoff_go_with_their_aggregates_and_memory(tmp_path):
    sink, store = ten_days(tmp_path)
    assert all((tmp_path / agg_name(day)).exists() for day, _ in day_files(tmp_path))
    removed = Retention(tmp_path, 3, TZ, sinks=lambda: [sink], store=store, today=lambda: TODAY).run()
    kept = [day for day, _ in day_files(tmp_path)]
    assert kept == [TODAY - dt.timedelta(days=d) for d in (3, 2, 1)]
    assert removed.days == 7 and removed.bytes > 0
    assert sorted(p.name for p in tmp_path.glob(".pvsim-*.agg.json")) == sorted(agg_name(d) for d in kept)
    assert sorted(store.energy_by_day("m")) == kept  # nothing of the removed days in the answers
    # a late row for a removed day, whose file was open in the sink: a new file, with its header
    late_day = TODAY - dt.timedelta(days=9)
    t = int(dt.datetime.combine(late_day, dt.time(13), TZ).timestamp())
    PvService(PvCurve(TZ), sink, TZ).process([Reading("m", t, 5.0, TZ)])
    sink.sync()
    assert (tmp_path / f"pvsim-{late_day}.csv").read_text().count("\n") == 2


def test_zero_keeps_everything(tmp_path):
    sink, store = ten_days(tmp_path)
    assert Retention(tmp_path, 0, TZ, sinks=lambda: [sink], store=store, today=lambda: TODAY).run().days == 0
    assert len(day_files(tmp_path)) == 10


def test_every_shards_files_go_and_every_sink_closes_them_first(tmp_path):
    sinks = {k: CsvSink(tmp_path, shard=k, max_open=20) for k in range(3)}
    store = ShardedStore(tmp_path, TZ, shards=3, today=lambda: TODAY)
    meters = {shard_of(m, 3): m for m in ("a", "g", "b")}
    assert sorted(meters) == [0, 1, 2]
    for k, sink in sinks.items():
        service = PvService(PvCurve(TZ), sink, TZ, shards=3)
        service.listeners.append(store.on_row)
        for d in (5, 4, 1):
            t0 = int(dt.datetime.combine(TODAY - dt.timedelta(days=d), dt.time(12), TZ).timestamp())
            service.process([Reading(meters[k], t, 1000.0, TZ)
                             for t in range(t0, t0 + 60)])
        service.sync()
    (tmp_path / "pvsim-2026-06-15.csv").write_text("timestamp\n")  # a day without shards goes too
    written_on_their_day(tmp_path)
    for m in meters.values():
        store.energy_by_day(m)  # loads and persists the past days of every shard
    assert len(list(tmp_path.glob(".pvsim-*.s0?.agg.json"))) == 9
    asked = []
    removed = Retention(tmp_path, 3, TZ, sinks=lambda: asked.append(1) or sinks.values(),
                        store=store, today=lambda: TODAY).run()
    assert (removed.days, removed.files) == (3, 7) and removed.bytes > 0 and len(asked) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if "pvsim-" in p.name) == sorted(
        [f"pvsim-2026-06-20.s0{k}.csv" for k in range(3)]
        + [f".pvsim-2026-06-20.s0{k}.agg.json" for k in range(3)])
    for m in meters.values():
        assert sorted(store.energy_by_day(m)) == [TODAY - dt.timedelta(days=1)]
    # the sinks closed the files they had open: a late row starts a new file, with its header
    late = int(dt.datetime.combine(TODAY - dt.timedelta(days=5), dt.time(13), TZ).timestamp())
    PvService(PvCurve(TZ), sinks[1], TZ, shards=3).process(
        [Reading(meters[1], late, 5.0, TZ)])
    sinks[1].sync()
    assert (tmp_path / "pvsim-2026-06-16.s01.csv").read_text().count("\n") == 2


# ---- issue 18, 4: an accepted reading is never deleted behind the client's back ---------------

README_EXAMPLE = {"smartMeterId": "smart-meter-0", "electricityReadings": [
    {"time": 1606636800, "reading": 0.0503}, {"time": 1606636860, "reading": 0.0621}]}  # 2020-11-29


class PvProcess:
    """What pvsim-pv wires for a POST (service, sink, API, store) and runs at start and hourly
    (retention, services=..., as daemons.pv), over a directory; a new one is a restart."""

    def __init__(self, directory, today):
        self.cfg = config.Config()  # output.retention_days: 400
        self.service = PvService.recovering(PvCurve(self.cfg.tz), CsvSink(directory), self.cfg.tz)
        self.api = JoiApi(self.cfg, directory, self.ingest)
        self.service.listeners.append(self.api.on_row)
        self.retention = Retention(directory, self.cfg.output.retention_days, self.cfg.tz,
                                   services=lambda: [self.service], store=self.api.store,
                                   today=today)
        self.retention.run()  # at start

    def ingest(self, readings):
        outcome = self.service.process(readings)
        self.service.sync()
        return outcome

    def post(self, body):
        return self.api("POST", "/readings/store", {}, json.dumps(body).encode())

    def read(self, meter):
        return self.api("GET", f"/readings/read/{meter}", {}, b"")


def test_the_readme_example_posted_today_survives_restarts_for_retention_days(tmp_path):
    today = dt.datetime.now(ZoneInfo("Europe/Berlin")).date()
    clock = {"today": today}
    pv = PvProcess(tmp_path, lambda: clock["today"])
    assert pv.post(README_EXAMPLE)[0] == 200
    readings = [{"reading": r["reading"], "time": r["time"]} for r in README_EXAMPLE["electricityReadings"]]
    assert pv.read("smart-meter-0") == (200, readings)
    pv = PvProcess(tmp_path, lambda: clock["today"])  # a restart: retention runs at start
    assert pv.read("smart-meter-0") == (200, readings)
    assert pv.retention.run().kept == 1
    assert pv.post(README_EXAMPLE)[0] == 200  # a repeat is a duplicate, loads the day into memory
    assert pv.service.written and len((tmp_path / "pvsim-2020-11-29.csv").read_text().splitlines()) == 3
    # 401 days on (an injected clock; the file's time is real), nothing written to the day since:
    # it goes, and everything pvsim-pv held of it with it
    clock["today"] = today + dt.timedelta(days=401)
    removed = pv.retention.run()
    assert (removed.days, removed.kept) == (1, 0) and not (tmp_path / "pvsim-2020-11-29.csv").exists()
    assert pv.read("smart-meter-0") == (200, [])  # an account of its own: no readings, no 404
    # posted again: stored again (not dropped as a duplicate of what memory held), readable again
    assert pv.post(README_EXAMPLE)[0] == 200
    assert len((tmp_path / "pvsim-2020-11-29.csv").read_text().splitlines()) == 3
    assert pv.read("smart-meter-0") == (200, readings)


def test_a_live_day_goes_when_its_day_and_its_last_write_are_both_past_the_window(tmp_path):
    sink, store = ten_days(tmp_path)
    late = TODAY - dt.timedelta(days=8)
    path = tmp_path / f"pvsim-{late}.csv"
    written = dt.datetime.combine(TODAY - dt.timedelta(days=2), dt.time(9), TZ).timestamp()
    os.utime(path, (written, written))  # a late row appended to it two days ago
    removed = Retention(tmp_path, 3, TZ, sinks=lambda: [sink], store=store, today=lambda: TODAY).run()
    assert (removed.days, removed.kept) == (6, 1)
    kept = [TODAY - dt.timedelta(days=d) for d in (3, 2, 1)]
    assert [day for day, _ in day_files(tmp_path)] == [late] + kept


def test_a_day_another_process_removed_is_forgotten_too(tmp_path):
    """A fleet's pvsim-pv processes share the directory: the first one's retention removes a
    day's files; the others' next run finds them gone and forgets the day all the same."""
    sink = CsvSink(tmp_path)
    service = PvService.recovering(PvCurve(TZ), sink, TZ)
    day = TODAY - dt.timedelta(days=9)
    t0 = int(dt.datetime.combine(day, dt.time(12), TZ).timestamp())
    readings = [Reading("m", t, 1000.0, TZ) for t in range(t0, t0 + 60)]
    assert service.process(readings).written == 60
    service.sync()
    written_on_their_day(tmp_path)
    assert Retention(tmp_path, 3, TZ, today=lambda: TODAY).run().days == 1  # the other process
    assert service.process(readings).duplicates == 60  # still remembered here: not yet told
    assert Retention(tmp_path, 3, TZ, services=lambda: [service], today=lambda: TODAY).run().days == 0
    assert service.process(readings).written == 60
    service.sync()
    assert len((tmp_path / f"pvsim-{day}.csv").read_text().splitlines()) == 61
