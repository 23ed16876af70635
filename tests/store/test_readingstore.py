"""The reading store over the daily CSVs: windows, paging, per-day energy (midnight cut), the
persisted day aggregates and the incremental row listener, against hand-computed energy."""

import datetime as dt
import json
import os
from zoneinfo import ZoneInfo

import pytest

from pvsim.model.energy import integrate
from pvsim.model.pvcurve import PvCurve
from pvsim.pipeline.csvsink import CsvSink, Row
from pvsim.pipeline.messages import Reading
from pvsim.pipeline.pvservice import PvService
from pvsim.store.aggregates import DayAggregator, MeterDay
from pvsim.store.readingstore import ReadingStore, agg_name
from tests.pipeline.test_pvservice import row_for
from tests.support.csvfiles import written

UTC = ZoneInfo("UTC")
MADRID = ZoneInfo("Europe/Madrid")
SAT, SUN = dt.date(2020, 11, 28), dt.date(2020, 11, 29)
TODAY = dt.date(2030, 1, 1)  # every test day is complete (past)


def at(text: str, tz=UTC) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz)


def row(text: str, meter_kw: float, pv_kw: float = 0.0, meter: str = "m", tz=UTC) -> Row:
    return Row(at(text, tz), meter, meter_kw * 1000, meter_kw, pv_kw, round(meter_kw - pv_kw, 4))


def write(directory, rows, sink=None, store=None) -> CsvSink:
    sink = sink or CsvSink(directory)
    for r in rows:
        sink.append(r)
        if store is not None:
            store.on_row(r, int(r.timestamp.timestamp()))
    sink.sync()
    return sink


def store(directory, tz=UTC, max_gap=3600.0, **kw) -> ReadingStore:
    return ReadingStore(directory, tz, max_gap, today=lambda: TODAY, **kw)


def test_one_day_equals_energy_integrate(tmp_path):
    rows = [row(f"2020-11-29T12:{m:02d}:00", 1.0 + m / 10, 0.5 + (m % 3) / 2) for m in range(30)]
    write(tmp_path, rows)
    days = store(tmp_path).energy_by_day("m")
    expect = integrate([(int(r.timestamp.timestamp()), r.meter_kw, r.pv_kw) for r in rows])
    assert list(days) == [SUN]
    got = days[SUN]
    for name in ("consumed_kwh", "pv_kwh", "import_kwh", "export_kwh"):
        assert getattr(got, name) == pytest.approx(getattr(expect, name))
    assert (got.readings, got.first, got.last) == (30, expect.first, expect.last)


def test_segment_across_midnight_is_cut_at_midnight(tmp_path):
    write(tmp_path, [row("2020-11-28T23:59:00", 1.0), row("2020-11-29T00:01:00", 3.0)])
    days = store(tmp_path).energy_by_day("m")
    # linear 1 -> 3 kW over 2 minutes: 2 kW at midnight
    assert days[SAT].consumed_kwh == pytest.approx((1 + 2) / 2 / 60)
    assert days[SUN].consumed_kwh == pytest.approx((2 + 3) / 2 / 60)
    assert days[SAT].readings == days[SUN].readings == 1


def test_midnight_is_local_midnight(tmp_path):
    """Europe/Madrid in November is UTC+1: local midnight is 23:00 UTC."""
    write(tmp_path, [row("2020-11-28T23:30:00", 2.0, tz=MADRID), row("2020-11-29T00:30:00", 2.0, tz=MADRID)])
    days = store(tmp_path, MADRID).energy_by_day("m")
    assert days[SAT].consumed_kwh == pytest.approx(1.0)
    assert days[SUN].consumed_kwh == pytest.approx(1.0)


def test_gap_longer_than_the_limit_is_not_bridged(tmp_path):
    write(tmp_path, [row("2020-11-29T10:00:00", 1.0), row("2020-11-29T10:10:00", 1.0),
                     row("2020-11-29T12:00:00", 5.0), row("2020-11-29T12:01:00", 5.0)])
    days = store(tmp_path, max_gap=3600).energy_by_day("m")
    assert days[SUN].consumed_kwh == pytest.approx(10 / 60 + 5 / 60)
    days = store(tmp_path, max_gap=86400).energy_by_day("m")
    assert days[SUN].consumed_kwh == pytest.approx(10 / 60 + 3 * 110 / 60 + 5 / 60)


