"""pvsim-meter and pvsim-pv against the real RabbitMQ (private names per test).

Time-dependent logic runs on injected clocks (a fake wall clock for RealClock, a manual clock the
test ticks), never on long sleeps; daemons run either in process (threads) or as subprocesses.
"""

from __future__ import annotations

import datetime as dt
import os
import json
import logging
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pika
import pytest

from tests.support.daemons import http_get, metric_value
from tests.support.paths import PYTHON, ROOT
from tests.support.pvsimconfig import PvsimConfig
from tests.support.waiting import wait_for
from pvsim.daemons import lifecycle as daemon
from pvsim.daemons.buffer import Buffer
from pvsim.daemons.meter import MeterDaemon
from pvsim.daemons.pv import PvDaemon
from pvsim.model.clock import RealClock
from pvsim.model.pvcurve import PvCurve
from pvsim.pipeline.csvformat import day_files
from pvsim.pipeline.csvsink import CsvSink, SinkError
from pvsim.pipeline.messages import Reading, encode
from pvsim.pipeline.pvservice import PvService

MADRID = ZoneInfo("Europe/Madrid")


# --- helpers --------------------------------------------------------------------------------

class ManualClock:
    """Yields the instants the test pushes; ends when the daemon stops."""

    def __init__(self, stop: threading.Event) -> None:
        self.q: queue.Queue[int] = queue.Queue()
        self.stop = stop

    def push(self, *instants: int) -> None:
        for i in instants:
            self.q.put(i)

    def ticks(self):
        while not self.stop.is_set():
            try:
                yield self.q.get(timeout=0.05)
            except queue.Empty:
                continue


class FakeWallClock:
    """now/sleep for RealClock: sleeping advances the fake time; past `end` it sets `stop`."""

    def __init__(self, start: float, end: float, stop: threading.Event) -> None:
        self.t, self.end, self.stop = start, end, stop

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        if self.t >= self.end:
            self.stop.set()


class InProcess:
    """A daemon service run by daemon.run in a thread (signals are the test's business)."""

    def __init__(self, service, lifecycle: daemon.Lifecycle, listen: str) -> None:
        self.service, self.lifecycle = service, lifecycle
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, args=(listen,), daemon=True)
        self.thread.start()

    def _run(self, listen: str) -> None:
        self.exit_code = daemon.run(self.service, self.lifecycle, listen)

    def stop(self, timeout: float = 15) -> int | None:
        self.lifecycle.stop.set()
        self.thread.join(timeout)
        return self.exit_code


def readings(meter: str, instants, tz=MADRID, power: float = 1234.5) -> list[Reading]:
    return [Reading(meter, t, power, tz) for t in instants]


def publish(channel, cfg: PvsimConfig, body: bytes) -> None:
    channel.basic_publish(cfg.exchange, cfg.queue, body,
                          pika.BasicProperties(delivery_mode=2, content_type="application/json"))


def csv_rows(directory: Path) -> list[tuple[str, str]]:
    """(timestamp, meter_id) of every row of every daily file, in file order."""
    rows = []
    for _, path in day_files(directory):
        lines = path.read_text().splitlines()
        assert lines[0] == "timestamp,meter_id,meter_w,meter_kw,pv_kw,net_kw"
        rows += [tuple(line.split(",")[:2]) for line in lines[1:]]
    return rows


def instants_of(directory: Path, meter: str) -> list[int]:
    return [int(dt.datetime.fromisoformat(ts).timestamp()) for ts, m in csv_rows(directory)
            if m == meter]


def drain(channel, queue_name: str) -> list[list[Reading]]:
    from pvsim.pipeline.messages import decode
    out = []
    while True:
        method, _, body = channel.basic_get(queue_name, auto_ack=True)
        if method is None:
            return out
        out.append(decode(body))


def T(text: str) -> int:
    """Epoch seconds of an ISO time with offset."""
    return int(dt.datetime.fromisoformat(text).timestamp())


