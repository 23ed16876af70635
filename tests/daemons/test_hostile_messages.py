"""No message stops pvsim-pv (issue 18, sections 1 and 2), against the real RabbitMQ.

- Hostile bodies (the 2 KB bracket bomb that stopped it with RecursionError, a year-1 `ts` that
  overflowed half-way through a message, `"v": 1.0`, lone surrogates, 5,000-digit numbers) are
  dead-lettered with their reason and counted; the daemon carries on and writes what follows.
- A message is written whole or not at all: a bad third reading keeps the first two out.
- A failure while handling a valid message (a bug) dead-letters it as processing_error.
- A message that ends the process while it is handled is recognised when it comes back and
  dead-lettered after its second redelivery, while ordinary redeliveries are written once.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import struct
from zoneinfo import ZoneInfo

import pika
import pika.data

from tests.support.csvfiles import csv_instants
from tests.support.daemons import http_get, metric_value
from tests.support.waiting import wait_for
from test_daemons import InProcess
from pvsim.daemons import lifecycle
from pvsim.daemons.pv import PvDaemon
from pvsim.pipeline.messages import Reason, Reading, encode
from pvsim.pipeline.poison import digest

MADRID = ZoneInfo("Europe/Madrid")
T0 = 1_782_043_800  # 2026-06-21T14:10:00+02:00
BOMB = b'{"v": 1, "readings": ' + b"[" * 1000 + b"]" * 1000 + b"}"


def reading(t: int, meter: str = "m-1", tz=MADRID) -> dict:
    return {"meter_id": meter, "seq": t, "ts": dt.datetime.fromtimestamp(t, tz).isoformat(),
            "power_w": 1000.0}


def v1(*items: dict) -> bytes:
    return json.dumps({"v": 1, "readings": list(items)}).encode("utf-8", "surrogatepass")


def publish(channel, cfg, body: bytes, headers: dict | None = None) -> None:
    channel.basic_publish(cfg.exchange, cfg.queue, body,
                          pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                               headers=headers))


def dead_letters(channel, cfg) -> list[tuple[bytes, str, str]]:
    out = []
    while True:
        method, props, body = channel.basic_get(cfg.names["dead_letter_queue"], auto_ack=True)
        if method is None:
            return out
        out.append((body, props.headers["x-pvsim-reason"], props.headers["x-pvsim-detail"]))


def test_hostile_bodies_are_dead_lettered_and_the_daemon_carries_on(pvsim_config, daemons):
    year_one = dict(reading(T0 + 100), ts="0001-01-01T00:00:00+00:00", seq=0)
    hostile = [
        (BOMB, Reason.NOT_JSON),
        # On main: its first two rows written, then OverflowError (processing_error).
        (v1(reading(T0 + 98), reading(T0 + 99), year_one), Reason.OUT_OF_RANGE),
        (v1(reading(T0 + 98), dict(reading(T0 + 99), ts="1969-12-31T23:59:59+00:00", seq=-1)),
         Reason.OUT_OF_RANGE),
        (json.dumps({"v": 1.0, "readings": [reading(T0 + 97)]}).encode(), Reason.BAD_VERSION),
        (v1(dict(reading(T0 + 96), meter_id="\ud800")), Reason.BAD_VALUE),
        (v1(dict(reading(T0 + 95), ts="\ud800")), Reason.BAD_TIMESTAMP),
        (b'{"v": 1, "readings": [{"meter_id": "m-1", "seq": 1, "ts": "x", "power_w": '
         + b"9" * 5000 + b"}]}", Reason.NOT_JSON),
        (v1(dict(reading(T0 + 94), power_w=10 ** 400)), Reason.OUT_OF_RANGE),
        (v1(dict(reading(T0 + 93), seq=T0 + 92)), Reason.BAD_VALUE),
        (b"[" * 200_000, Reason.NOT_JSON),
    ]
    ch = pvsim_config.channel()
    pv = daemons.start("pv", pvsim_config)
    text = pv.metrics()
    for reason in Reason:  # every label there from the start, at 0
        assert f'pvsim_pv_messages_rejected_total{{reason="{reason.value}"}} 0.0' in text
    for i, (body, _) in enumerate(hostile):
        publish(ch, pvsim_config, body)
        publish(ch, pvsim_config, v1(reading(T0 + i)))
    # A header pika decodes but cannot encode again (a negative 64-bit integer): the message
    # is still dead-lettered, without its own headers.
    publish(ch, pvsim_config, b"not json", headers={"x-big": -3_000_000_000})
    publish(ch, pvsim_config, v1(reading(T0 + len(hostile))))
    wait_for(lambda: pv.metric("pvsim_pv_messages_rejected_total") == len(hostile) + 1,
             timeout=30, message="every hostile message dead-lettered")
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == len(hostile) + 1,
             timeout=30, message="every valid message written")
    assert pv.running()
    assert csv_instants(pvsim_config.output) == {"m-1": list(range(T0, T0 + len(hostile) + 1))}
    dead = dead_letters(ch, pvsim_config)
    assert [(body, reason) for body, reason, _ in dead[:-1]] == hostile
    assert dead[-1][:2] == (b"not json", "not_json")
    text = pv.metrics()
    for reason in set(r for _, r in hostile):
        count = sum(1 for _, r in hostile if r == reason) + (reason == Reason.NOT_JSON)
        assert metric_value(text, "pvsim_pv_messages_rejected_total", reason=reason.value) == count
    assert http_get(pvsim_config.pv_port, "/healthz")[0] == 200
    assert pv.stop() == 0


def test_a_message_with_one_bad_reading_writes_none_of_them(pvsim_config, daemons):
    """Issue 18 §2: two valid readings and a third of year 1; on main the first two were written
    (and readable on the API) and the message dead-lettered as processing_error."""
    ch = pvsim_config.channel()
    pv = daemons.start("pv", pvsim_config)
    bad = dict(reading(T0 + 2), ts="0001-01-01T00:00:00+00:00", seq=0)
    publish(ch, pvsim_config, v1(reading(T0), reading(T0 + 1), bad))
    publish(ch, pvsim_config, v1(reading(T0 + 10, "m-2")))
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == 1, message="the good one")
    assert pv.metric("pvsim_pv_messages_rejected_total", reason="out_of_range") == 1
    assert pv.metric("pvsim_pv_messages_rejected_total", reason="processing_error") == 0
    assert csv_instants(pvsim_config.output) == {"m-2": [T0 + 10]}
    status, _ = http_get(pvsim_config.pv_port, "/readings/read/m-1")
    assert status == 404  # the store never heard of m-1
    (body, reason, detail), = dead_letters(ch, pvsim_config)
    assert reason == "out_of_range" and "readings[2].ts" in detail


class BrokenModel:
    """A PV model with a bug at one instant: what `processing_error` is there for."""

    def __init__(self, model, bad_instant: int) -> None:
        self.model, self.bad_instant, self.peak_kw = model, bad_instant, model.peak_kw

    def power_kw(self, instant: int) -> float:
        if instant == self.bad_instant:
            raise ZeroDivisionError("a bug in the model")
        return self.model.power_kw(instant)


def test_a_failure_while_handling_a_valid_message_dead_letters_it(pvsim_config):
    """A bug that raises while a valid message is handled (here the PV model's, at one
    instant): the message is dead-lettered as processing_error, counted, and the daemon goes on
    with the next one. (In process: the bug is put into the running daemon's model.)"""
    cfg = pvsim_config.load()
    ch = pvsim_config.channel()
    life = lifecycle.Lifecycle("test-pv")
    pv = PvDaemon(cfg, life)
    pv.node.service.pv_model = BrokenModel(pv.node.service.pv_model, T0 + 5)
    run = InProcess(pv, life, cfg.pv.listen)
    try:
        publish(ch, pvsim_config, v1(reading(T0 + 5)))
        publish(ch, pvsim_config, v1(reading(T0 + 6)))
        wait_for(lambda: pv.pool.rows_total == 1, message="the next message written")
        assert run.exit_code is None and run.thread.is_alive()
        assert pv.metrics.rejected.labels("processing_error")._value.get() == 1
        (body, reason, detail), = dead_letters(ch, pvsim_config)
        assert reason == "processing_error" and detail == "ZeroDivisionError: a bug in the model"
    finally:
        assert run.stop() == 0
    assert csv_instants(pvsim_config.output) == {"m-1": [T0 + 6]}


def test_a_message_that_crashed_the_process_twice_is_dead_lettered_on_redelivery(
        pvsim_config, daemons):
    """The crash record as a process that died handling the message twice leaves it (the same
    file the real kill below produces): the redelivered message is dead-lettered, unhandled."""
    ch = pvsim_config.channel()
    poison = v1(reading(T0))
    pvsim_config.output.mkdir(parents=True, exist_ok=True)
    (pvsim_config.output / ".pvsim-poison").write_text(json.dumps(
        {"in_flight": digest(poison), "crashes": {digest(poison): 1}}))
    publish(ch, pvsim_config, poison)
    redeliver(pvsim_config)
    publish(ch, pvsim_config, v1(reading(T0 + 1)))
    pv = daemons.start("pv", pvsim_config)
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == 1, message="the next one")
    assert pv.metric("pvsim_pv_messages_rejected_total", reason="processing_error") == 1
    assert csv_instants(pvsim_config.output) == {"m-1": [T0 + 1]}
    (body, reason, detail), = dead_letters(ch, pvsim_config)
    assert (body, reason) == (poison, "processing_error") and "stopped 2 times" in detail
    assert "dead-lettered at its next delivery" in pv.log()
    assert json.loads((pvsim_config.output / ".pvsim-poison").read_text()) == \
        {"in_flight": None, "crashes": {}}