def test_windows_clip_segments_and_add_up(tmp_path):
    rows = [row(f"2020-11-{d}T{h:02d}:00:00", float(h % 5), float(h % 3)) for d in (28, 29) for h in range(24)]
    write(tmp_path, rows)
    s = store(tmp_path)
    whole = s.energy_by_day("m")
    cut = int(at("2020-11-29T05:30:00").timestamp())
    left, right = s.energy_by_day("m", None, cut), s.energy_by_day("m", cut, None)
    for name in ("consumed_kwh", "pv_kwh", "import_kwh", "export_kwh"):
        total = sum(getattr(b, name) for b in whole.values())
        assert sum(getattr(b, name) for d in (left, right) for b in d.values()) == pytest.approx(total)
    # 05:00 (0 kW) -> 06:00 (1 kW): the window's half hour from 05:30 is (0.5 + 1) / 2 * 0.5 kWh
    s6 = int(at("2020-11-29T06:00:00").timestamp())
    assert s.energy_by_day("m", cut, s6)[SUN].consumed_kwh == pytest.approx(0.375)
    assert s.energy_by_day("m", cut, cut) == {}


def test_readings_window_and_paging(tmp_path):
    rows = [row(f"2020-11-29T10:{m:02d}:00", m / 100) for m in range(50)]
    write(tmp_path, rows + [row("2020-11-29T10:05:30", 9.0, meter="other")])
    s = store(tmp_path)
    page1 = s.readings("m", limit=20)
    assert [kw for _, kw in page1] == [m / 100 for m in range(20)]
    page2 = s.readings("m", page1[-1][0] + 1, limit=20)
    assert page2[0][1] == 0.2 and len(page2) == 20
    t10 = int(at("2020-11-29T10:10:00").timestamp())
    assert s.readings("m", t10, t10 + 120) == [(t10, 0.1), (t10 + 60, 0.11)]
    assert s.readings("other") == [(int(at("2020-11-29T10:05:30").timestamp()), 9.0)]
    assert s.readings("nobody") == []


def test_day_aggregates_persist_and_are_used_after_a_restart(tmp_path):
    write(tmp_path, [row("2020-11-28T12:00:00", 1.0), row("2020-11-28T13:00:00", 1.0),
                     row("2020-11-29T12:00:00", 2.0), row("2020-11-29T13:00:00", 2.0)])
    first = store(tmp_path)
    expect = first.energy_by_day("m")
    assert first.rebuilds == 2
    agg = json.loads((tmp_path / agg_name(SUN)).read_text())
    assert agg["csv_size"] == os.path.getsize(tmp_path / "pvsim-2020-11-29.csv")
    again = store(tmp_path)
    assert again.energy_by_day("m") == expect
    assert again.rebuilds == 0  # loaded from the aggregate files
    # a late row changes the CSV: its aggregate is stale and the day is rebuilt
    write(tmp_path, [row("2020-11-29T14:00:00", 2.0)])
    third = store(tmp_path)
    assert third.energy_by_day("m")[SUN].consumed_kwh == pytest.approx(4.0)
    assert third.rebuilds == 1


def test_today_is_not_persisted(tmp_path):
    write(tmp_path, [row("2020-11-29T12:00:00", 1.0), row("2020-11-29T13:00:00", 1.0)])
    ReadingStore(tmp_path, UTC, today=lambda: SUN).energy_by_day("m")
    assert not (tmp_path / agg_name(SUN)).exists()


