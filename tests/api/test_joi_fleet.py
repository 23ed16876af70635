"""The JOI API of a fleet (fleet.shards: 4): every pvsim-pv answers for every meter, reading the
files of the meter's shard, whoever writes them, rows appended since it last looked included."""

import dataclasses
import json

from pvsim import config
from pvsim.api.joi import JoiApi
from pvsim.model.pvcurve import PvCurve
from pvsim.model.shard import shard_of
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.pvservice import PvService
from pvsim.store.shardedstore import ShardedStore

T0 = 1606636800  # 2020-11-29T08:00:00Z
CFG = config.Config()
FLEET = dataclasses.replace(CFG, fleet=dataclasses.replace(CFG.fleet, shards=4))


class Process:
    """A pvsim-pv of the fleet: writers (PvService, CsvSink) of its shards only, and its API,
    which hears its own rows; a POST writes the rows of a meter of its shards."""

    def __init__(self, directory, shards):
        self.api = JoiApi(FLEET, directory, self.ingest)
        self.services = {k: PvService(PvCurve(FLEET.tz), CsvSink(directory, shard=k), FLEET.tz, shards=4)
                         for k in shards}
        for service in self.services.values():
            service.listeners.append(self.api.on_row)

    def ingest(self, readings):
        service = self.services[shard_of(readings[0].meter_id, 4)]
        outcome = service.process(readings)
        service.sync()
        return outcome

    def post(self, meter, readings):
        body = {"smartMeterId": meter,
                "electricityReadings": [{"time": t, "reading": r} for t, r in readings]}
        return self.api("POST", "/readings/store", {}, json.dumps(body).encode())

    def read(self, meter):
        status, body = self.api("GET", f"/readings/read/{meter}", {}, b"")
        assert status == 200, body
        return [(r["time"], r["reading"]) for r in body]

    def consumed(self, meter):
        status, body = self.api("GET", f"/price-plans/compare-all/{meter}", {}, b"")
        assert status == 200, body
        return body["energyBalance"]["consumedKwh"], body["energyBalance"]["readings"]


def minutes(start, n, kw):
    return [(T0 + 60 * i, kw) for i in range(start, start + n)]


def test_each_process_answers_for_meters_of_every_shard(tmp_path):
    assert [shard_of(m, 4) for m in ("smart-meter-1", "b", "smart-meter-0", "smart-meter-4")] == [0, 1, 2, 3]
    p1, p2 = Process(tmp_path, (0, 1)), Process(tmp_path, (2, 3))
    assert isinstance(p1.api.store, ShardedStore)
    assert p1.post("smart-meter-1", minutes(0, 3, 1.0))[0] == 200   # shard 0, p1 writes
    assert p2.post("smart-meter-0", minutes(0, 3, 2.0))[0] == 200   # shard 2, p2 writes
    assert p2.post("smart-meter-4", minutes(0, 2, 3.0))[0] == 200   # shard 3, p2 writes
    for p in (p1, p2):
        assert p.read("smart-meter-1") == minutes(0, 3, 1.0)
        assert p.read("smart-meter-0") == minutes(0, 3, 2.0)
        assert p.consumed("smart-meter-4") == (round(3.0 / 60, 6), 2)
    # p2 appends after p1 looked: p1's next answers have the new rows, each once
    assert p2.post("smart-meter-0", minutes(3, 2, 2.0))[0] == 200
    assert p1.read("smart-meter-0") == minutes(0, 5, 2.0)
    assert p1.consumed("smart-meter-0") == (round(4 * 2.0 / 60, 6), 5)
    assert p1.post("smart-meter-1", minutes(3, 1, 1.0))[0] == 200
    assert p2.read("smart-meter-1") == minutes(0, 4, 1.0) == p1.read("smart-meter-1")
    assert p1.api("GET", "/readings/read/b", {}, b"")[0] == 404  # shard 1: no readings anywhere
    assert sorted(p.name for p in tmp_path.glob("pvsim-*.csv")) == [
        "pvsim-2020-11-29.s00.csv", "pvsim-2020-11-29.s02.csv", "pvsim-2020-11-29.s03.csv"]