# --- config errors, exit codes ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["meter", "pv"])
@pytest.mark.parametrize("content,key", [
    ("meter: {buffer_size: 0}\n", "meter.buffer_size"),
    ("bogus: 1\n", "bogus"),
    ("pv: {listen: nowhere}\n", "pv.listen"),
    ("broker: [\n", "malformed YAML"),
    ("api: {token_file: /nonexistent/pvsim-token}\n", "api.token_file"),
])
def test_config_error_exits_78_with_one_line(tmp_path, name, content, key):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    r = subprocess.run([PYTHON, "-m", f"pvsim.daemons.{name}", "--config", str(path)],
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 78
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pvsim-{name}: {path}: ") and key in lines[0]


def test_missing_config_and_bad_meter_id_exit_78(tmp_path):
    r = subprocess.run([PYTHON, "-m", "pvsim.daemons.pv", "--config", str(tmp_path / "none.yaml")],
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert r.returncode == 78 and r.stderr.count("\n") == 1 and "file not found" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("meter: {id: ['a,b']}\n")
    r = subprocess.run([PYTHON, "-m", "pvsim.daemons.meter", "--config", str(bad)],
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert r.returncode == 78 and r.stderr.count("\n") == 1 and "meter.id[0]" in r.stderr


def test_busy_port_exits_69_and_unwritable_output_exits_73(pvsim_config, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        pvsim_config.write(pv={"listen": f"127.0.0.1:{busy.getsockname()[1]}"})
        r = subprocess.run([PYTHON, "-m", "pvsim.daemons.pv", "--config", str(pvsim_config.path)],
                           cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                           timeout=30)
    assert r.returncode == 69 and "cannot listen on" in r.stderr and "pv.listen" in r.stderr
    (tmp_path / "a-file").write_text("")
    pvsim_config.write(pv={"listen": f"127.0.0.1:{pvsim_config.pv_port}"},
                       output={"directory": str(tmp_path / "a-file" / "out")})
    r = subprocess.run([PYTHON, "-m", "pvsim.daemons.pv", "--config", str(pvsim_config.path)],
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 73 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("pvsim-pv: cannot create output directory")


# --- the meter's schedule and buffer ----------------------------------------------------------

def test_an_hour_is_exactly_3600_readings_on_whole_seconds_across_dst(tmp_path):
    cfg_file = PvsimConfig(tmp_path)
    cfg_file.write(meter={"id": ["m-1", "m-2"], "buffer_size": 10000})
    lc = daemon.Lifecycle("test")
    start = T("2026-10-25T02:30:00+02:00") + 0.37  # Madrid falls back at 03:00 CEST
    fake = FakeWallClock(start, start + 3600, lc.stop)
    meter = MeterDaemon(cfg_file.load(), lc, clock=RealClock(now=fake.now, sleep=fake.sleep))
    meter.tick_loop()
    _, got = meter.buffer.peek(100_000)
    for m in ("m-1", "m-2"):
        mine = [r for r in got if r.meter_id == m]
        assert len(mine) == 3600
        assert [r.instant for r in mine] == list(range(int(start) + 1, int(start) + 3601))
        assert all(type(r.instant) is int and r.timestamp.microsecond == 0 for r in mine)
        offsets = [r.timestamp.utcoffset() for r in mine]
        assert offsets[0] == dt.timedelta(hours=2) and offsets[-1] == dt.timedelta(hours=1)
        switch = offsets.index(dt.timedelta(hours=1))
        assert mine[switch].instant == T("2026-10-25T02:00:00+01:00")
    body = encode(got[:2])  # what the publisher sends is valid
    assert b'"ts":"2026-10-25T02:30:01+02:00"' in body


class JumpingWallClock(FakeWallClock):
    """A fake wall clock that steps by `jumps[n]` seconds at its n-th sleep (suspend, NTP)."""

    def __init__(self, start: float, end: float, stop: threading.Event, jumps: dict[int, float]) -> None:
        super().__init__(start, end, stop)
        self.jumps, self.sleeps = jumps, 0

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.t += self.jumps.get(self.sleeps, 0.0)
        super().sleep(seconds)


def meter_on(clock_cls, tmp_path, *, buffer_size: int, state: dict | None = None, **clock_kw):
    cfg_file = PvsimConfig(tmp_path)
    cfg_file.write(meter={"id": ["m-1"], "buffer_size": buffer_size})
    if state is not None:
        cfg_file.state_file.write_text(json.dumps({"version": 1, "last_confirmed": state}))
    lc = daemon.Lifecycle("test")
    fake = clock_cls(stop=lc.stop, **clock_kw)
    meter = MeterDaemon(cfg_file.load(), lc)
    meter.clock = RealClock(max_catch_up=meter.catch_up, now=fake.now, sleep=fake.sleep,
                            on_skip=meter._on_skip)
    return meter, fake


def test_a_wall_clock_jump_ahead_produces_the_seconds_it_skipped(tmp_path):
    """Suspend, a VM pause, an NTP step: the seconds jumped over are produced as after a restart."""
    start = T("2026-06-21T12:00:00+02:00") + 0.5
    meter, _ = meter_on(JumpingWallClock, tmp_path, buffer_size=86400, start=start,
                        end=start + 1000, jumps={10: 700.0})
    meter.tick_loop()
    seqs = [r.instant for r in meter.buffer.peek(10_000)[1]]
    assert seqs == list(range(int(start) + 1, seqs[-1] + 1))  # every second, once, in order
    assert seqs[-1] > int(start) + 700
    assert meter.metrics.dropped._value.get() == 0


def test_a_jump_further_than_the_buffer_holds_is_counted_and_logged(tmp_path, caplog):
    start = T("2026-06-21T12:00:00+02:00") + 0.5
    meter, _ = meter_on(JumpingWallClock, tmp_path, buffer_size=300, start=start,
                        end=start + 1000, jumps={10: 700.0})
    with caplog.at_level(logging.WARNING):
        meter.tick_loop()
    seqs = [r.instant for r in meter.buffer.peek(10_000)[1]]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
    lost = meter.metrics.dropped._value.get()  # skipped by the clock + dropped by the buffer
    assert lost > meter.buffer.dropped and "jumped" in caplog.text and "are lost" in caplog.text
    assert caplog.text.count("jumped") == 1  # one line per jump, not one per second
    # what is in the buffer plus what was counted as lost is every second
    assert seqs[-1] - int(start) == len(seqs) + lost


def test_readings_the_model_puts_above_the_meter_are_clipped_and_counted(tmp_path):
    """A G0 building of 80 MWh a year draws ~20 kW at noon: above the 9 kW meter."""
    cfg_file = PvsimConfig(tmp_path)
    cfg_file.write(meter={"id": ["shop"], "model": "slp", "profile": "G0", "annual_kwh": 80000})
    lc = daemon.Lifecycle("test")
    start = T("2026-06-22T12:00:00+02:00") + 0.5
    fake = FakeWallClock(start, start + 30, lc.stop)
    meter = MeterDaemon(cfg_file.load(), lc, clock=RealClock(now=fake.now, sleep=fake.sleep))
    meter.tick_loop()
    readings = meter.buffer.peek(100)[1]
    assert len(readings) >= 29 and {r.power_w for r in readings} == {9000.0}
    assert meter.metrics.clipped.labels("shop")._value.get() == len(readings)


def test_a_wall_clock_step_back_never_produces_an_instant_twice(tmp_path):
    start = T("2026-06-21T12:00:00+02:00") + 0.5
    meter, fake = meter_on(JumpingWallClock, tmp_path, buffer_size=86400, start=start,
                           end=start + 600, jumps={10: -120.0, 200: -3.0})
    meter.tick_loop()
    seqs = [r.instant for r in meter.buffer.peek(10_000)[1]]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
    assert seqs == list(range(int(start) + 1, seqs[-1] + 1))  # and no gap either


def test_after_a_restart_with_the_clock_set_back_nothing_confirmed_is_produced_again(tmp_path):
    """The state file says 12:10:00 was confirmed; the wall clock now says 12:00:00."""
    now = T("2026-06-21T12:00:00+02:00") + 0.5
    confirmed = int(now) + 600
    meter, _ = meter_on(FakeWallClock, tmp_path, buffer_size=86400, state={"m-1": confirmed},
                        start=now, end=now + 700)
    meter.tick_loop()
    seqs = [r.instant for r in meter.buffer.peek(10_000)[1]]
    assert seqs and min(seqs) == confirmed + 1
    assert seqs == list(range(confirmed + 1, seqs[-1] + 1))


def test_buffer_drops_oldest_and_release_survives_drops():
    dropped = []
    b: Buffer[int] = Buffer(5, on_drop=dropped.append)
    b.put([1, 2, 3])
    end, items = b.peek(3)
    assert items == [1, 2, 3]
    b.put([4, 5, 6, 7])   # drops 1 and 2 while 1..3 are "in flight"
    assert dropped == [2] and b.dropped == 2 and len(b) == 5
    assert b.release(end) == 1  # only 3 was still there
    assert b.peek(10)[1] == [4, 5, 6, 7]
    b.put(list(range(100)))
    assert len(b) == 5 and b.peek(10)[1] == [95, 96, 97, 98, 99]


def test_meter_resumes_from_its_state_file_after_a_restart(tmp_path, caplog):
    cfg_file = PvsimConfig(tmp_path)
    cfg_file.write(meter={"id": ["m-1", "m-2"], "buffer_size": 10})
    now = T("2026-06-21T12:00:00+02:00")
    cfg_file.state_file.write_text(json.dumps({"version": 1, "last_confirmed": {
        "m-1": now - 4, "m-2": now - 2, "gone": now - 100}}))
    meter = MeterDaemon(cfg_file.load(), daemon.Lifecycle("test"))
    meter.backfill(now, meter.state.load())
    _, got = meter.buffer.peek(100)
    assert [(r.meter_id, r.instant) for r in got] == [
        ("m-1", now - 3), ("m-1", now - 2), ("m-1", now - 1), ("m-2", now - 1)]
    # longer than the buffer holds: the oldest are lost, with a warning
    cfg_file.state_file.write_text(json.dumps({"version": 1, "last_confirmed": {"m-1": now - 100}}))
    meter = MeterDaemon(cfg_file.load(), daemon.Lifecycle("test"))
    with caplog.at_level(logging.WARNING):
        meter.backfill(now, meter.state.load())
    assert [r.instant for r in meter.buffer.peek(100)[1]] == list(range(now - 5, now))
    assert "more than the buffer holds" in caplog.text
    # a corrupt state file is ignored
    cfg_file.state_file.write_text("{nonsense")
    meter = MeterDaemon(cfg_file.load(), daemon.Lifecycle("test"))
    meter.backfill(now, meter.state.load())
    assert len(meter.buffer) == 0


def test_meter_buffers_while_the_broker_is_away_and_publishes_in_order(pvsim_config, amqp_proxy):
    pvsim_config.write(broker={"url": amqp_proxy.url}, meter={"id": ["m-1"], "buffer_size": 10})
    cfg = pvsim_config.load()
    ch = pvsim_config.channel()
    lc = daemon.Lifecycle("test-meter")
    clock = ManualClock(lc.stop)
    meter = MeterDaemon(cfg, lc, clock=clock)
    run = InProcess(meter, lc, cfg.meter.listen)
    port = pvsim_config.meter_port
    try:
        t0 = T("2026-06-21T12:00:00+02:00")
        clock.push(*range(t0, t0 + 30))  # RabbitMQ unreachable: 30 readings, room for 10
        wait_for(lambda: meter.buffer.dropped == 20, message="20 dropped")
        status, body = http_get(port, "/healthz")
        assert status == 503 and "10 readings buffered" in json.loads(body)["detail"]
        text = http_get(port, "/metrics")[1]
        assert metric_value(text, "pvsim_meter_readings_dropped_total") == 20
        assert metric_value(text, "pvsim_meter_buffer_readings") == 10
        assert metric_value(text, "pvsim_broker_connected") == 0
        amqp_proxy.up()  # the broker comes (back)
        wait_for(lambda: len(meter.buffer) == 0, message="buffer drained")
        wait_for(lambda: http_get(port, "/healthz")[0] == 200, message="healthy")
        got = [r.instant for batch in drain(ch, cfg.broker.queue) for r in batch]
        assert got == list(range(t0 + 20, t0 + 30))
        # the broker goes away while the meter runs, and comes back
        amqp_proxy.down()
        wait_for(lambda: not meter.link.connected, message="disconnect noticed")
        clock.push(*range(t0 + 30, t0 + 35))
        wait_for(lambda: len(meter.buffer) == 5, message="5 buffered")
        amqp_proxy.up()
        wait_for(lambda: len(meter.buffer) == 0, message="buffer drained again")
        got = [r.instant for batch in drain(ch, cfg.broker.queue) for r in batch]
        assert got == list(range(t0 + 30, t0 + 35))
        text = http_get(port, "/metrics")[1]
        assert metric_value(text, "pvsim_broker_reconnects_total") >= 1
        assert metric_value(text, "pvsim_meter_readings_published_total", meter="m-1") == 15
        assert metric_value(text, "pvsim_meter_publish_confirm_seconds_count") >= 2
    finally:
        assert run.stop() == 0
    state = json.loads(pvsim_config.state_file.read_text())  # saved at least at the stop
    assert state["last_confirmed"]["m-1"] == t0 + 34


def test_a_blocked_connection_is_logged_and_unhealthy(tmp_path, caplog):
    meter = MeterDaemon(PvsimConfig(tmp_path).load(), daemon.Lifecycle("test"))
    meter.link.connected = True
    with caplog.at_level(logging.WARNING, logger="pvsim.meter"):
        meter.link.on_blocked(True)
    assert "memory or disk alarm" in caplog.text
    ok, detail = meter.health()
    assert not ok and "alarm" in detail and meter.alive()
    meter.link.on_blocked(False)
    assert meter.health()[0]


# --- the PV daemon ---------------------------------------------------------------------------

def test_pv_writes_each_reading_once_also_after_sigkill(pvsim_config, daemons):
    ch = pvsim_config.channel()
    pv = daemons.start("pv", pvsim_config)
    t0 = T("2026-06-21T14:10:00+02:00")
    publish(ch, pvsim_config, encode(readings("m-1", range(t0, t0 + 5))))
    publish(ch, pvsim_config, encode(readings("m-1", range(t0 + 2, t0 + 8))))  # overlaps
    publish(ch, pvsim_config, encode(readings("m-1", [t0 + 3])))               # a repeat
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == 8)
    wait_for(lambda: pv.metric("pvsim_pv_duplicates_dropped_total") == 4)
    pv.stop(signal.SIGKILL)
    publish(ch, pvsim_config, encode(readings("m-1", range(t0 + 5, t0 + 10))))
    pv = daemons.start("pv", pvsim_config)  # recovers what the CSV holds
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == 2)
    assert pv.metric("pvsim_pv_duplicates_dropped_total") >= 3
    assert instants_of(pvsim_config.output, "m-1") == list(range(t0, t0 + 10))
    row = (pvsim_config.output / "pvsim-2026-06-21.csv").read_text().splitlines()[1]
    assert row == "2026-06-21T14:10:00+02:00,m-1,1234.5,1.2345,3.2500,-2.0155"
    assert pv.stop() == 0


def test_rows_written_before_a_crash_are_not_written_again(pvsim_config, daemons):
    t0 = T("2026-06-21T10:00:00+02:00")
    # a previous run wrote these rows and crashed before acknowledging them
    sink = CsvSink(pvsim_config.output)
    PvService(PvCurve(MADRID), sink, MADRID).process(readings("m-1", range(t0, t0 + 5)))
    sink.close()
    ch = pvsim_config.channel()
    publish(ch, pvsim_config, encode(readings("m-1", range(t0, t0 + 7))))  # the redelivery
    pv = daemons.start("pv", pvsim_config)
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == 2)
    assert pv.metric("pvsim_pv_duplicates_dropped_total") == 5
    assert instants_of(pvsim_config.output, "m-1") == list(range(t0, t0 + 7))


def _valid(t: int) -> dict:
    return {"meter_id": "m-1", "seq": t, "ts": dt.datetime.fromtimestamp(t, MADRID).isoformat(),
            "power_w": 1000.0}


def test_malformed_messages_are_dead_lettered_counted_and_the_daemon_carries_on(pvsim_config,
                                                                                daemons):
    t0 = T("2026-06-21T09:00:00+02:00")
    j = lambda doc: json.dumps(doc).encode()  # noqa: E731
    bad = [
        (b"this is not json", "not_json"),
        (b"", "not_json"),
        (b"\xff\xfe\x00garbage", "not_json"),
        (b'{"v": 1, "readings": [{"meter_id": "m-1", "seq": 1, "ts": "x", "power_w": NaN}]}',
         "not_json"),
        (j([1, 2]), "bad_schema"),
        (j({"v": 3, "readings": [_valid(t0)]}), "bad_version"),
        (j({"readings": [_valid(t0)]}), "bad_version"),
        (j({"v": 1, "readings": []}), "missing_field"),
        (j({"v": 1, "readings": [{k: v for k, v in _valid(t0).items() if k != "ts"}]}),
         "missing_field"),
        (j({"v": 1, "readings": [dict(_valid(t0), seq="12")]}), "bad_type"),
        (j({"v": 1, "readings": [dict(_valid(t0), power_w="9")]}), "bad_type"),
        (j({"v": 1, "readings": [dict(_valid(t0), power_w=10_000_000.5)]}), "out_of_range"),
        (j({"v": 1, "readings": [dict(_valid(t0), power_w=-1)]}), "out_of_range"),
        (j({"v": 1, "readings": [dict(_valid(t0), seq=-1)]}), "out_of_range"),
        (j({"v": 1, "readings": [dict(_valid(t0), ts="2026-06-21T09:00:00")]}), "bad_timestamp"),
        (j({"v": 1, "readings": [dict(_valid(t0), ts="yesterday")]}), "bad_timestamp"),
        (j({"v": 1, "readings": [dict(_valid(t0), meter_id="a,b")]}), "bad_value"),
        (j({"v": 1, "readings": [dict(_valid(t0), extra=1)]}), "bad_schema"),
        (j({"v": 1, "readings": [_valid(t0)] * 10_001}), "oversized"),
        (b" " * (1 << 20) + b"{}", "oversized"),
    ]
    ch = pvsim_config.channel()
    pv = daemons.start("pv", pvsim_config)
    for i, (body, _) in enumerate(bad):
        publish(ch, pvsim_config, j({"v": 1, "readings": [_valid(t0 + i)]}))
        publish(ch, pvsim_config, body)
    publish(ch, pvsim_config, j({"v": 1, "readings": [_valid(t0 + len(bad))]}))
    wait_for(lambda: pv.metric("pvsim_pv_messages_rejected_total") == len(bad), timeout=20)
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == len(bad) + 1)
    assert instants_of(pvsim_config.output, "m-1") == list(range(t0, t0 + len(bad) + 1))
    expected: dict[str, int] = {}
    for _, reason in bad:
        expected[reason] = expected.get(reason, 0) + 1
    text = pv.metrics()
    for reason, count in expected.items():
        assert metric_value(text, "pvsim_pv_messages_rejected_total", reason=reason) == count
    dead = []
    while True:
        method, props, body = ch.basic_get(pvsim_config.names["dead_letter_queue"], auto_ack=True)
        if method is None:
            break
        dead.append((body, props.headers["x-pvsim-reason"], props.headers["x-pvsim-detail"]))
    # A body over the 1 MiB limit is kept cut to its first 64 KiB (issue 18).
    assert [(b, r) for b, r, _ in dead] == [(b if len(b) <= 1 << 20 else b[:1 << 16], r)
                                            for b, r in bad]
    assert all(d for _, _, d in dead)
    assert http_get(pvsim_config.pv_port, "/healthz")[0] == 200
    assert pv.log().count("dead-lettered a message") == len(bad)
    assert pv.stop() == 0


def test_sighup_reopens_the_csv(pvsim_config, daemons):
    ch = pvsim_config.channel()
    pv = daemons.start("pv", pvsim_config)
    t0 = T("2026-06-21T12:00:00+02:00")
    publish(ch, pvsim_config, encode(readings("m-1", [t0])))
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == 1)
    path = pvsim_config.output / "pvsim-2026-06-21.csv"
    rotated = path.with_suffix(".csv.1")
    path.rename(rotated)  # what logrotate does
    pv.send(signal.SIGHUP)
    wait_for(lambda: "SIGHUP" in pv.log(), message="SIGHUP handled")
    publish(ch, pvsim_config, encode(readings("m-1", [t0 + 1])))
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == 2)
    assert len(rotated.read_text().splitlines()) == 2
    lines = path.read_text().splitlines()
    assert lines[0].startswith("timestamp,") and lines[1].startswith("2026-06-21T12:00:01+02:00")
    assert pv.running()
    assert pv.stop() == 0