def test_rows_from_the_listener_update_loaded_days(tmp_path):
    s = store(tmp_path)
    sink = write(tmp_path, [row("2020-11-29T12:00:00", 1.0), row("2020-11-29T13:00:00", 1.0)], store=s)
    assert s.energy_by_day("m")[SUN].consumed_kwh == pytest.approx(1.0)
    builds = s.rebuilds
    write(tmp_path, [row("2020-11-29T14:00:00", 3.0)], sink, s)
    assert s.energy_by_day("m")[SUN].consumed_kwh == pytest.approx(3.0)
    assert s.rebuilds == builds  # applied incrementally
    # out of order: the day is rebuilt from the CSV, and counted right
    write(tmp_path, [row("2020-11-29T12:30:00", 1.0)], sink, s)
    assert s.energy_by_day("m")[SUN].consumed_kwh == pytest.approx(3.0)
    assert s.rebuilds == builds + 1
    assert len(s.readings("m")) == 4


def test_rows_not_yet_flushed_are_counted(tmp_path):
    """A row the sink holds in its buffer (not in the file yet) is known from the listener."""
    s = store(tmp_path)
    sink = write(tmp_path, [row("2020-11-29T12:00:00", 1.0)], store=s)
    late = row("2020-11-29T13:00:00", 1.0)
    sink.append(late)  # no sync: not in the file
    s.on_row(late, int(late.timestamp.timestamp()))
    assert s.energy_by_day("m")[SUN].consumed_kwh == pytest.approx(1.0)
    assert [t for t, _ in s.readings("m")] == [int(at(f"2020-11-29T{h}:00:00").timestamp()) for h in (12, 13)]
    sink.sync()
    s2 = store(tmp_path)
    assert s2.energy_by_day("m")[SUN].consumed_kwh == pytest.approx(1.0)


def test_duplicate_rows_in_a_csv_count_once(tmp_path):
    r = [row("2020-11-29T12:00:00", 1.0), row("2020-11-29T13:00:00", 1.0)]
    write(tmp_path, r + r)
    s = store(tmp_path)
    assert s.energy_by_day("m")[SUN].consumed_kwh == pytest.approx(1.0)
    assert len(s.readings("m")) == 2


def test_one_reading_or_one_instant_is_no_energy(tmp_path):
    write(tmp_path, [row("2020-11-29T12:00:00", 1.0)])
    assert store(tmp_path).energy_by_day("m")[SUN].consumed_kwh == 0.0


def test_pvservice_rows_and_meters(tmp_path):
    tz = MADRID
    sink = CsvSink(tmp_path)
    svc = PvService(PvCurve(), sink, tz)
    s = store(tmp_path, tz)
    svc.listeners.append(s.on_row)
    start = dt.datetime(2024, 6, 21, 12, 0, tzinfo=tz)
    svc.process([Reading(mid, 0, start + dt.timedelta(seconds=i), 1500.0)
                 for i in range(600) for mid in ("a", "b")])
    svc.sync()
    assert s.meters() == {"a", "b"} and s.has_meter("a") and not s.has_meter("c")
    b = s.energy_by_day("a")[dt.date(2024, 6, 21)]
    assert b.consumed_kwh == pytest.approx(1.5 * 599 / 3600)
    assert b.import_kwh == 0 and b.export_kwh > 0  # the plant makes more than 1.5 kW at noon


def test_dst_day_has_23_hours(tmp_path):
    """2024-03-31 in Madrid: a constant 1 kW all day is 23 kWh."""
    day = dt.date(2024, 3, 31)
    start = int(dt.datetime(2024, 3, 31, tzinfo=MADRID).timestamp())
    sink = CsvSink(tmp_path)
    for t in range(start - 1800, start + 24 * 3600, 1800):
        sink.append(Row(dt.datetime.fromtimestamp(t, MADRID), "m", 1000.0, 1.0, 0.0, 1.0))
    sink.sync()
    days = store(tmp_path, MADRID).energy_by_day("m")
    assert days[day].consumed_kwh == pytest.approx(23.0)
    assert days[day - dt.timedelta(days=1)].consumed_kwh == pytest.approx(0.5)


def test_day_aggregator_matches_the_store(tmp_path):
    rows = [row(f"2020-11-{d}T{h:02d}:00:00", float(h % 4), 1.0) for d in (28, 29) for h in range(24)]
    write(tmp_path, rows)
    agg = DayAggregator(UTC)
    for r in rows:
        agg.on_rows([written(r, int(r.timestamp.timestamp()))])
    assert agg.energy_by_day("m") == store(tmp_path).energy_by_day("m")


