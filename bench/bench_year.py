#!/usr/bin/env python3
"""A year through RabbitMQ: pvsim-run's two figures of issue 9, beside raw pika in the same run.

    PYTHONPATH=. python3 bench/bench_year.py [--quick DAYS] [--jobs N] [--repeat N] [--single DAYS]

Prints, for 2026 in Europe/Madrid with the default config (one meter, batches of 500 readings):
- a year at 15-minute steps (35,040 readings) through RabbitMQ (median of --repeat runs);
- a year at 1-second steps (31,536,000 readings) through RabbitMQ, persistent and confirmed,
  fsynced before the ack, with the days shared among --jobs workers (default: one per CPU),
  in seconds and readings per second;
- raw pika with the same readings and the same batching: messages of 500 readings (pvsim's own
  bodies), each published persistent with a confirm and consumed with an ack, the least a
  correct pipeline must do, and pvsim's time as a multiple of it;
- with --single DAYS, a single-process run over that many days, scaled to the year.
--quick DAYS runs both 1-second figures over that many days and scales them to the year (for
development; the issue's figure is the full year). Nothing is asserted: the figures are for
reading (docs/explanation/performance.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import pika

from pvsim import config as configmod
from pvsim.run.simulation import RunOptions, simulate
from pvsim.run.workers import available_cpus
from pvsim.pipeline.messages import encode_columns
from tests.support.rabbit import SYSTEM_AMQP_URL as URL

YEAR = 2026
YEAR_DAYS = 365


def bench_config() -> configmod.Config:
    """The default config in Madrid, on queue names of the benchmark's own."""
    cfg = configmod.Config(timezone="Europe/Madrid")
    tag = uuid.uuid4().hex[:6]
    return dataclasses.replace(cfg, broker=dataclasses.replace(
        cfg.broker, exchange=f"bench-{tag}", queue=f"bench-{tag}.readings",
        dead_letter_exchange=f"bench-{tag}.dead", dead_letter_queue=f"bench-{tag}.readings.dead"))


def pvsim_run(cfg: configmod.Config, days: int, step: int, jobs: int) -> tuple[float, int]:
    """(seconds, readings) of pvsim-run from 1 January over `days` days through RabbitMQ."""
    out = Path(tempfile.mkdtemp(prefix="pvsim-bench-"))
    try:
        summary = simulate(cfg, RunOptions(date=dt.date(YEAR, 1, 1), days=days, step=step,
                                           output=out, broker="rabbitmq", jobs=jobs))
    finally:
        shutil.rmtree(out)
    return summary.elapsed_seconds, summary.readings


def raw_pika(readings: int, per_message: int, window: int = 500) -> float:
    """Seconds for raw pika to carry `readings` in messages of `per_message` (pvsim's own body
    for that many readings): published persistent with a confirm each, consumed and acked,
    `window` messages at a time (the queue stays short, as in a run)."""
    start = int(dt.datetime(YEAR, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    (body,) = encode_columns(["smart-meter-0"], list(range(start, start + per_message)),
                             [[1234.5 + i % 97 for i in range(per_message)]])
    queue = f"bench-raw-{uuid.uuid4().hex[:6]}"
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    messages = -(-readings // per_message)
    began = time.perf_counter()
    sent = 0
    while sent < messages:
        batch = min(window, messages - sent)
        for _ in range(batch):
            ch.basic_publish("", queue, body, properties=props)
        got = 0
        for method, _props, payload in ch.consume(queue, inactivity_timeout=5):
            json.loads(payload)
            got += 1
            if got == batch:
                ch.basic_ack(method.delivery_tag, multiple=True)
                break
        sent += batch
    elapsed = time.perf_counter() - began
    ch.cancel()
    ch.queue_delete(queue)
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", type=int, metavar="DAYS",
                        help="run the 1-second figures over DAYS days and scale them to the year")
    parser.add_argument("--jobs", type=int, default=available_cpus(), help="workers (default: CPUs)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the 15-minute year (median)")
    parser.add_argument("--single", type=int, metavar="DAYS",
                        help="also time a single-process run over DAYS days, scaled to the year")
    args = parser.parse_args()
    cfg = bench_config()
    batch = cfg.broker.batch_size
    days = args.quick or YEAR_DAYS
    scale = YEAR_DAYS / days
    quarter = statistics.median(pvsim_run(cfg, YEAR_DAYS, 900, args.jobs)[0]
                                for _ in range(args.repeat))
    print(f"a year at 15-min steps (35,040 readings) via RabbitMQ: {quarter:6.2f} s "
          f"(median of {args.repeat}, {args.jobs} workers)")
    seconds, readings = pvsim_run(cfg, days, 1, args.jobs)
    raw = raw_pika(readings, batch)
    note = "" if days == YEAR_DAYS else f"  (scaled from {days} days)"
    print(f"a year at 1-s steps (31,536,000 readings) via RabbitMQ, persistent, confirmed, "
          f"fsynced before the ack, {args.jobs} workers: {seconds * scale:7.1f} s "
          f"{readings / seconds:9,.0f} readings/s{note}")
    print(f"raw pika, the same readings, {batch} per message, persistent, confirmed, acked: "
          f"{raw * scale:7.1f} s {readings / raw:9,.0f} readings/s{note}")
    print(f"pvsim takes {seconds / raw:.2f} times raw pika's time (and models the building and "
          "the PV plant, validates, computes PV and energy, writes and fsyncs the CSV)")
    if args.single:
        one, count = pvsim_run(cfg, args.single, 1, 1)
        print(f"a single process: {one * YEAR_DAYS / args.single:7.1f} s for the year "
              f"{count / one:9,.0f} readings/s  (scaled from {args.single} days)")


if __name__ == "__main__":
    main()