def test_sigterm_and_sigint_stop_both_daemons_cleanly_within_seconds(pvsim_config, daemons):
    pvsim_config.write(meter={"id": [f"m-{i}" for i in range(5)]})
    pv = daemons.start("pv", pvsim_config)
    meter = daemons.start("meter", pvsim_config)
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") >= 5)
    for d, sig in ((meter, signal.SIGTERM), (pv, signal.SIGINT)):
        began = time.monotonic()
        assert d.stop(sig, timeout=10) == 0
        assert time.monotonic() - began < 5
        assert d.log().rstrip().endswith("stopped")
        assert "Traceback" not in d.log()


def test_pv_rows_go_to_their_local_day_across_midnight_and_dst(pvsim_config, daemons):
    ch = pvsim_config.channel()
    pv = daemons.start("pv", pvsim_config)
    windows = [range(T("2026-03-28T23:59:58+01:00"), T("2026-03-29T00:00:03+01:00")),
               range(T("2026-03-29T01:59:58+01:00"), T("2026-03-29T03:00:03+02:00")),
               range(T("2026-10-24T23:59:58+02:00"), T("2026-10-25T00:00:03+02:00")),
               range(T("2026-10-25T02:59:58+02:00"), T("2026-10-25T02:00:03+01:00"))]
    total = 0
    for w in windows:
        publish(ch, pvsim_config, encode(readings("m-1", w, tz=dt.timezone.utc)))
        total += len(w)
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == total)
    files = {d.isoformat(): p.read_text().splitlines()[1:] for d, p in day_files(pvsim_config.output)}
    assert sorted(files) == ["2026-03-28", "2026-03-29", "2026-10-24", "2026-10-25"]
    assert [r[:25] for r in files["2026-03-28"]] == [
        "2026-03-28T23:59:58+01:00", "2026-03-28T23:59:59+01:00"]
    assert [r[:25] for r in files["2026-03-29"]] == [
        "2026-03-29T00:00:00+01:00", "2026-03-29T00:00:01+01:00", "2026-03-29T00:00:02+01:00",
        "2026-03-29T01:59:58+01:00", "2026-03-29T01:59:59+01:00", "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:00:01+02:00", "2026-03-29T03:00:02+02:00"]
    assert [r[:25] for r in files["2026-10-25"]][3:] == [
        "2026-10-25T02:59:58+02:00", "2026-10-25T02:59:59+02:00", "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:00:01+01:00", "2026-10-25T02:00:02+01:00"]
    assert pv.stop() == 0