def test_an_ordinary_redelivery_is_written_even_after_one_crash_in_it(pvsim_config, daemons):
    """Redelivered messages are the rule after a restart or a reconnect: they are written once,
    also the one a single crash (a kill -9 landing in it) left in flight."""
    ch = pvsim_config.channel()
    first = v1(reading(T0), reading(T0 + 1))
    pvsim_config.output.mkdir(parents=True, exist_ok=True)
    (pvsim_config.output / ".pvsim-poison").write_text(json.dumps(
        {"in_flight": digest(first), "crashes": {}}))
    for body in (first, v1(reading(T0 + 1), reading(T0 + 2)), v1(reading(T0 + 3))):
        publish(ch, pvsim_config, body)
    redeliver(pvsim_config)
    pv = daemons.start("pv", pvsim_config)
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == 4, message="all written")
    assert pv.metric("pvsim_pv_duplicates_dropped_total") == 1
    assert pv.metric("pvsim_pv_messages_rejected_total") == 0
    assert csv_instants(pvsim_config.output) == {"m-1": [T0, T0 + 1, T0 + 2, T0 + 3]}
    assert "stopped while handling message" in pv.log()
    assert json.loads((pvsim_config.output / ".pvsim-poison").read_text())["crashes"] == {}


def redeliver(cfg) -> None:
    """Take every message of the queue without acknowledging it, and give it back by closing
    the connection: RabbitMQ then delivers each again with the redelivered flag, as after a
    consumer's crash or a lost connection."""
    connection = pika.BlockingConnection(pika.URLParameters(cfg.url))
    channel = connection.channel()
    while channel.basic_get(cfg.queue, auto_ack=False)[0] is not None:
        pass
    connection.close()


