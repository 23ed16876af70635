"""A full disk is a storage error, never a bad message: proven on a real full file system.

The output directory is a tmpfs of 256 KiB (root only; skipped otherwise) that the kernel really
fills. pvsim-pv stops with exit 73 and acknowledges nothing unwritten, the dead-letter queue stays
empty, and after space is freed and the daemon restarted every second is in the CSV exactly once.
The JOI API answers 503 and the daemon stops with 73, so the client's retry stores the readings;
pvsim-run reports the disk, with exit 73, not a lost broker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.support.csvfiles import csv_instants, drain_and_check_every_second_once
from tests.support.daemons import http_get, http_post_json
from tests.support.paths import ROOT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

METERS = [f"m-{i:02d}" for i in range(10)]


def dead_letters(cfg) -> int:
    return cfg.channel().queue_declare(cfg.names["dead_letter_queue"], passive=True).method.message_count


def test_pv_on_a_full_disk_stops_with_73_and_after_space_is_freed_every_second_is_there_once(
        pvsim_config, daemons, tiny_fs):
    out = tiny_fs.path / "out"
    pvsim_config.write(meter={"id": METERS}, output={"directory": str(out), "min_free_mb": 0},
                       broker={"batch_size": 1000})
    # A backlog: the meter last confirmed 300 s ago, so it first produces 3,000 readings, sent in
    # messages of 1,000 readings (~75 KB each), about 225 KB of CSV against the room left below.
    backlog_from = int(time.time()) - 300
    pvsim_config.state_file.write_text(json.dumps(
        {"version": 1, "last_confirmed": {m: backlog_from for m in METERS}}))
    pvsim_config.channel()  # declare the queues, so the backlog waits for pvsim-pv
    meter = daemons.start("meter", pvsim_config)
    wait_for(lambda: meter.metric("pvsim_meter_readings_published_total") >= 3000, timeout=60,
             message="the backlog published")
    tiny_fs.fill(leave=40_000)

    pv = daemons.start("pv", pvsim_config, wait=False)
    assert pv.proc.wait(60) == 73, pv.log()
    assert "No space left on device" in pv.log()
    assert dead_letters(pvsim_config) == 0  # a storage error is never a bad message
    assert "processing_error" not in pv.log()

    tiny_fs.free()
    tiny_fs.resize(2048)
    pv = daemons.start("pv", pvsim_config)
    drain_and_check_every_second_once(pv, meter, pvsim_config, METERS, first=backlog_from + 1)
    assert dead_letters(pvsim_config) == 0


def post(port: int, body: dict) -> tuple[int, dict]:
    return http_post_json(port, "/readings/store", body)


def test_a_post_on_a_full_disk_is_503_and_the_retry_after_a_restart_stores_it(
        pvsim_config, daemons, tiny_fs):
    out = tiny_fs.path / "out"
    pvsim_config.write(output={"directory": str(out), "min_free_mb": 0})
    start = 1_782_000_000
    body = {"smartMeterId": "meter-posted",
            "electricityReadings": [{"time": start + i, "reading": 1.5} for i in range(4000)]}
    pv = daemons.start("pv", pvsim_config)
    tiny_fs.fill(leave=30_000)
    status, problem = post(pvsim_config.pv_port, body)
    assert status == 503 and problem["status"] == 503, problem
    assert "No space left on device" in problem["detail"]
    assert pv.proc.wait(30) == 73, pv.log()

    tiny_fs.free()
    tiny_fs.resize(2048)
    pv = daemons.start("pv", pvsim_config)
    status, echo = post(pvsim_config.pv_port, body)  # the client's retry
    assert status == 200, echo
    got = csv_instants(out)["meter-posted"]
    assert sorted(got) == [start + i for i in range(4000)]  # every reading, once
    assert http_get(pvsim_config.pv_port, "/readings/read/meter-posted?limit=5")[0] == 200


def test_pvsim_run_through_rabbitmq_on_a_full_disk_says_so_with_73(pvsim_config, tiny_fs):
    tiny_fs.fill(leave=30_000)
    proc = subprocess.run([sys.executable, "-m", "pvsim.cli.run", "--accelerated", "--date",
                           "2026-06-21", "--config", str(pvsim_config.path),
                           "--output", str(tiny_fs.path / "run")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 73, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], proc.stderr
    assert "RabbitMQ" not in lines[0] and "Traceback" not in proc.stderr
