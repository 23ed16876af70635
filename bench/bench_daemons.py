"""Measure the daemons: footprint at 1 Hz, and how many readings/s one pvsim-pv keeps up with.

    PYTHONPATH=. /usr/bin/python3 bench/bench_daemons.py footprint [--minutes 10] [--meters 1]
    PYTHONPATH=. /usr/bin/python3 bench/bench_daemons.py throughput [--seconds 20]
                                                          [--rates 1000,2000,4000,8000]

Both start the real daemons (`python3 -m pvsim.daemons.meter`, `-m pvsim.daemons.pv`) against the
RabbitMQ on 127.0.0.1:5672, on a private exchange and queues (deleted afterwards), writing CSVs
to a temporary directory.

footprint: pvsim-meter and pvsim-pv run for N minutes at 1 Hz; prints each daemon's RSS (VmRSS)
  at the end, its peak RSS (VmHWM), and its CPU use as a share of one core over the run after the
  first minute (from /proc/PID/stat), then checks every reading confirmed was written.
throughput: pvsim-pv alone; this script publishes readings of many meters at 1 Hz each at a fixed
  total rate for --seconds, in two shapes: "single", one AMQP message per reading (as many
  independent meters would), and "tick", one message per second carrying every meter's reading
  (as one pvsim-meter with many meters does). A rate holds when the queue does not grow (the
  backlog at the end is under one second's worth) and the end-to-end lag stays flat. Prints the
  highest rate that holds for each shape.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the clone, if PYTHONPATH lacks it

from pvsim.model.reading import Reading  # noqa: E402
from pvsim.pipeline.messages import encode  # noqa: E402
from tests.support.daemons import http_get, metric_value as metric  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.paths import PYTHON, ROOT  # noqa: E402
from tests.support.rabbit import SYSTEM_AMQP_URL as URL  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Rig:
    """A temporary config with private broker names, and the daemons started on it."""

    def __init__(self, meters: list[str], log_level: str = "WARNING") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pvsim-bench-"))
        tag = uuid.uuid4().hex[:10]
        self.names = {"exchange": f"bench.{tag}", "queue": f"bench.{tag}.readings",
                      "dead_letter_exchange": f"bench.{tag}.dead",
                      "dead_letter_queue": f"bench.{tag}.readings.dead"}
        self.ports = {"meter": free_port(), "pv": free_port()}
        cfg = {
            "timezone": "Europe/Madrid", "log_level": log_level,
            "broker": {"url": URL, **self.names, "retry_initial_seconds": 0.2,
                       "retry_max_seconds": 2},
            "meter": {"id": meters, "listen": f"127.0.0.1:{self.ports['meter']}",
                      "state_file": str(self.dir / "meter.state")},
            "pv": {"listen": f"127.0.0.1:{self.ports['pv']}"},
            "output": {"directory": str(self.dir / "out")},
        }
        self.config = self.dir / "pvsim.yaml"
        self.config.write_text(json.dumps(cfg))  # JSON is YAML
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([PYTHON, "-m", f"pvsim.daemons.{name}", "--config", str(self.config)],
                                cwd=ROOT, env=env, stdout=log, stderr=log)
        self.procs[name] = proc
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if http_get(self.ports[name], "/healthz")[0] == 200:
                    return proc
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{name} did not become healthy; see {self.dir}/{name}.log")

    def stop(self) -> dict[str, int | None]:
        codes = {}
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes[name] = proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = None
        return codes

    def cleanup(self) -> None:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(URL))
            channel = conn.channel()
            for queue in (self.names["queue"], self.names["dead_letter_queue"]):
                channel.queue_delete(queue)
            for exchange in (self.names["exchange"], self.names["dead_letter_exchange"]):
                channel.exchange_delete(exchange)
            conn.close()
        except Exception as exc:  # a benchmark leaves at worst a few idle names behind
            print(f"cleanup: {exc}", file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_mem_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    return rss, hwm


def footprint(minutes: float, meters: int) -> dict:
    rig = Rig([f"smart-meter-{i}" for i in range(meters)])
    try:
        for name in ("pv", "meter"):
            rig.start(name)
        warmup = min(60.0, minutes * 60 / 4)
        time.sleep(warmup)
        t0 = time.monotonic()
        cpu0 = {n: proc_cpu_seconds(p.pid) for n, p in rig.procs.items()}
        time.sleep(max(0.0, minutes * 60 - warmup))
        wall = time.monotonic() - t0
        result = {"minutes": minutes, "meters": meters}
        for name, proc in rig.procs.items():
            rss, hwm = proc_mem_mb(proc.pid)
            cpu = (proc_cpu_seconds(proc.pid) - cpu0[name]) / wall * 100
            result[name] = {"rss_mb": round(rss, 1), "peak_rss_mb": round(hwm, 1),
                            "cpu_percent_of_one_core": round(cpu, 2)}
        # Stop the meter first: then every reading it had confirmed must be in the CSV, once.
        rig.procs["meter"].send_signal(signal.SIGTERM)
        rig.procs["meter"].wait(20)
        last = json.loads((rig.dir / "meter.state").read_text())["last_confirmed"]
        time.sleep(2)
        rows: dict[str, list[int]] = {}
        for path in sorted((rig.dir / "out").glob("pvsim-*.csv")):
            for line in path.read_text().splitlines()[1:]:
                ts, meter_id = line.split(",")[:2]
                rows.setdefault(meter_id, []).append(int(dt.datetime.fromisoformat(ts).timestamp()))
        result["rows_written"] = sum(len(v) for v in rows.values())
        result["csv_every_second_exactly_once"] = all(
            sorted(v) == list(range(min(v), last[m] + 1)) for m, v in rows.items())
        result["exit_codes"] = rig.stop()
        return result
    finally:
        rig.stop()
        rig.cleanup()


def queue_depth(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def throughput_step(rig: Rig, rate: int, seconds: int, shape: str, offset: int) -> dict:
    """Publish `rate` readings/s (rate meters at 1 Hz) for `seconds`; watch queue and lag."""
    pub = pika.BlockingConnection(pika.URLParameters(URL))
    ch = pub.channel()
    watch = pika.BlockingConnection(pika.URLParameters(URL)).channel()
    meters = [f"bench-{i:05d}" for i in range(rate)]
    tz = dt.timezone(dt.timedelta(hours=1))
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    before = http_get(rig.ports["pv"], "/metrics")[1]
    written0 = metric(before, "pvsim_pv_readings_written_total")
    lag_sum0 = metric(before, "pvsim_pv_end_to_end_lag_seconds_sum")
    lag_n0 = metric(before, "pvsim_pv_end_to_end_lag_seconds_count")
    depths, sent = [], 0
    start = int(time.time()) + 1
    for k in range(seconds):
        second = start + k
        while time.time() < second:
            time.sleep(min(0.01, second - time.time()))
        # Instants are offset per step so each step's readings are new to the PV service.
        readings = [Reading(m, second, 1000.0 + (i % 7), tz) for i, m in enumerate(meters)]
        if shape == "tick":
            for i in range(0, len(readings), 10_000):
                ch.basic_publish(rig.names["exchange"], rig.names["queue"],
                                 encode(readings[i:i + 10_000]), props)
        else:
            slot = 1.0 / len(readings)
            for i, r in enumerate(readings):
                due = second + i * slot
                if i % 50 == 0 and (wait := due - time.time()) > 0:
                    time.sleep(wait)
                ch.basic_publish(rig.names["exchange"], rig.names["queue"], encode([r]), props)
        sent += len(readings)
        pub.process_data_events(0)
        depths.append(queue_depth(watch, rig.names["queue"]))
    behind = time.time() - (start + seconds)
    time.sleep(1.0)
    final = queue_depth(watch, rig.names["queue"])
    deadline = time.time() + 60
    while queue_depth(watch, rig.names["queue"]) and time.time() < deadline:
        time.sleep(0.5)
    after = http_get(rig.ports["pv"], "/metrics")[1]
    n = metric(after, "pvsim_pv_end_to_end_lag_seconds_count") - lag_n0
    mean_lag = (metric(after, "pvsim_pv_end_to_end_lag_seconds_sum") - lag_sum0) / n if n else None
    pub.close()
    watch.connection.close()
    half = depths[len(depths) // 2:]
    unit = rate if shape == "single" else max(1, rate // 10_000)
    holds = (behind < 1.0 and final <= unit and max(half) <= 2 * unit + unit)
    return {"shape": shape, "rate": rate, "sent": sent, "publisher_late_s": round(behind, 2),
            "queue_depth_max_2nd_half": max(half), "queue_depth_1s_after": final,
            "rows_written": int(metric(after, "pvsim_pv_readings_written_total") - written0),
            "mean_end_to_end_lag_s": round(mean_lag, 3) if mean_lag is not None else None,
            "holds": holds}


def throughput(seconds: int, rates: list[int], shapes: list[str]) -> dict:
    rig = Rig(["unused"])
    best: dict[str, int] = {}
    steps = []
    try:
        rig.start("pv")
        offset = 0
        for shape in shapes:
            best[shape] = 0
            for rate in rates:
                step = throughput_step(rig, rate, seconds, shape, offset)
                offset += seconds
                steps.append(step)
                print(json.dumps(step), flush=True)
                if not step["holds"]:
                    break
                best[shape] = rate
        pid = rig.procs["pv"].pid
        rss, hwm = proc_mem_mb(pid)
        return {"seconds_per_step": seconds, "best_rate_holding": best, "steps": steps,
                "pv_rss_mb_after": round(rss, 1), "pv_peak_rss_mb": round(hwm, 1)}
    finally:
        rig.stop()
        rig.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    f = sub.add_parser("footprint")
    f.add_argument("--minutes", type=float, default=10.0)
    f.add_argument("--meters", type=int, default=1)
    t = sub.add_parser("throughput")
    t.add_argument("--seconds", type=int, default=20)
    t.add_argument("--rates", default="1000,2000,4000,8000")
    t.add_argument("--shapes", default="single,tick")
    args = p.parse_args()
    if args.what == "footprint":
        result = footprint(args.minutes, args.meters)
        print(json.dumps(result, indent=2))
        for name in ("meter", "pv"):
            r = result[name]
            print(f"pvsim-{name}: RSS {r['rss_mb']} MB (peak {r['peak_rss_mb']} MB), "
                  f"CPU {r['cpu_percent_of_one_core']} % of one core over {args.minutes:g} min "
                  f"at 1 Hz x {args.meters} meter(s)")
    else:
        result = throughput(args.seconds, [int(r) for r in args.rates.split(",")],
                            args.shapes.split(","))
        print(json.dumps({k: v for k, v in result.items() if k != "steps"}, indent=2))


if __name__ == "__main__":
    main()