def test_a_message_that_kills_the_process_is_dead_lettered_after_its_second_redelivery(
        pvsim_config, daemons):
    """The real thing: pvsim-pv is killed (SIGKILL) while it handles one message, three times:
    at its first delivery, then twice while the crash record shows it in flight. The fourth
    process dead-letters it unhandled and writes the message behind it. (The message is slow
    to handle: 2,500 readings on 2,500 days, each a new file; the files a killed process wrote
    are removed before the next start, so that each handling lasts seconds.)"""
    ch = pvsim_config.channel()
    slow = encode([Reading("m-slow", t, 1.0, MADRID)
                   for t in range(T0, T0 + 2500 * 2 * 86400, 2 * 86400)])
    out, record = pvsim_config.output, pvsim_config.output / ".pvsim-poison"
    publish(ch, pvsim_config, slow)
    publish(ch, pvsim_config, v1(reading(T0 + 1, "m-after")))
    for round_ in range(3):
        pv = daemons.start("pv", pvsim_config)
        if round_ == 0:  # a first delivery is not recorded: the first day file says it began
            wait_for(lambda: any(out.glob("pvsim-*.csv")), timeout=20, message="handling began")
        else:
            wait_for(lambda: json.loads(record.read_text()).get("in_flight") == digest(slow),
                     timeout=20, message="in flight", ignoring=(OSError, ValueError))
        pv.stop(signal.SIGKILL)
        for path in out.glob("pvsim-*.csv"):
            path.unlink()
    pv = daemons.start("pv", pvsim_config)
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == 1, message="the next one")
    assert pv.metric("pvsim_pv_messages_rejected_total", reason="processing_error") == 1
    (body, reason, detail), = dead_letters(ch, pvsim_config)
    assert (body, reason) == (slow, "processing_error") and "stopped 2 times" in detail
    assert csv_instants(out) == {"m-after": [T0 + 1]}
    assert pv.running() and pv.stop() == 0