def test_day_aggregator_refuses_a_row_earlier_than_the_last():
    """A run's rows come in time order; a late one would be miscounted, so it is an error."""
    agg = DayAggregator(UTC)
    for r in (row("2020-11-29T10:00:00", 1.0), row("2020-11-29T11:00:00", 2.0)):
        agg.on_rows([written(r, int(r.timestamp.timestamp()))])
    late = row("2020-11-29T10:30:00", 1.5)
    with pytest.raises(ValueError, match="earlier than the last one aggregated"):
        agg.on_rows([written(late, int(late.timestamp.timestamp()))])


def test_queries_while_rows_stream_in(tmp_path):
    """A writer thread (process + sync in batches, like pvsim-pv) and a reader thread querying
    all along: the final answer counts every row exactly once."""
    import threading

    tz = UTC
    sink = CsvSink(tmp_path)
    svc = PvService(PvCurve(), sink, tz)
    s = store(tmp_path, tz)
    svc.listeners.append(s.on_row)
    start = int(dt.datetime(2020, 11, 28, 23, 0, tzinfo=tz).timestamp())
    readings = [Reading("m", start + i, dt.datetime.fromtimestamp(start + i, tz), 1000.0 + (i % 7) * 100)
                for i in range(20_000)]
    done = threading.Event()
    errors = []

    def reader():
        while not done.is_set():
            try:
                s.energy_by_day("m")
                s.readings("m", limit=100)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(0, len(readings), 700):
        svc.process(readings[i:i + 700])
        if i % 2100 == 0:
            svc.sync()
    svc.sync()
    done.set()
    thread.join()
    assert not errors
    expect = integrate([(r.instant, round(r.power_w / 1000, 4), row_for(svc, r)[0].pv_kw) for r in readings])
    got = s.energy_by_day("m")
    assert sum(b.readings for b in got.values()) == 20_000
    assert sum(b.consumed_kwh for b in got.values()) == pytest.approx(expect.consumed_kwh)
    assert sum(b.import_kwh for b in got.values()) == pytest.approx(expect.import_kwh)
    fresh = store(tmp_path, tz).energy_by_day("m")
    assert sum(b.consumed_kwh for b in fresh.values()) == pytest.approx(expect.consumed_kwh)


def day_rows(meters=("m", "n"), step=600) -> list[tuple[Row, int]]:
    """Two meters, interleaved, over three Madrid days with a DST change (readings every step)."""
    start = int(dt.datetime(2026, 10, 24, tzinfo=MADRID).timestamp())
    out = []
    for i, t in enumerate(range(start, start + 3 * 86400, step)):
        for k, m in enumerate(meters):
            kw = round((i * 7 + k * 3) % 11 * 0.37, 4)
            local = dt.datetime.fromtimestamp(t, MADRID)
            out.append((Row(local, m, kw * 1000, kw, round(i % 5 * 0.2, 4), 0.0), t))
    return out


def test_day_aggregator_takes_a_batch_as_it_takes_its_rows_one_by_one():
    rows = day_rows()
    one, batched = DayAggregator(MADRID), DayAggregator(MADRID)
    for r, t in rows:
        one.on_rows([written(r, t)])
    for i in range(0, len(rows), 77):  # batches across midnights and the DST change
        batched.on_rows([written(r, t) for r, t in rows[i:i + 77]])
    for meter in ("m", "n"):
        assert batched.energy_by_day(meter) == one.energy_by_day(meter)


def test_day_aggregators_of_consecutive_days_merge_into_the_whole_run():
    """What a run's workers do: each aggregates whole days; merged, the energy across the
    midnights between them is the one a single aggregator of every row has."""
    rows = day_rows()
    whole, first, second = DayAggregator(MADRID), DayAggregator(MADRID), DayAggregator(MADRID)
    whole.on_rows([written(r, t) for r, t in rows])
    cut = next(i for i, (r, _) in enumerate(rows) if r.timestamp.date() == dt.date(2026, 10, 25))
    first.on_rows([written(r, t) for r, t in rows[:cut]])
    second.on_rows([written(r, t) for r, t in rows[cut:]])
    first.merge(second)
    for meter in ("m", "n"):
        assert first.energy_by_day(meter) == whole.energy_by_day(meter)
    with pytest.raises(ValueError, match="only whole days merge"):
        first.merge(whole)


