#!/usr/bin/env python3
"""Throughput of a simulated day through the pipeline, beside raw pika on the same broker.

Prints, for one day at 1-s steps (86,400 readings):
- pvsim-run through RabbitMQ (persistent, confirmed, acked after fsync) and in process;
- raw pika doing the least a correct pipeline must do with the same readings: publish each as
  a persistent message with confirms and consume it with a manual ack (one reading per message,
  as most published solutions do), and the same raw loop with pvsim's batch size;
- the ratio of pvsim's figure to each raw one, measured in the same run on the same machine.
Nothing is asserted: the figures are for reading (docs/explanation/performance.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import pika

from pvsim import config as configmod
from pvsim.run.simulation import RunOptions, simulate
from pvsim.pipeline.messages import encode_columns
from tests.support.rabbit import SYSTEM_AMQP_URL as URL


def pvsim_day(broker: str, batch: int) -> float:
    cfg = configmod.Config()
    cfg = dataclasses.replace(
        cfg, timezone="Europe/Madrid",
        broker=dataclasses.replace(cfg.broker, batch_size=batch,
                                   queue=f"bench-{uuid.uuid4().hex[:6]}"))
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        summary = simulate(cfg, RunOptions(date=dt.date(2026, 6, 22), output=Path(out), broker=broker))
        elapsed = time.perf_counter() - began
    assert summary.readings == 86400
    return elapsed


def raw_pika(readings: int, per_message: int) -> float:
    """Publish `readings` JSON readings persistently with confirms, consume them with acks: one
    reading a message as a JSON object, or `per_message` of them in pvsim-run's own body."""
    start = int(dt.datetime(2026, 6, 22, tzinfo=dt.timezone.utc).timestamp())
    if per_message == 1:
        body = json.dumps({"meter_id": "m", "seq": 1, "ts": "2026-06-22T00:00:00+02:00",
                           "power_w": 1234.5}).encode()
    else:
        (body,) = encode_columns(["smart-meter-0"], list(range(start, start + per_message)),
                                 [[1234.5 + i % 97 for i in range(per_message)]])
    queue = f"bench-raw-{uuid.uuid4().hex[:6]}"
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    messages = -(-readings // per_message)
    began = time.perf_counter()
    for _ in range(messages):
        ch.basic_publish("", queue, body, properties=props)
    got = 0
    for method, _props, payload in ch.consume(queue, inactivity_timeout=5):
        if method is None:
            break
        json.loads(payload)
        ch.basic_ack(method.delivery_tag)
        got += 1
        if got == messages:
            break
    elapsed = time.perf_counter() - began
    ch.cancel()
    ch.queue_delete(queue)
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each pvsim figure (median)")
    parser.add_argument("--raw-readings", type=int, default=86400,
                        help="readings for the one-per-message raw pika loop (default: a day)")
    args = parser.parse_args()
    batch = configmod.BrokerConfig().batch_size
    mq = statistics.median(pvsim_day("rabbitmq", batch) for _ in range(args.repeat))
    local = statistics.median(pvsim_day("none", batch) for _ in range(args.repeat))
    raw_one = raw_pika(args.raw_readings, 1) * 86400 / args.raw_readings
    raw_batched = raw_pika(86400, batch)
    print(f"one day at 1-s steps = 86,400 readings (median of {args.repeat})")
    print(f"pvsim-run via RabbitMQ      {mq:7.2f} s  {86400 / mq:9,.0f} readings/s")
    print(f"pvsim-run --broker none     {local:7.2f} s  {86400 / local:9,.0f} readings/s")
    print(f"raw pika, 1 reading/msg     {raw_one:7.2f} s  {86400 / raw_one:9,.0f} readings/s"
          + ("" if args.raw_readings == 86400 else f"  (scaled from {args.raw_readings:,})"))
    print(f"raw pika, {batch} readings/msg {raw_batched:7.2f} s  {86400 / raw_batched:9,.0f} readings/s")
    print(f"pvsim via RabbitMQ vs raw 1/msg: {raw_one / mq:5.1f}x faster; "
          f"vs raw batched: {mq / raw_batched:5.1f}x the time (pvsim also models, validates, "
          "computes PV, writes and fsyncs the CSV)")


if __name__ == "__main__":
    main()