@pytest.mark.parametrize("day,hours", [("2026-03-29", 23), ("2026-10-25", 25), ("2026-06-21", 24)])
def test_whole_local_days_land_in_one_file_each(tmp_path, day, hours):
    """PvService + CsvSink over two whole local days: each file holds exactly its own day."""
    date = dt.date.fromisoformat(day)
    start = int(dt.datetime.combine(date, dt.time(), MADRID).timestamp())
    end = int(dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), MADRID).timestamp())
    sink = CsvSink(tmp_path)
    service = PvService(PvCurve(MADRID), sink, MADRID)
    step = 5
    service.process(readings("m-1", range(start - 3600, end + 3600, step), tz=dt.timezone.utc))
    sink.close()
    files = dict(day_files(tmp_path))
    lines = files[date].read_text().splitlines()[1:]
    assert len(lines) == hours * 3600 // step
    assert lines[0].startswith(f"{day}T00:00:00+0") and lines[-1].startswith(f"{day}T23:59:55+0")
    assert all(line.startswith(day) for line in lines)
    assert set(files) == {date - dt.timedelta(days=1), date, date + dt.timedelta(days=1)}


def test_a_sink_that_cannot_write_stops_with_73_and_acknowledges_nothing(pvsim_config):
    cfg = pvsim_config.load()
    ch = pvsim_config.channel()
    lc = daemon.Lifecycle("test-pv")
    pv = PvDaemon(cfg, lc)

    def broken_sync() -> None:
        raise SinkError(f"cannot write {pvsim_config.output}/pvsim-2026-06-21.csv: No space left")
    pv.node.service.sync = broken_sync
    run = InProcess(pv, lc, cfg.pv.listen)
    publish(ch, pvsim_config, encode(readings("m-1", [T("2026-06-21T12:00:00+02:00")])))
    run.thread.join(15)
    assert run.exit_code == 73
    wait_for(lambda: ch.queue_declare(cfg.broker.queue, passive=True).method.message_count == 1,
             message="the message back in the queue, unacknowledged")


