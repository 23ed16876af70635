"""A fleet's store: one ReadingStore per shard behind one face, each meter's queries and rows sent
to its shard's store, which reads that shard's files only; no shards, a plain ReadingStore."""

import datetime as dt
import os
from zoneinfo import ZoneInfo

import pytest

from pvsim import config
from pvsim.model.pvcurve import PvCurve
from pvsim.model.reading import Reading
from pvsim.model.shard import shard_of
from pvsim.pipeline.csvformat import all_day_files
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.pvservice import PvService
from pvsim.store.readingstore import ReadingStore
from pvsim.store.shardedstore import ShardedStore, store_for

UTC = ZoneInfo("UTC")
DAY = dt.date(2020, 11, 29)
T0 = int(dt.datetime(2020, 11, 29, 12, tzinfo=UTC).timestamp())
METERS = {"d": 0, "b": 1, "e": 2, "a": 3}  # a meter of each of 4 shards


def readings(meter, kw, n=61, step=60):
    return [Reading(meter, T0 + i * step, kw * 1000, UTC) for i in range(n)]


def services(directory, listener=None, shards=4):
    """Each shard's PvService and sink, as a fleet's writers have them; rows heard by `listener`."""
    made = {}
    for k in range(shards):
        made[k] = PvService(PvCurve(UTC), CsvSink(directory, shard=k), UTC, shards=shards)
        if listener is not None:
            made[k].listeners.append(listener)
    return made


def test_meters_of_four_shards_each_in_their_files_and_store(tmp_path):
    assert {m: shard_of(m, 4) for m in METERS} == METERS
    s = ShardedStore(tmp_path, UTC, shards=4, today=lambda: dt.date(2030, 1, 1))
    writers = services(tmp_path, s.on_row)
    for meter, k in METERS.items():
        writers[k].process(readings(meter, 1.0 + k))
    # not flushed yet: the rows are known from the listener, each in its shard's store
    assert s.meters() == set(METERS)
    for meter, k in METERS.items():
        assert s.energy_by_day(meter)[DAY].consumed_kwh == pytest.approx(1.0 + k)
        assert s.of(meter).meters() == {meter}
    for w in writers.values():
        w.sync()
    assert sorted((shard, p.name) for _, shard, p in all_day_files(tmp_path)) == [
        (k, f"pvsim-2020-11-29.s{k:02d}.csv") for k in range(4)]
    restarted = ShardedStore(tmp_path, UTC, shards=4, today=lambda: dt.date(2030, 1, 1))
    for meter, k in METERS.items():
        assert restarted.has_meter(meter) and len(restarted.readings(meter)) == 61
        assert restarted.energy_by_day(meter)[DAY].consumed_kwh == pytest.approx(1.0 + k)
    assert not restarted.has_meter("nobody") and restarted.meters() == set(METERS)
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".agg.json")) == [
        f".pvsim-2020-11-29.s{k:02d}.agg.json" for k in range(4)]
    restarted.forget(DAY)
    assert all(DAY not in store._days for store in restarted.stores)


def test_rows_another_process_writes_in_any_shard_are_seen(tmp_path):
    """This process writes no shard; another writes shards 1 and 3 after the first queries."""
    s = ShardedStore(tmp_path, UTC, shards=4)
    other = services(tmp_path)
    other[1].process(readings("b", 1.0, n=31))
    other[1].sync()
    assert s.meters() == {"b"} and s.energy_by_day("b")[DAY].readings == 31
    other[1].process(readings("b", 1.0, n=61)[31:])
    other[3].process(readings("a", 2.0))
    for w in other.values():
        w.sync()
    assert s.energy_by_day("b")[DAY].readings == 61 and len(s.readings("b")) == 61
    assert s.energy_by_day("a")[DAY].consumed_kwh == pytest.approx(2.0)


def test_the_store_a_config_asks_for(tmp_path):
    assert type(store_for(tmp_path, config.Config())) is ReadingStore
    fleet = store_for(tmp_path, config.parse("fleet: {shards: 4}\n"))
    assert isinstance(fleet, ShardedStore) and [st.shard for st in fleet.stores] == [0, 1, 2, 3]
