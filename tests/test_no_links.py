"""pvsim writes only regular files it created, never through a link (issue 18, section 3).

Every fault is the real thing at the real layer: a symbolic link, a directory or a FIFO put in
the output or state directory under the name of a file pvsim opens (a day's CSV, a shard's CSV,
an aggregate, a shard's lock and owner record, the meter's state file), driven through the code
that opens it: PvService + CsvSink, the JOI API over the store, retention, the shard lock, the
meter's state, and a running pvsim-pv. A link's target must come out byte-identical; a FIFO must
never block (each such call runs in a thread that must finish; on failure the FIFO is opened
from the other end so that nothing stays blocked); a refused file is named in one log line and
in the problem body, and every other day keeps working.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.daemons import http_get, http_post_json
from tests.support.waiting import wait_for
from pvsim import config
from pvsim.api.joi import JoiApi
from pvsim.daemons.meter import MeterState
from pvsim.model.pvcurve import PvCurve
from pvsim.model.reading import Reading
from pvsim.pipeline.csvformat import HEADER, agg_name, file_name, parse_line
from pvsim.pipeline.csvsink import CsvSink, NotRegularFile, SinkError
from pvsim.pipeline.messages import encode
from pvsim.pipeline.pvservice import PvService
from pvsim.pipeline.shardlock import ShardLock
from pvsim.store.readingstore import ReadingStore
from pvsim.store.retention import Retention

UTC = ZoneInfo("UTC")
DAY = dt.date(2026, 11, 20)
NOON = int(dt.datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp())
VICTIM = b"precious data\nlast line without a newline"


def readings(meter: str, instants, tz=UTC) -> list[Reading]:
    return [Reading(meter, t, 1000.0, tz) for t in instants]


def victim(tmp_path: Path) -> Path:
    """A file outside the output directory, with a torn-looking last line (bait for the repair)."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(VICTIM)
    return path


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def finishes(call, *fifos: Path, timeout: float = 10.0):
    """Run call() in a thread; it must finish (a FIFO opened for reading would block it for
    ever). Returns what it returned or raises what it raised. If it hangs, each FIFO is opened
    from the other end so that the thread can end, and the test fails."""
    result: dict = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        for fifo in fifos:
            for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
                try:
                    os.close(os.open(fifo, flags))
                except OSError:
                    pass
        thread.join(5)
        pytest.fail(f"{call} blocked on a FIFO")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def refusals(caplog, path: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if str(path) in r.getMessage() and "not a regular file" in r.getMessage()]


# --- the sink: day files --------------------------------------------------------------------

@pytest.mark.parametrize("truncate", [False, True], ids=["daemon", "pvsim-run"])
def test_a_link_named_like_a_day_file_is_never_written_through(tmp_path, caplog, truncate):
    out = tmp_path / "out"
    out.mkdir()
    target = victim(tmp_path)
    link = out / file_name(DAY)
    link.symlink_to(target)
    sink = CsvSink(out, truncate=truncate)  # truncate: as pvsim-run writes
    service = (PvService(PvCurve(UTC), sink, UTC) if truncate
               else PvService.recovering(PvCurve(UTC), sink, UTC))
    # a batch over three days, the middle one refused: nothing of it is written
    batch = readings("m", [NOON - 86_400, NOON, NOON + 86_400])
    with caplog.at_level(logging.INFO), pytest.raises(NotRegularFile) as refused:
        service.process(batch)
    assert isinstance(refused.value, SinkError) and str(link) in str(refused.value)
    assert "symbolic link" in str(refused.value)
    with pytest.raises(NotRegularFile):
        service.process(batch)  # a retry: the same, still not through the link
    service.sync()
    assert target.read_bytes() == VICTIM
    assert link.is_symlink()
    if not truncate:  # the daemon and the API: all or nothing (a run fails whole, exit 73)
        assert not (out / file_name(DAY - dt.timedelta(days=1))).exists()
    assert len(refusals(caplog, link)) == 1
    # other days are written as ever
    assert service.process(readings("m", [NOON + 86_400])).written == 1
    service.sync()
    assert (out / file_name(DAY + dt.timedelta(days=1))).read_text().startswith(HEADER)
    # once the link is gone, the day is written (a file of pvsim's own)
    link.unlink()
    assert service.process(batch).written == (1 if truncate else 2)  # the rest written before
    service.sync()
    assert not link.is_symlink() and link.read_text().count("\n") == 2
    assert target.read_bytes() == VICTIM