def test_pv_healthz_degrades_before_the_disk_is_full(pvsim_config, daemons):
    """Below output.min_free_mb free for the CSVs, /healthz says so (here: a threshold of 10 TB);
    the free space is a metric for alerting."""
    pvsim_config.write(output={"min_free_mb": 10_000_000})
    pv = daemons.start("pv", pvsim_config, wait=False)

    def short_of_space() -> bool:
        try:
            status, body = http_get(pvsim_config.pv_port, "/healthz")
        except OSError:  # not listening yet
            return False
        return status == 503 and "MB free" in body
    wait_for(short_of_space, timeout=20, message="/healthz: not enough free space")
    assert "output.min_free_mb" in json.loads(http_get(pvsim_config.pv_port, "/healthz")[1])["detail"]
    free, size = pv.metric("pvsim_pv_output_free_bytes"), pv.metric("pvsim_pv_output_size_bytes")
    assert 0 < free <= size


def test_pv_removes_days_older_than_retention_days_at_start(pvsim_config, daemons):
    pvsim_config.write(output={"retention_days": 30})
    out = pvsim_config.output
    out.mkdir(parents=True, exist_ok=True)
    today = dt.datetime.now(MADRID).date()
    old, kept = today - dt.timedelta(days=31), today - dt.timedelta(days=30)
    posted = today - dt.timedelta(days=400)  # a client's history, posted just now: kept
    for day in (old, kept, posted):
        (out / f"pvsim-{day}.csv").write_text("timestamp,meter_id,meter_w,meter_kw,pv_kw,net_kw\n")
    for day in (old, kept):  # a live meter's files: last written at the end of their day
        end = dt.datetime.combine(day, dt.time(23, 59), MADRID).timestamp()
        os.utime(out / f"pvsim-{day}.csv", (end, end))
    pv = daemons.start("pv", pvsim_config)
    wait_for(lambda: not (out / f"pvsim-{old}.csv").exists(), message="the old day removed")
    assert (out / f"pvsim-{kept}.csv").exists() and (out / f"pvsim-{posted}.csv").exists()
    assert pv.metric("pvsim_pv_csv_files_removed_total") == 1
    assert "retention: removed 1 days" in pv.log()
    assert "retention: kept 1 days" in pv.log()