def test_the_dead_letter_queue_is_bounded_by_bytes_and_oversized_bodies_are_cut(
        pvsim_config, daemons):
    """broker.dead_letter_max_bytes: the oldest dead letters make room (x-max-length-bytes);
    a body over the 1 MiB limit (on main: a 30 MiB body copied whole) is kept cut to 64 KiB,
    its size in a header."""
    pvsim_config.write(broker={"dead_letter_max_bytes": 3000})
    pv = daemons.start("pv", pvsim_config)
    assert pv.metric("pvsim_pv_dead_letter_max_bytes") == 3000
    ch = pvsim_config.channel()
    for i in range(5):
        publish(ch, pvsim_config, f"bad-{i}".encode().ljust(1000, b"."))
    wait_for(lambda: pv.metric("pvsim_pv_messages_rejected_total") == 5, message="5 rejects")
    kept = [body[:5] for body, _, _ in dead_letters(ch, pvsim_config)]
    assert kept == [b"bad-2", b"bad-3", b"bad-4"]

    pvsim_config.write(broker={"dead_letter_max_bytes": 1 << 20})
    pv.stop()
    pvsim_config.cleanup()  # a fresh dead-letter queue, bounded by 1 MiB
    pv = daemons.start("pv", pvsim_config)
    ch = pvsim_config.channel()
    huge = b"x" * (3 << 20)
    publish(ch, pvsim_config, huge)
    wait_for(lambda: pv.metric("pvsim_pv_messages_rejected_total", reason="oversized") == 1,
             message="the oversized body dead-lettered")
    method, props, body = ch.basic_get(pvsim_config.names["dead_letter_queue"], auto_ack=True)
    assert body == huge[:64 * 1024]
    assert props.headers["x-pvsim-original-bytes"] == len(huge)
    assert props.headers["x-pvsim-reason"] == "oversized"


class RawField(bytes):
    """A header value sent exactly as these bytes (an AMQP field: type octet and value), as
    another client's library may send it."""


def nested_array(depth: int) -> RawField:
    field = b"A" + struct.pack(">I", 0)
    for _ in range(depth):
        field = b"A" + struct.pack(">I", len(field)) + field
    return RawField(field)


def test_headers_pika_cannot_decode_neither_stop_nor_stall_the_daemon(pvsim_config, daemons,
                                                                      monkeypatch):
    """pika decodes a message's headers before pvsim sees it; on main a timestamp header of
    2**63 (OverflowError in pika), or an array nested 3,000 deep (RecursionError), dropped the
    connection at every delivery, for ever, and the readings behind it waited. Now such values
    are decoded raw: the message is written, or dead-lettered, and the next one flows."""
    original = pika.data.encode_value

    def encode_value(pieces, value):
        if isinstance(value, RawField):
            pieces.append(bytes(value))
            return len(value)
        return original(pieces, value)
    monkeypatch.setattr(pika.data, "encode_value", encode_value)
    # (RabbitMQ itself refuses a NaN or infinite double with INTERNAL_ERROR: not tried here.)
    bad_headers = [RawField(b"T" + struct.pack(">Q", 2 ** 63)), nested_array(3000)]
    ch = pvsim_config.channel()
    pv = daemons.start("pv", pvsim_config)
    for i, value in enumerate(bad_headers):
        publish(ch, pvsim_config, v1(reading(T0 + i)), headers={"x-odd": value})
        publish(ch, pvsim_config, b"not json", headers={"x-odd": [value]})
    publish(ch, pvsim_config, v1(reading(T0 + len(bad_headers))))
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") == len(bad_headers) + 1,
             timeout=30, message="every valid message written")
    wait_for(lambda: pv.metric("pvsim_pv_messages_rejected_total", reason="not_json")
             == len(bad_headers), message="every invalid one dead-lettered")
    assert pv.running() and "lost the connection" not in pv.log()
    assert pv.metric("pvsim_broker_reconnects_total") == 0
    assert csv_instants(pvsim_config.output) == {"m-1": list(range(T0, T0 + len(bad_headers) + 1))}