def test_a_dangling_link_is_not_created_through(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere" / "created-by-pvsim.csv"
    target.parent.mkdir()
    (out / file_name(DAY)).symlink_to(target)
    service = PvService(PvCurve(UTC), CsvSink(out), UTC)
    with pytest.raises(NotRegularFile):
        service.process(readings("m", [NOON]))
    assert not target.exists()


def test_a_shard_file_that_is_a_link_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = victim(tmp_path)
    from pvsim.model.shard import shard_of
    meter = next(f"m{i}" for i in range(100) if shard_of(f"m{i}", 4) == 3)
    (out / file_name(DAY, 3)).symlink_to(target)
    sink = CsvSink(out, shard=3)
    with pytest.raises(NotRegularFile):
        PvService.recovering(PvCurve(UTC), sink, UTC, shards=4).process(readings(meter, [NOON]))
    with pytest.raises(NotRegularFile):
        list(sink.written(DAY))  # the read-back of recovery, as well
    assert target.read_bytes() == VICTIM


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_directory_or_fifo_named_like_a_day_file_is_refused_without_blocking(tmp_path, kind):
    out = tmp_path / "out"
    out.mkdir()
    path = out / file_name(DAY)
    path.mkdir() if kind == "directory" else make_fifo(path)
    service = PvService.recovering(PvCurve(UTC), CsvSink(out), UTC)
    with pytest.raises(NotRegularFile) as refused:
        finishes(lambda: service.process(readings("m", [NOON])), path)
    what = "a directory" if kind == "directory" else "a FIFO"
    assert f"{path}: it is {what}" in str(refused.value)
    assert finishes(lambda: service.process(readings("m", [NOON - 86_400])), path).written == 1


# --- the API over the store -----------------------------------------------------------------

class Pipeline:
    """The JOI API over a real PvService + CsvSink, as pvsim-pv wires them without RabbitMQ."""

    def __init__(self, directory: Path, cfg: config.Config | None = None) -> None:
        self.cfg = cfg or config.Config()
        self.service = PvService.recovering(PvCurve(self.cfg.tz), CsvSink(directory), self.cfg.tz)
        self.api = JoiApi(self.cfg, directory, self.ingest)
        self.service.listeners.append(self.api.on_row)

    def ingest(self, rs):
        outcome = self.service.process(rs)
        self.service.sync()
        return outcome

    def post(self, meter: str, instants) -> tuple[int, dict]:
        body = {"smartMeterId": meter,
                "electricityReadings": [{"time": t, "reading": 1.5} for t in instants]}
        return self.api("POST", "/readings/store", {}, json.dumps(body).encode())

    def get(self, path: str, **query: str) -> tuple[int, object]:
        return self.api("GET", path, {k: [v] for k, v in query.items()}, b"")


def day_query(day: dt.date) -> dict[str, str]:
    return {"from": day.isoformat(), "to": day.isoformat()}


@pytest.mark.parametrize("kind", ["directory", "fifo", "link"])
def test_the_api_answers_a_problem_naming_the_bad_day_and_every_other_day_as_ever(
        tmp_path, caplog, kind):
    out = tmp_path / "out"
    before, after = DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)
    joi = Pipeline(out)
    assert joi.post("m1", [NOON - 86_400, NOON - 86_400 + 60, NOON + 86_400])[0] == 200
    assert joi.post("m2", [NOON - 86_400])[0] == 200
    bad = out / file_name(DAY)
    target = victim(tmp_path)
    if kind == "directory":
        bad.mkdir()
    elif kind == "fifo":
        make_fifo(bad)
    else:
        bad.symlink_to(target)

    def check() -> None:
        fresh = Pipeline(out)  # a restarted pvsim-pv: nothing of the day in memory
        for meter in ("m1", "m2"):
            code, body = fresh.get(f"/readings/read/{meter}", **day_query(before))
            assert code == 200 and body, (meter, body)
        assert fresh.get("/readings/read/m1", **day_query(after)) == (
            200, [{"reading": 1.5, "time": NOON + 86_400}])
        code, body = fresh.get("/price-plans/compare-all/m1", **day_query(before))
        assert code == 200 and body["energyBalance"]["readings"] == 2
        for path in ("/readings/read/m1", "/price-plans/compare-all/m2",
                     "/price-plans/recommend/m1"):
            for query in (day_query(DAY), {}):  # the day, and every day (it is one of them)
                code, body = fresh.get(path, **query)
                assert code == 503, (path, query, code, body)
                assert body["status"] == 503 and str(bad) in body["detail"], body
        code, body = fresh.post("m1", [NOON])  # a POST for that day: refused, nothing stored
        assert code == 503 and str(bad) in body["detail"]
        assert fresh.post("m3", [NOON + 86_400 + 5])[0] == 200  # other days: stored
        assert fresh.get("/readings/read/m3")[0] == 503  # unbounded: the bad day is in it
        assert fresh.get("/readings/read/m3", **day_query(after)) == (
            200, [{"reading": 1.5, "time": NOON + 86_400 + 5}])
        assert fresh.get("/readings/read/nobody")[0] in (404, 503)

    with caplog.at_level(logging.INFO):
        finishes(check, bad)
    assert len(refusals(caplog, bad)) == 1, refusals(caplog, bad)
    assert target.read_bytes() == VICTIM
    if kind == "link":
        assert bad.is_symlink()