def test_the_dead_letter_queue_is_bounded_and_its_depth_is_a_metric(pvsim_config, daemons):
    """broker.dead_letter_max_length: the oldest dead letters make room for new ones."""
    pvsim_config.write(broker={"dead_letter_max_length": 3})
    pv = daemons.start("pv", pvsim_config)  # declares the topology, the bound included
    conn = pika.BlockingConnection(pika.URLParameters(pvsim_config.url))
    channel = conn.channel()
    for i in range(5):
        channel.basic_publish(pvsim_config.exchange, pvsim_config.queue, f"bad-{i}".encode())
    wait_for(lambda: pv.metric("pvsim_pv_messages_rejected_total") == 5, message="5 rejects")
    wait_for(lambda: pv.metric("pvsim_pv_dead_letter_messages") == 3, message="depth metric")
    assert pv.metric("pvsim_pv_dead_letter_max_messages") == 3
    kept = []
    while (got := channel.basic_get(pvsim_config.names["dead_letter_queue"], auto_ack=True))[0]:
        kept.append(got[2])
    assert kept == [b"bad-2", b"bad-3", b"bad-4"]
    conn.close()


def test_an_unbounded_dead_letter_queue_from_an_older_install_still_works(pvsim_config, daemons):
    pvsim_config.channel()  # declares the dead-letter queue without a limit, as pvsim 0.1 did
    pv = daemons.start("pv", pvsim_config)
    assert "exists without broker.dead_letter_max_length" in pv.log()
    assert "rabbitmqctl set_policy" in pv.log()
    publish(pvsim_config.channel(), pvsim_config, b"not json")
    wait_for(lambda: pv.metric("pvsim_pv_messages_rejected_total") == 1, message="dead-lettered")