def test_a_day_built_from_unordered_samples_with_a_repeat_is_the_day_added_in_order():
    samples = [(t, (t % 7) * 0.5, (t % 3) * 0.25) for t in range(0, 7200, 60)]
    shuffled = samples[::-1] + [samples[10]]  # out of order, one instant twice
    by_one = MeterDay(3600.0)
    for s in samples:
        assert by_one.add(*s)
    built = MeterDay.build(shuffled, 3600.0)
    assert built.balance == by_one.balance and built.instants.ranges() == by_one.instants.ranges()
    assert (built.first, built.last) == (samples[0], samples[-1])


# ---- rows another process appends (a fleet's pvsim-pv processes share the files) ---------------

def kwh_and_count(s, meter="m", day=SUN):
    b = s.energy_by_day(meter)[day]
    return round(b.consumed_kwh, 9), b.readings, len(s.readings(meter))


def test_rows_another_process_appends_are_read_incrementally_and_once(tmp_path):
    s = store(tmp_path)
    write(tmp_path, [row("2020-11-29T12:00:00", 1.0), row("2020-11-29T13:00:00", 1.0)])
    assert kwh_and_count(s) == (1.0, 2, 2)
    builds = s.rebuilds
    other = write(tmp_path, [row("2020-11-29T14:00:00", 3.0)])  # another writer, no on_row here
    assert kwh_and_count(s) == (3.0, 3, 3)
    write(tmp_path, [row("2020-11-29T15:00:00", 3.0), row("2020-11-29T12:00:00", 3.0, meter="n"),
                     row("2020-11-29T13:00:00", 1.0, meter="n")], other)
    assert kwh_and_count(s) == (6.0, 4, 4) == kwh_and_count(s)
    assert kwh_and_count(s, "n") == (2.0, 2, 2) and s.meters() == {"m", "n"}
    assert s.rebuilds == builds  # only the new lines were read
    assert kwh_and_count(store(tmp_path)) == (6.0, 4, 4)


def test_rows_appended_to_a_day_loaded_from_its_aggregate_are_seen_once(tmp_path):
    write(tmp_path, [row("2020-11-29T12:00:00", 1.0), row("2020-11-29T13:00:00", 1.0)])
    store(tmp_path).energy_by_day("m")  # persists the aggregate
    s = store(tmp_path)
    assert kwh_and_count(s) == (1.0, 2, 2) and s.rebuilds == 0  # from the aggregate
    write(tmp_path, [row("2020-11-29T14:00:00", 3.0)])
    assert kwh_and_count(s) == (3.0, 3, 3) == kwh_and_count(s)
    agg = json.loads((tmp_path / agg_name(SUN)).read_text())
    assert agg["csv_size"] == os.path.getsize(tmp_path / "pvsim-2020-11-29.csv")  # persisted anew
    assert agg["meters"]["m"]["readings"] == 3


def test_a_late_row_from_another_process_rebuilds_the_day(tmp_path):
    s = store(tmp_path)
    write(tmp_path, [row("2020-11-29T12:00:00", 1.0), row("2020-11-29T13:00:00", 1.0)])
    assert kwh_and_count(s) == (1.0, 2, 2)
    builds = s.rebuilds
    write(tmp_path, [row("2020-11-29T12:30:00", 3.0)])  # earlier than the last: not incremental
    assert kwh_and_count(s) == (2.0, 3, 3)
    assert s.rebuilds == builds + 1