def test_a_sharded_store_keeps_answering_for_the_other_shards(tmp_path):
    from pvsim.model.shard import shard_of
    from pvsim.store.shardedstore import ShardedStore
    out = tmp_path / "out"
    shards = 4
    meters = {}
    for i in range(100):  # a meter of shard 1 and one of another shard
        meters.setdefault(shard_of(f"m{i}", shards), f"m{i}")
    good, bad_meter = meters[0], meters[1]
    for meter in (good, bad_meter):
        sink = CsvSink(out, shard=shard_of(meter, shards))
        PvService(PvCurve(UTC), sink, UTC, shards=shards).process(readings(meter, [NOON, NOON + 60]))
        sink.close()
    bad = out / file_name(DAY, 1)
    bad.unlink()
    bad.mkdir()
    store = ShardedStore(out, UTC, shards=shards)
    assert [t for t, _ in store.readings(good)] == [NOON, NOON + 60]
    assert store.energy_by_day(good)[DAY].readings == 2
    with pytest.raises(NotRegularFile):
        store.readings(bad_meter)
    assert good in store.meters()


# --- aggregate files ------------------------------------------------------------------------

def test_an_aggregate_file_that_is_a_link_is_neither_read_nor_written_through(tmp_path):
    out = tmp_path / "out"
    sink = CsvSink(out)
    PvService(PvCurve(UTC), sink, UTC).process(readings("m", [NOON, NOON + 60]))
    sink.close()
    target = victim(tmp_path)
    agg = out / agg_name(DAY)
    agg.symlink_to(target)
    store = ReadingStore(out, UTC, today=lambda: DAY + dt.timedelta(days=5))
    assert store.energy_by_day("m")[DAY].readings == 2
    assert target.read_bytes() == VICTIM and agg.is_symlink()
    # the temporary file's name, planted as a link: never written through either
    agg.unlink()
    planted = list(out.glob(".*.tmp"))
    assert planted == []
    store2 = ReadingStore(out, UTC, today=lambda: DAY + dt.timedelta(days=5))
    import socket
    tmp = agg.with_name(f"{agg.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    tmp.symlink_to(target)
    assert store2.energy_by_day("m")[DAY].readings == 2
    assert target.read_bytes() == VICTIM
    assert agg.is_file() and not agg.is_symlink()  # written: a file of the store's own
    assert json.loads(agg.read_text())["day"] == DAY.isoformat()


# --- lock and owner files -------------------------------------------------------------------

def test_a_shard_lock_that_is_a_link_is_refused_and_its_target_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = victim(tmp_path)
    lock = ShardLock(out, 2)
    lock.path.symlink_to(target)
    with pytest.raises(NotRegularFile):
        lock.try_take()
    assert not kept_open(target) and target.read_bytes() == VICTIM
    lock.path.unlink()
    make_fifo(lock.path)
    with pytest.raises(NotRegularFile):
        finishes(lock.try_take, lock.path)
    assert not kept_open(lock.path)


def kept_open(path: Path) -> bool:
    """Whether this process holds a descriptor of `path` (a refused lock must keep none)."""
    fds = Path("/proc/self/fd")
    return any(os.path.realpath(fds / fd) == str(path.resolve()) for fd in os.listdir(fds))


def test_an_owner_record_that_is_a_link_is_not_written_through(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    target = victim(tmp_path)
    lock = ShardLock(out, 2)
    lock.journal.symlink_to(target)
    with caplog.at_level(logging.INFO):
        assert lock.try_take()
        lock.release()
    assert target.read_bytes() == VICTIM
    assert len(refusals(caplog, lock.journal)) == 1


# --- retention ------------------------------------------------------------------------------

def test_retention_removes_regular_files_only_and_never_through_a_link(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    old = [DAY - dt.timedelta(days=n) for n in (30, 31, 32, 33)]
    target = victim(tmp_path)
    (out / file_name(old[0])).write_text(HEADER + "\n")
    (out / file_name(old[1])).symlink_to(target)
    (out / file_name(old[2])).mkdir()
    make_fifo(out / file_name(old[3]))
    for day in old:  # last written on their own day, as a live meter's files are
        end = dt.datetime.combine(day, dt.time(23, 59, 59), UTC).timestamp()
        os.utime(out / file_name(day), (end, end), follow_symlinks=False)
    retention = Retention(out, 7, UTC, today=lambda: DAY)
    with caplog.at_level(logging.INFO):
        removed = finishes(retention.run)
        finishes(retention.run)
    assert (removed.files, removed.days) == (1, 1)
    assert not (out / file_name(old[0])).exists()
    assert (out / file_name(old[1])).is_symlink() and target.read_bytes() == VICTIM
    assert (out / file_name(old[2])).is_dir() and (out / file_name(old[3])).exists()
    for day in old[1:]:
        assert len(refusals(caplog, out / file_name(day))) == 1


# --- the meter's state file -----------------------------------------------------------------

def test_the_meter_state_file_is_never_read_from_a_fifo_nor_written_through_a_link(tmp_path):
    state_path = tmp_path / "meter.state"
    make_fifo(state_path)
    state = MeterState(state_path)
    assert finishes(state.load, state_path) == {}  # the meter starts at the current second
    state_path.unlink()
    target = victim(tmp_path)
    tmp = state_path.with_name(state_path.name + ".tmp")
    tmp.symlink_to(target)  # planted under the temporary file's name
    state.save({"m": 123})
    assert target.read_bytes() == VICTIM
    assert not tmp.exists() and not state_path.is_symlink()
    assert state.load() == {"m": 123}


# --- a running pvsim-pv ---------------------------------------------------------------------

def _post(port: int, meter: str, instants) -> tuple[int, dict]:
    return http_post_json(port, "/readings/store", {
        "smartMeterId": meter, "electricityReadings": [{"time": t, "reading": 1.5} for t in instants]})


def _held(port: int, path: Path) -> bool:
    """Whether /healthz answers 503 naming `path` (a message held for it)."""
    try:
        code, text = http_get(port, "/healthz", 5)
    except OSError:
        return False
    return code == 503 and str(path) in text


def _get(port: int, path: str) -> tuple[int, object]:
    code, text = http_get(port, path, 10)
    return code, json.loads(text)


def test_pvsim_pv_holds_a_message_for_a_linked_day_file_and_goes_on_when_it_is_gone(
        pvsim_config, daemons):
    """The consumer neither follows the link nor stops (exit 73 would crash-loop under
    systemd): it holds the message unacknowledged, /healthz names the file, the API answers
    for other days; once the link is removed the held readings are written, each once."""
    import pika
    madrid = ZoneInfo("Europe/Madrid")
    out = pvsim_config.output
    out.mkdir(parents=True, exist_ok=True)
    noon = int(dt.datetime(2026, 11, 20, 12, tzinfo=madrid).timestamp())
    target = victim(pvsim_config.dir)
    link = out / file_name(DAY)
    link.symlink_to(target)
    channel = pvsim_config.channel()
    pv = daemons.start("pv", pvsim_config)
    port = pvsim_config.pv_port
    channel.basic_publish(pvsim_config.exchange, pvsim_config.queue,
                          encode(readings("m-held", range(noon, noon + 5), madrid)),
                          pika.BasicProperties(delivery_mode=2, content_type="application/json"))
    wait_for(lambda: _held(port, link), timeout=30,
             message="/healthz answers 503 naming the link while a message is held")
    assert pv.running()
    # the API goes on: another day is stored and read; the bad day is a problem naming it
    assert _post(port, "m-post", [noon - 86_400, noon - 86_400 + 60])[0] == 200
    code, body = _get(port, "/readings/read/m-post?from=2026-11-19&to=2026-11-19")
    assert code == 200 and [r["time"] for r in body] == [noon - 86_400, noon - 86_400 + 60]
    code, body = _post(port, "m-post", [noon])
    assert code == 503 and str(link) in body["detail"]
    code, body = _get(port, "/readings/read/m-post?from=2026-11-20&to=2026-11-20")
    assert code == 503 and str(link) in body["detail"]
    assert pv.running()
    assert target.read_bytes() == VICTIM
    assert pv.metric("pvsim_pv_readings_written_total") == 2  # the POST's only
    assert pv.log().count("it is a symbolic link, not a regular file") == 1
    # SIGTERM while holding: exit 0, the message back in the queue; a restart holds it again
    assert pv.stop() == 0
    pv = daemons.start("pv", pvsim_config, wait=False)
    wait_for(lambda: pv.running() and _held(port, link), timeout=30,
             message="the restarted pvsim-pv holds the message again")
    assert target.read_bytes() == VICTIM
    # the operator removes the link: the held message is written, once
    link.unlink()
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == 5, timeout=30,
             message="the held message written")
    wait_for(lambda: http_get(port, "/healthz", 5)[0] == 200, timeout=30)
    rows = [parse_line(line)[1].meter_id for line in link.read_text().splitlines()[1:]]
    assert rows == ["m-held"] * 5
    assert target.read_bytes() == VICTIM
    assert pv.stop() == 0


def test_a_fleet_holds_a_shard_whose_lock_or_day_file_is_a_link_and_loses_nothing(
        pvsim_config, daemons):
    """In a fleet a POST is published to its shard's queue (200) and written by the shard's
    writer: a lock file, then a shard's day file, that is a link holds the message (never
    followed), and once the link is gone every posted reading is in its shard file once."""
    from tests.support.csvfiles import csv_instants
    from pvsim.model.shard import shard_of
    from pvsim.pipeline.shardlock import ShardLock
    shards = 2
    pvsim_config.write(fleet={"shards": shards})
    out = pvsim_config.output
    out.mkdir(parents=True, exist_ok=True)
    madrid = ZoneInfo("Europe/Madrid")
    noon = int(dt.datetime(2026, 11, 20, 12, tzinfo=madrid).timestamp())
    meter = {shard_of(f"fleet-{i}", shards): f"fleet-{i}" for i in range(20)}
    target = victim(pvsim_config.dir)
    lock = ShardLock(out, 1).path
    lock.symlink_to(target)
    day_link = out / file_name(DAY, 0)
    day_link.symlink_to(target)
    pv = daemons.start("pv", pvsim_config)
    port = pvsim_config.pv_port
    for shard, link in ((1, lock), (0, day_link)):
        assert _post(port, meter[shard], range(noon, noon + 3))[0] == 200  # published
        wait_for(lambda: _held(port, link), timeout=30, message=f"shard {shard} held by {link}")
        assert target.read_bytes() == VICTIM and pv.running()
        link.unlink()
        wait_for(lambda: csv_instants(out).get(meter[shard]) == list(range(noon, noon + 3)),
                 timeout=30, message=f"shard {shard}'s readings written once")
    wait_for(lambda: http_get(port, "/healthz", 5)[0] == 200, timeout=30)
    assert lock.is_file() and not lock.is_symlink()
    assert {path.name for path in out.glob("pvsim-*.csv")} == {file_name(DAY, 0), file_name(DAY, 1)}
    assert target.read_bytes() == VICTIM
    assert pv.stop() == 0