def test_own_unflushed_rows_do_not_hide_another_processes_rows(tmp_path):
    """This process's own rows are counted before they are flushed; another writer's rows land
    in the file before them. Reading on from where the file was read (not from the bytes
    counted) finds the other rows once the own ones are flushed, and counts every row once."""
    s = store(tmp_path)
    write(tmp_path, [row("2020-11-29T10:00:00", 1.0)], store=s)
    mine = CsvSink(tmp_path)  # appending (O_APPEND) to the file, as two writers of a file must
    assert kwh_and_count(s) == (0.0, 1, 1)
    for h in (11, 12, 13):  # three own rows, in the buffer: more bytes than the other's row
        r = row(f"2020-11-29T{h}:00:00", 1.0)
        mine.append(r)
        s.on_row(r, int(r.timestamp.timestamp()))
    write(tmp_path, [row("2020-11-29T12:00:00", 2.0, meter="n")])  # another writer, synced
    assert kwh_and_count(s) == (3.0, 4, 4)
    mine.sync()
    assert kwh_and_count(s) == (3.0, 4, 4)
    assert s.readings("n") == [(int(at("2020-11-29T12:00:00").timestamp()), 2.0)]
    assert s.rebuilds == 1  # the first load only
    assert (tmp_path / agg_name(SUN)).exists()  # memory accounts for exactly the file again
    assert kwh_and_count(store(tmp_path)) == (3.0, 4, 4)


def test_an_own_row_flushed_before_the_store_hears_of_it_counts_once(tmp_path):
    s = store(tmp_path)
    sink = write(tmp_path, [row("2020-11-29T12:00:00", 1.0)], store=s)
    assert kwh_and_count(s) == (0.0, 1, 1)
    r = row("2020-11-29T13:00:00", 1.0)
    sink.append(r)
    sink.sync()
    assert kwh_and_count(s) == (1.0, 2, 2)  # read from the file
    s.on_row(r, int(r.timestamp.timestamp()))  # the listener, late
    assert kwh_and_count(s) == (1.0, 2, 2)
    write(tmp_path, [row("2020-11-29T14:00:00", 1.0)], sink, s)
    assert kwh_and_count(s) == (2.0, 3, 3)
    agg = json.loads((tmp_path / agg_name(SUN)).read_text())
    assert agg["csv_size"] == os.path.getsize(tmp_path / "pvsim-2020-11-29.csv")


def test_a_day_removed_or_replaced_by_another_process(tmp_path):
    write(tmp_path, [row("2020-11-28T12:00:00", 1.0), row("2020-11-28T13:00:00", 1.0),
                     row("2020-11-29T12:00:00", 1.0), row("2020-11-29T13:00:00", 1.0)])
    s = store(tmp_path, persist=False)
    assert sorted(s.energy_by_day("m")) == [SAT, SUN]
    (tmp_path / "pvsim-2020-11-28.csv").unlink()
    assert sorted(s.energy_by_day("m")) == [SUN]
    (tmp_path / "pvsim-2020-11-29.csv").unlink()
    write(tmp_path, [row("2020-11-29T12:00:00", 5.0)])  # a new, smaller file
    assert s.energy_by_day("m")[SUN].readings == 1 and s.readings("m") == [
        (int(at("2020-11-29T12:00:00").timestamp()), 5.0)]


def test_a_shard_store_reads_its_shards_files_only(tmp_path):
    write(tmp_path, [row("2020-11-29T12:00:00", 1.0), row("2020-11-29T13:00:00", 1.0)],
          CsvSink(tmp_path, shard=3))
    write(tmp_path, [row("2020-11-29T12:00:00", 9.0, meter="x")], CsvSink(tmp_path, shard=1))
    write(tmp_path, [row("2020-11-29T12:00:00", 9.0, meter="y")])  # a file without shard
    s = store(tmp_path, shard=3)
    assert kwh_and_count(s) == (1.0, 2, 2) and s.meters() == {"m"}
    assert (tmp_path / ".pvsim-2020-11-29.s03.agg.json").exists()
    assert agg_name(SUN, 3) == ".pvsim-2020-11-29.s03.agg.json" and agg_name(SUN) == ".pvsim-2020-11-29.agg.json"
    assert store(tmp_path).meters() == {"y"}  # without shard: the plain files
    again = store(tmp_path, shard=3)
    assert kwh_and_count(again) == (1.0, 2, 2) and again.rebuilds == 0
