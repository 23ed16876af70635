#!/usr/bin/env python3
"""A fleet on a 3-node RabbitMQ cluster: readings/s and CPU per reading for 1, 2, 3 pvsim-pv.

    PYTHONPATH=. /usr/bin/python3 bench/bench_fleet.py [--meters 10000,100000] [--pv 1,2,3]
                                                       [--window SECONDS] [--quick] [--keep]

Starts a private 3-node RabbitMQ cluster on this host (tests/support/rig.py), then for each
meter count N and each pvsim-pv count K, one step on names of its own (exchange `bench.<id>`,
16 shard quorum queues, a fresh output directory):

1. starts K `python3 -m pvsim.daemons.pv` (fleet.shards 16; instance i connects first to node
   (i + 1) mod 3, the publisher to node 0);
2. starts a publisher subprocess (`pvsim.pipeline.broker.Publisher`: persistent, confirmed, one
   message at a time) that publishes seconds of readings of N meters, one version 1 message per
   shard per second (as pvsim-meter batches them), as fast as confirms allow, until the backlog
   (readings published and not yet in the CSVs, which this process counts and tells it) reaches
   max(1,000,000, 20 N) readings; then it tops the backlog up as the consumers drain it (so the
   broker's disks stay bounded and, in the window, the publisher publishes what the consumers
   take: the brokers' CPU per reading is then that of one reading in and out). The backlog is
   not measured by the queues' message counts: each pvsim-pv holds unacknowledged messages up
   to its prefetch window, so the ready counts stay near 0. Generating 100,000 readings with the
   meter model and encoding them costs about 2 s of CPU per second of readings here, more than
   the consumers take, so the bodies of 4 seconds of readings are built once per N (meter model,
   `shard.by_shard`,
   `messages.encode_batches`) and reused round-robin with each new second's instant written into
   them (`"seq"` and `"ts"` replaced in the bytes): every reading published is a new
   (meter, instant), with the power values of 4 seconds cycling;
3. waits until the shards are balanced (each pvsim-pv's log says which shards it took and gave
   up; confirmed by `pvsim_pv_shards_written` summing to 16 with each instance at most
   ceil(16 / K)) for 3 s and the backlog is half the cap (or balanced for 20 s);
4. measures over --window seconds: rows written per second (new lines in the CSV files, read
   by this process, so that pvsim-pv's own /metrics, large with 100,000 meters, is not scraped
   inside the window; `pvsim_pv_readings_written_total` scraped just before and after is the
   cross-check), and the CPU (utime + stime from /proc/PID/stat) of each pvsim-pv, of the
   publisher and of each node's beam.smp, divided by the rows written in the window;
5. stops the publisher and the pvsim-pv (SIGTERM) and checks that every reading published was
   written once or is still queued: no (timestamp, meter) twice in any CSV, every instant of a
   shard complete, published = written + queued (the dead-letter queue empty); then deletes the
   step's queues and exchanges and its directory.

Before the cluster starts, a microbenchmark in a subprocess measures what pvsim-pv's per-meter
gauges (4 per meter) cost: memory per meter, CPU per row, and a /metrics scrape.

--quick: 2,000 meters, 1 and 2 pvsim-pv, an 8-second window (a smoke run of a couple of
minutes). --keep: keep the logs (pvsim-pv, publisher, RabbitMQ nodes); the CSVs are removed
anyway. The cluster is stopped and every temporary directory removed on exit, Ctrl-C and errors
included; the children get SIGTERM should this process die (PR_SET_PDEATHSIG).
Nothing is asserted: the figures are for reading (docs/explanation/performance.md, "A fleet").
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import datetime as dt
import json
import os
import pickle
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the clone, if PYTHONPATH lacks it
from tests.support.daemons import http_get, metric_value as metric  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.paths import PYTHON, ROOT  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SHARDS = 16
TZ = "Europe/Madrid"
# Instants from 2026-01-12 08:00 local (no DST change, no local midnight for hours of readings).
START_LOCAL = dt.datetime(2026, 1, 12, 8, 0)
TEMPLATE_SECONDS = 4
BALANCE_TIMEOUT = 120.0
_TAKE = re.compile(rb"shard (s\d+): writing it now")
_GIVE = re.compile(rb"shard (s\d+): given up")

# ---- small helpers ------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when this process dies (even by SIGKILL)."""
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    return rss, hwm


def host_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return (total - values[3] - values[4]) / CLK_TCK, total / CLK_TCK


def host_facts() -> dict:
    def version(package: str) -> str:
        try:
            return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                                  capture_output=True, text=True, timeout=10).stdout or "?"
        except OSError:
            return "?"
    import pika
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return {"cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu_model": model,
            "rabbitmq": version("rabbitmq-server"), "erlang": version("erlang-base"),
            "python": platform.python_version(), "pika": pika.__version__,
            "load_average_at_start": os.getloadavg()}


# ---- message bodies -----------------------------------------------------------------------------

def start_instant() -> int:
    from zoneinfo import ZoneInfo
    return int(START_LOCAL.replace(tzinfo=ZoneInfo(TZ)).timestamp())


def build_templates(meters: int, path: Path) -> dict:
    """The bodies of TEMPLATE_SECONDS seconds of readings of `meters` meters, per shard, as
    pvsim-meter would publish them (pickled to `path` for the publisher); returns the summary."""
    from pvsim import config as configmod
    from pvsim.inputs.models import meter_models
    from pvsim.model import metermodel, shard
    from pvsim.pipeline.messages import encode_batches
    cfg = configmod.with_meter_count(configmod.Config(timezone=TZ), meters)
    began = time.perf_counter()
    models = meter_models(cfg)
    start, known = start_instant(), {}
    seconds = []
    sizes: dict[int, int] = {}
    for j in range(TEMPLATE_SECONDS):
        readings = list(metermodel.read(models, [start + j], cfg.tz))
        groups = shard.by_shard(readings, SHARDS, known)
        sizes = {i: len(part) for i, part in groups}
        seconds.append([(i, list(encode_batches(part, len(part),
                                                max_power_w=cfg.limits.max_power_w)))
                        for i, part in groups])
    per_second = {i: len(bodies) for i, bodies in seconds[0]}
    doc = {"meters": meters, "start": start, "seconds": seconds, "shard_sizes": sizes,
           "bodies_per_second": per_second}
    path.write_bytes(pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL))
    body_bytes = sum(len(b) for _, bodies in seconds[0] for b in bodies)
    return {"meters": meters, "shard_sizes": sizes, "bodies_per_second": per_second,
            "bytes_per_second": body_bytes, "build_seconds": time.perf_counter() - began}


class Retimer:
    """A template body with the readings' instant replaced: `"seq":T,` and `"ts":"<local T>"`
    (every reading of a body shares one instant, so bytes.replace does it for all of them)."""

    def __init__(self, tz) -> None:
        self.tz = tz

    def pairs(self, old: int, new: int) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
        iso = lambda t: dt.datetime.fromtimestamp(t, self.tz).isoformat().encode()  # noqa: E731
        return ((b'"seq":%d,' % old, b'"seq":%d,' % new),
                (b'"ts":"' + iso(old) + b'"', b'"ts":"' + iso(new) + b'"'))


# ---- the publisher (a subprocess: its CPU is its own) -------------------------------------------

def publisher_main(config: str, templates: str, stats: str, written: str, cap: int) -> int:
    from pvsim import config as configmod
    from pvsim.pipeline import broker
    from pvsim.pipeline.messages import decode
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cfg = configmod.load(config)
    doc = pickle.loads(Path(templates).read_bytes())
    start, seconds = doc["start"], doc["seconds"]
    meters = doc["meters"]
    topology = broker.Topology.from_config(cfg)
    connection = broker.connect(cfg.broker)
    publisher = broker.Publisher(connection, topology)
    retimer = Retimer(cfg.tz)
    # The replacement is right: a retimed body decodes to readings at the new instant.
    (seq, ts) = retimer.pairs(start, start + 12345)
    probe = decode(seconds[0][0][1][0].replace(*seq).replace(*ts))
    assert {r.instant for r in probe} == {start + 12345}  # decode refused a seq other than the ts

    instant, published, messages = start, 0, 0
    busy = paused = 0.0
    rows = 0
    backlog = 0
    check_due = 0.0
    began = time.monotonic()

    def write_stats(done: bool = False) -> None:
        tmp = stats + ".tmp"
        Path(tmp).write_text(json.dumps({
            "t": time.monotonic(), "published": published, "messages": messages,
            "next_instant": instant, "seconds_published": instant - start, "busy_s": busy,
            "paused_s": paused, "elapsed_s": time.monotonic() - began, "written": rows,
            "backlog_readings": backlog, "done": done}))
        os.replace(tmp, stats)

    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= check_due:
                # Published but not yet written: in the queues, unacknowledged (up to
                # broker.prefetch messages per shard consumer) or in pvsim-pv's hands.
                try:
                    rows = int(Path(written).read_text() or 0)
                except (OSError, ValueError):
                    pass
                backlog = published - rows
                check_due = now + 0.5
                write_stats()
            if backlog >= cap:
                stop.wait(max(0.02, check_due - now))
                paused += time.monotonic() - now
                continue
            t = time.monotonic()
            template = (instant - start) % len(seconds)
            seq, ts = retimer.pairs(start + template, instant)
            for shard_index, bodies in seconds[template]:
                for body in bodies:
                    publisher.publish(body.replace(*seq).replace(*ts), shard_index=shard_index)
                    messages += 1
            published += meters
            backlog += meters
            instant += 1
            busy += time.monotonic() - t
    finally:
        write_stats(done=True)
        broker.close_quietly(connection)
    return 0


# ---- the per-meter gauges (a subprocess, for a clean RSS) ---------------------------------------

def gauges_main(meters: int) -> int:
    """What pvsim-pv's per-meter gauges cost, as daemons.rowmetrics.RowMetrics uses them."""
    from prometheus_client import generate_latest
    from pvsim.daemons import metrics

    def rss() -> float:
        return proc_mem_mb(os.getpid())[0]

    reg = metrics.registry()
    m = metrics.PvMetrics(reg)
    ids = [f"meter-{i:06d}" for i in range(1, meters + 1)]
    before = rss()
    t = time.perf_counter()
    gauges = {mid: (m.last_meter.labels(mid), m.last_pv.labels(mid), m.last_net.labels(mid),
                    m.last_written.labels(mid)) for mid in ids}
    create = time.perf_counter() - t
    after = rss()
    rounds, instant = 3, 1_768_201_200
    t = time.perf_counter()
    for _ in range(rounds):
        for mid in ids:  # RowMetrics: the four sets (with their rounding) of each row
            g = gauges.get(mid)
            g[0].set(1234.5)
            g[1].set(round(0.4567 * 1000.0, 1))
            g[2].set(round(0.7778 * 1000.0, 1))
            g[3].set(instant)
    sets = (time.perf_counter() - t) / (rounds * meters)
    t = time.perf_counter()
    for _ in range(rounds):
        for _mid in ids:  # _sync: the lag histogram, per row
            m.lag.observe(0.75)
    lag = (time.perf_counter() - t) / (rounds * meters)
    t = time.perf_counter()
    body = generate_latest(reg)
    scrape = time.perf_counter() - t
    print(json.dumps({"meters": meters, "rss_mb": after - before,
                      "bytes_per_meter": (after - before) * 1024 * 1024 / meters,
                      "create_us_per_meter": create / meters * 1e6,
                      "gauge_sets_us_per_row": sets * 1e6, "lag_observe_us_per_row": lag * 1e6,
                      "scrape_s": scrape, "scrape_mb": len(body) / 1e6}))
    return 0


# ---- output directory ---------------------------------------------------------------------------

class CsvRows:
    """Rows in a fleet's CSV files, counted incrementally (only new bytes are read)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.seen: dict[Path, tuple[int, int]] = {}

    def count(self) -> int:
        total = 0
        for path in sorted(self.dir.glob("pvsim-*.csv")):
            offset, lines = self.seen.get(path, (0, 0))
            with open(path, "rb") as f:
                f.seek(offset)
                while chunk := f.read(1 << 24):
                    lines += chunk.count(b"\n")
                    offset += len(chunk)
            self.seen[path] = (offset, lines)
            total += max(0, lines - 1)  # the header
        return total


def check_rows(directory: Path, shard_sizes: dict[int, int]) -> dict:
    """Rows, (timestamp, meter) pairs written twice, and instants of a shard whose rows are not
    exactly that shard's meters' count, over every CSV of the step."""
    rows = duplicates = incomplete = instants = 0
    for path in sorted(directory.glob("pvsim-*.csv")):
        shard_index = int(re.search(r"\.s(\d+)\.csv$", path.name).group(1))
        keys: set[bytes] = set()
        per_instant: collections.Counter = collections.Counter()
        with open(path, "rb") as f:
            f.readline()
            for line in f:
                keys.add(line[:line.index(b",", 26)])
                per_instant[line[:25]] += 1
                rows += 1
        duplicates += sum(per_instant.values()) - len(keys)
        instants += len(per_instant)
        incomplete += sum(1 for n in per_instant.values() if n != shard_sizes[shard_index])
    return {"rows": rows, "duplicates": duplicates, "incomplete_instants": incomplete,
            "shard_instants": instants}


def shards_held(log: Path) -> set[str]:
    """The shards a pvsim-pv writes now, from its log's takes and give-ups."""
    held: set[str] = set()
    try:
        text = log.read_bytes()
    except OSError:
        return held
    for line in text.splitlines():
        if (m := _TAKE.search(line)):
            held.add(m.group(1).decode())
        elif (m := _GIVE.search(line)):
            held.discard(m.group(1).decode())
    return held


# ---- one step -----------------------------------------------------------------------------------

class Step:
    """K pvsim-pv and a publisher on names of their own, and what is measured of them."""

    def __init__(self, root: Path, cluster, meters: int, pvs: int, templates: Path,
                 summary: dict, prefetch: int | None = None) -> None:
        self.prefetch = prefetch
        self.cluster, self.meters, self.pvs = cluster, meters, pvs
        self.templates, self.summary = templates, summary
        self.dir = root / f"step-{meters}-{pvs}"
        self.dir.mkdir()
        self.out = self.dir / "out"
        tag = uuid.uuid4().hex[:10]
        self.names = {"exchange": f"bench.{tag}", "queue": f"bench.{tag}.readings",
                      "dead_letter_exchange": f"bench.{tag}.dead",
                      "dead_letter_queue": f"bench.{tag}.readings.dead"}
        self.ports = [free_port() for _ in range(pvs)]
        self.procs: list[subprocess.Popen] = []
        self.publisher: subprocess.Popen | None = None
        self.stats = self.dir / "publisher.stats.json"
        self.written = self.dir / "written"
        self.rows = CsvRows(self.out)
        self.cap = max(1_000_000, 20 * meters)

    def config(self, name: str, first_node: int, port: int | None) -> Path:
        urls = self.cluster.urls()
        urls = urls[first_node:] + urls[:first_node]
        cfg = {"timezone": TZ, "log_level": "INFO",
               "broker": {"urls": urls, **self.names, "retry_initial_seconds": 0.2,
                          "retry_max_seconds": 2},
               "meter": {"count": self.meters},
               "fleet": {"shards": SHARDS},
               "output": {"directory": str(self.out), "retention_days": 0}}
        if port is not None:
            cfg["pv"] = {"listen": f"127.0.0.1:{port}"}
            if self.prefetch:
                cfg["broker"]["prefetch"] = self.prefetch
        path = self.dir / f"{name}.json"
        path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML
        return path

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(args, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent)

    def start_pvs(self) -> None:
        for i, port in enumerate(self.ports):
            path = self.config(f"pv{i}", (i + 1) % len(self.cluster.urls()), port)
            self.procs.append(self._spawn([PYTHON, "-m", "pvsim.daemons.pv", "--config", str(path)],
                                          self.dir / f"pv{i}.log"))
            self._wait_healthy(i)

    def _wait_healthy(self, i: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[i].poll() is not None:
                break
            try:
                if http_get(self.ports[i], "/healthz", 5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        tail = (self.dir / f"pv{i}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"pvsim-pv {i} did not become healthy:\n{tail}")

    def start_publisher(self) -> None:
        path = self.config("publisher", 0, None)
        self.publisher = self._spawn([PYTHON, str(Path(__file__).resolve()), "_publish",
                                      str(path), str(self.templates), str(self.stats),
                                      str(self.written), str(self.cap)], self.dir / "publisher.log")

    def count_rows(self) -> int:
        """Rows in the CSVs now, also told to the publisher (which keeps the backlog at its cap)."""
        n = self.rows.count()
        tmp = self.written.with_suffix(".tmp")
        tmp.write_text(str(n))
        os.replace(tmp, self.written)
        return n

    def backlog(self) -> int:
        """Readings published and not yet written."""
        return self.pub_stats().get("published", 0) - self.rows.count()

    def pub_stats(self) -> dict:
        try:
            return json.loads(self.stats.read_text())
        except (OSError, ValueError):
            return {}

    def check_alive(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                tail = (self.dir / f"pv{i}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"pvsim-pv {i} exited with {proc.returncode}:\n{tail}")
        if self.publisher is not None and self.publisher.poll() is not None:
            tail = (self.dir / "publisher.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the publisher exited with {self.publisher.returncode}:\n{tail}")

    def balanced(self) -> tuple[bool, list[int]]:
        held = [shards_held(self.dir / f"pv{i}.log") for i in range(self.pvs)]
        share = -(-SHARDS // self.pvs)
        union = set().union(*held)
        ok = (len(union) == SHARDS and sum(len(h) for h in held) == SHARDS
              and all(len(h) <= share for h in held))
        return ok, [len(h) for h in held]

    def wait_ready(self) -> dict:
        """Until the shards have been balanced for 3 s and the backlog is half the cap (or the
        shards have been balanced for 20 s: a publisher slower than the consumers)."""
        began = time.monotonic()
        balanced_at = None
        counts: list[int] = []
        while time.monotonic() - began < BALANCE_TIMEOUT:
            self.check_alive()
            self.count_rows()
            ok, counts = self.balanced()
            now = time.monotonic()
            if ok and balanced_at is None:
                balanced_at = now - began
            if not ok:
                balanced_at = None
            if ok and now - began - balanced_at >= 3 and (
                    self.backlog() >= self.cap / 2 or now - began - balanced_at >= 20):
                return {"balanced": True, "balance_s": balanced_at, "held": counts}
            time.sleep(1)
        return {"balanced": False, "balance_s": None, "held": counts}

    def pids(self) -> dict[str, int]:
        pids = {f"pv{i}": p.pid for i, p in enumerate(self.procs)}
        pids["publisher"] = self.publisher.pid
        for node in self.cluster.nodes:
            pids[f"beam{node.index}"] = node.beam_pid()
        return pids

    def scrape(self) -> dict:
        t = time.monotonic()
        texts = [http_get(port, "/metrics", 120)[1] for port in self.ports]
        return {"t": (t + time.monotonic()) / 2, "scrape_s": time.monotonic() - t,
                "written": sum(metric(x, "pvsim_pv_readings_written_total") for x in texts),
                "shards": [int(metric(x, "pvsim_pv_shards_written")) for x in texts],
                "duplicates": sum(metric(x, "pvsim_pv_duplicates_dropped_total") for x in texts),
                "takeovers": sum(metric(x, "pvsim_pv_shard_takeovers_total") for x in texts)}

    def snapshot(self, pids: dict[str, int]) -> dict:
        t = time.monotonic()
        cpu = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
        busy, total = host_cpu()
        own = proc_cpu_seconds(os.getpid())
        return {"t": t, "cpu": cpu, "host_busy": busy, "host_total": total, "bench": own,
                "rows": self.count_rows(), "pub": self.pub_stats()}

    def run(self, window: float) -> dict:
        result: dict = {"meters": self.meters, "pv": self.pvs, "window_s": window}
        began = time.monotonic()
        self.start_pvs()
        self.start_publisher()
        result.update(self.wait_ready())
        before = self.scrape()
        result["shards_metric"] = before["shards"]
        pids = self.pids()
        rss0 = {n: proc_mem_mb(pid)[0] for n, pid in pids.items()}
        s0 = self.snapshot(pids)
        rss_peak = dict(rss0)
        backlog = [s0["pub"].get("published", 0) - s0["rows"]]
        while time.monotonic() < s0["t"] + window:
            time.sleep(max(0.0, min(1.0, s0["t"] + window - time.monotonic())))
            self.check_alive()
            for n, pid in pids.items():
                rss_peak[n] = max(rss_peak[n], proc_mem_mb(pid)[0])
            backlog.append(self.pub_stats().get("published", 0) - self.count_rows())
        s1 = self.snapshot(pids)
        backlog.append(s1["pub"].get("published", 0) - s1["rows"])
        after = self.scrape()
        wall = s1["t"] - s0["t"]
        written = s1["rows"] - s0["rows"]
        result.update(self._figures(s0, s1, wall, written, before, after, backlog))
        result["rss_start_mb"] = rss0
        result["rss_end_mb"] = {n: proc_mem_mb(pid)[0] for n, pid in pids.items()}
        result["rss_peak_window_mb"] = rss_peak
        result["pv_hwm_mb"] = {f"pv{i}": proc_mem_mb(p.pid)[1] for i, p in enumerate(self.procs)}
        result.update(self.finish(after))
        result["step_s"] = time.monotonic() - began
        return result

    def _figures(self, s0, s1, wall, written, before, after, backlog) -> dict:
        per_row = {n: ((s1["cpu"][n] - s0["cpu"][n]) / written * 1e6 if written else None)
                   for n in s0["cpu"]}
        cores = {n: (s1["cpu"][n] - s0["cpu"][n]) / wall for n in s0["cpu"]}
        ours = sum(s1["cpu"][n] - s0["cpu"][n] for n in s0["cpu"]) + (s1["bench"] - s0["bench"])
        host_busy = s1["host_busy"] - s0["host_busy"]
        host_total = s1["host_total"] - s0["host_total"]
        p0, p1 = s0["pub"], s1["pub"]
        pub_span = p1.get("t", 0) - p0.get("t", 0)
        pub_paused = p1.get("paused_s", 0) - p0.get("paused_s", 0)
        published = p1.get("published", 0) - p0.get("published", 0)
        return {
            "wall_s": wall, "rows_window": written, "rows_per_s": written / wall,
            "rows_per_s_counters": (after["written"] - before["written"]) / (after["t"] - before["t"]),
            "scrape_s": after["scrape_s"],
            "cpu_us_per_row": per_row, "cores": cores,
            "host_busy_cores": host_busy / host_total * (os.cpu_count() or 1) if host_total else None,
            "other_cores": (host_busy - ours) / wall,
            "published_per_s_window": published / wall,
            "publisher_idle_share": pub_paused / pub_span if pub_span > 0 else None,
            "publisher_max_per_s": (p1.get("published", 0) / p1["busy_s"]) if p1.get("busy_s") else None,
            "backlog_readings": backlog,
        }

    def finish(self, last_scrape: dict) -> dict:
        """Stop the publisher, then the pvsim-pv, then check every reading was written once."""
        self.stop()
        import pika
        conn = pika.BlockingConnection(pika.URLParameters(self.cluster.urls()[0]))
        ch = conn.channel()
        queues = [f"{self.names['queue']}.s{i:02d}" for i in range(SHARDS)]
        ready = {i: ch.queue_declare(q, passive=True).method.message_count
                 for i, q in enumerate(queues)}
        dead = ch.queue_declare(self.names["dead_letter_queue"], passive=True).method.message_count
        conn.close()
        per_message = {i: self.summary["shard_sizes"][i] / self.summary["bodies_per_second"][i]
                       for i in range(SHARDS)}
        queued = round(sum(n * per_message[i] for i, n in ready.items()))
        final = self.pub_stats()
        check = check_rows(self.out, self.summary["shard_sizes"])
        published = final.get("published", 0)
        return {"published": published, "queued_after": queued, "dead_letters": dead,
                "check": check, "exactly_once": (check["duplicates"] == 0
                                                 and check["incomplete_instants"] == 0
                                                 and published == check["rows"] + queued
                                                 and dead == 0),
                "duplicates_dropped_metric": last_scrape["duplicates"],
                "takeovers": last_scrape["takeovers"],
                "exit_codes": [p.returncode for p in self.procs]}

    def stop(self) -> None:
        if self.publisher is not None and self.publisher.poll() is None:
            self.publisher.send_signal(signal.SIGTERM)
            try:
                self.publisher.wait(60)
            except subprocess.TimeoutExpired:
                self.publisher.kill()
                self.publisher.wait()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def cleanup(self, keep: bool) -> None:
        self.stop()
        try:
            import pika
            conn = pika.BlockingConnection(pika.URLParameters(self.cluster.urls()[0]))
            ch = conn.channel()
            queue = self.names["queue"]
            for q in [f"{queue}.s{i:02d}" for i in range(SHARDS)] + [f"{queue}.members",
                                                                     self.names["dead_letter_queue"]]:
                ch.queue_delete(q)
            for exchange in (self.names["exchange"], self.names["dead_letter_exchange"]):
                ch.exchange_delete(exchange)
            conn.close()
        except Exception as exc:  # the cluster goes away at the end anyway
            print(f"cleanup of {self.names['exchange']}: {exc}", file=sys.stderr)
        shutil.rmtree(self.out, ignore_errors=True)
        self.stats.unlink(missing_ok=True)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- report -------------------------------------------------------------------------------------

def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def trend(backlog: list[float], cap: int) -> str:
    if len(backlog) < 2:
        return "?"
    first, last = backlog[0], backlog[-1]
    if min(backlog) >= 0.8 * cap:
        return "at cap"
    if last > first * 1.1:
        return "growing"
    if last < first * 0.9:
        return "falling"
    return "flat"


def print_table(facts: dict, gauges: dict | None, templates: dict, results: list[dict],
                elapsed: float, prefetch: int | None) -> None:
    print()
    print(f"pvsim fleet bench: {SHARDS} shards, broker.prefetch {prefetch or 'default (1000)'}, "
          "quorum queues on a 3-node RabbitMQ "
          f"{facts['rabbitmq']} cluster on one host (Erlang {facts['erlang']}); "
          f"{facts['cpus']} CPUs ({facts['cpu_model']}), Python {facts['python']}, "
          f"pika {facts['pika']}; load average at start {facts['load_average_at_start'][0]:.2f}")
    for n, t in sorted(templates.items()):
        print(f"  {n:,} meters: one message per shard per second of readings, "
              f"{t['bytes_per_second'] / SHARDS / 1024:,.0f} KiB each; bodies of "
              f"{TEMPLATE_SECONDS} s built in {t['build_seconds']:.1f} s and reused with new instants")
    print()
    head = (f"{'meters':>7} {'pv':>2} {'rows/s':>7} {'ctr/s':>7} {'shards':>8} {'bal s':>5} "
            f"{'pv us/row each':>14} {'pv':>4} {'pub':>4} {'beam us/row n0/n1/n2':>20} "
            f"{'beams':>5} {'total':>5} "
            f"{'host':>5} {'other':>5} {'backlog':>8} {'pvRSS MB':>14} {'once':>4}")
    print(head)
    print("-" * len(head))
    for r in results:
        if "error" in r:
            print(f"{r['meters']:>7,} {r['pv']:>2}  failed: {r['error']}")
            continue
        us = r["cpu_us_per_row"]
        pv = "/".join(fmt(us[f"pv{i}"], ".0f") for i in range(r["pv"]))
        beams = "/".join(fmt(us[f"beam{i}"], ".0f") for i in range(3))
        total = sum(v for v in us.values() if v is not None)
        pv_sum = sum(us[f"pv{i}"] or 0 for i in range(r["pv"]))
        beam_sum = sum(us[f"beam{i}"] or 0 for i in range(3))
        rss = "/".join(f"{r['rss_peak_window_mb'][f'pv{i}']:.0f}" for i in range(r["pv"]))
        cap = max(1_000_000, 20 * r["meters"])
        print(f"{r['meters']:>7,} {r['pv']:>2} {r['rows_per_s']:>7,.0f} {r['rows_per_s_counters']:>7,.0f} "
              f"{'/'.join(map(str, r['shards_metric'])):>8} {fmt(r['balance_s'], '.0f'):>5} "
              f"{pv:>14} {pv_sum:>4.0f} {fmt(us['publisher'], '.0f'):>4} {beams:>20} "
              f"{beam_sum:>5.0f} {total:>5.0f} "
              f"{fmt(r['host_busy_cores'], '.2f'):>5} {fmt(r['other_cores'], '.2f'):>5} "
              f"{trend(r['backlog_readings'], cap):>8} {rss:>14} "
              f"{'yes' if r['exactly_once'] else 'NO':>4}")
    print()
    print("rows/s: CSV rows written per second over the window; ctr/s: the same from "
          "pvsim_pv_readings_written_total (scraped just outside the window); shards: "
          "pvsim_pv_shards_written of each pvsim-pv; bal s: seconds from the publisher's start "
          "until balanced; us/row: CPU microseconds (utime + stime) per row written (by all "
          "the pvsim-pv), of each process; pv, beams: the sums; total: every process; "
          "host/other: cores busy on the host / busy outside "
          "this bench's processes, in the window; backlog: readings published and not yet written "
          "over the window (the publisher stops at a cap of max(1,000,000, 20 x meters)); "
          "pvRSS: each pvsim-pv's peak RSS in the window; once: every reading published is in "
          "the CSVs exactly once or still queued.")
    for r in results:
        if "error" in r:
            continue
        c = r["check"]
        print(f"  {r['meters']:,} meters x {r['pv']} pv: {r['published']:,} published = "
              f"{c['rows']:,} written + {r['queued_after']:,} queued at the end "
              f"({'equal' if r['published'] == c['rows'] + r['queued_after'] else 'NOT equal'}), "
              f"{c['duplicates']} duplicate rows, {c['incomplete_instants']} incomplete "
              f"shard-instants, {r['dead_letters']} dead letters, {r['duplicates_dropped_metric']:.0f} "
              f"redeliveries dropped, {r['takeovers']:.0f} takeovers; publisher at most "
              f"{fmt(r['publisher_max_per_s'], ',.0f')} readings/s when publishing, idle "
              f"{fmt(100 * (r['publisher_idle_share'] or 0), '.0f')} % of the window; "
              f"backlog {r['backlog_readings'][0]:,} -> {r['backlog_readings'][-1]:,}; "
              f"cores used: " + ", ".join(f"{k} {v:.2f}" for k, v in r["cores"].items())
              + "; RSS MB start/end: " + ", ".join(
                  f"{k} {r['rss_start_mb'][k]:.0f}/{r['rss_end_mb'][k]:.0f}" for k in r["rss_end_mb"])
              + f"; step {r['step_s']:.0f} s")
    if gauges:
        print(f"per-meter gauges of pvsim-pv (4 per meter), {gauges['meters']:,} meters: "
              f"{gauges['rss_mb']:.0f} MB ({gauges['bytes_per_meter']:,.0f} bytes per meter), "
              f"{gauges['create_us_per_meter']:.1f} us per new meter, "
              f"{gauges['gauge_sets_us_per_row']:.2f} us per row for the 4 sets "
              f"(+ {gauges['lag_observe_us_per_row']:.2f} us for the lag histogram); a /metrics "
              f"scrape: {gauges['scrape_mb']:.1f} MB in {gauges['scrape_s']:.2f} s")
    print(f"run took {elapsed:.0f} s")


# ---- main ---------------------------------------------------------------------------------------

def _raise_interrupt(*_):
    raise KeyboardInterrupt


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_publish":
        return publisher_main(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    if len(sys.argv) > 1 and sys.argv[1] == "_gauges":
        return gauges_main(int(sys.argv[2]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--meters", default="10000,100000", help="meter counts (default 10000,100000)")
    p.add_argument("--pv", default="1,2,3", help="pvsim-pv counts (default 1,2,3)")
    p.add_argument("--window", type=float, default=20.0, help="measured seconds (default 20)")
    p.add_argument("--quick", action="store_true", help="2,000 meters, 1 and 2 pv, 8-s window")
    p.add_argument("--keep", action="store_true", help="keep the logs (the CSVs are removed)")
    p.add_argument("--prefetch", type=int, help="broker.prefetch of the pvsim-pv (default: "
                   "pvsim's, 1000 messages per shard consumer)")
    p.add_argument("--json", action="store_true", help="also print every figure as JSON")
    args = p.parse_args()
    if args.quick:
        meters, pvs, window = [2000], [1, 2], 8.0
    else:
        meters = [int(m) for m in args.meters.split(",")]
        pvs = [int(k) for k in args.pv.split(",")]
        window = args.window
    from tests.support import rig
    why = rig.available()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _raise_interrupt)
    began = time.monotonic()
    facts = host_facts()
    root = Path(tempfile.mkdtemp(prefix="pvsim-bench-fleet-"))
    cluster = None
    results: list[dict] = []
    templates: dict[int, dict] = {}
    gauges = None
    failed = False
    try:
        print(f"per-meter gauges: measuring with {max(meters):,} meters ...", flush=True)
        out = subprocess.run([PYTHON, str(Path(__file__).resolve()), "_gauges", str(max(meters))],
                             cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                             capture_output=True, text=True, timeout=600)
        gauges = json.loads(out.stdout) if out.returncode == 0 else None
        print(f"building message bodies for {', '.join(f'{m:,}' for m in meters)} meters ...",
              flush=True)
        paths = {}
        for n in meters:
            paths[n] = root / f"bodies-{n}.pickle"
            templates[n] = build_templates(n, paths[n])
        print("starting a 3-node RabbitMQ cluster ...", flush=True)
        cluster = rig.Cluster(root / "rig", nodes=3)
        cluster.start()
        for n in meters:
            for k in pvs:
                print(f"step: {n:,} meters, {k} pvsim-pv, {window:g} s window ...", flush=True)
                step = Step(root, cluster, n, k, paths[n], templates[n], args.prefetch)
                try:
                    r = step.run(window)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    failed = True
                    r = {"meters": n, "pv": k, "error": str(exc).splitlines()[0][:200]}
                    print(f"  failed: {exc}", file=sys.stderr)
                finally:
                    step.cleanup(args.keep)
                results.append(r)
                if "error" not in r:
                    print(f"  {r['rows_per_s']:,.0f} rows/s, shards {r['shards_metric']}, "
                          f"exactly once: {r['exactly_once']}", flush=True)
    except KeyboardInterrupt:
        failed = True
        print("interrupted; cleaning up", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleanup is not interrupted twice
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if cluster is not None:
            cluster.close(keep_logs=args.keep)
        if args.keep:
            for pickled in root.glob("bodies-*.pickle"):
                pickled.unlink()
            print(f"logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if results:
        print_table(facts, gauges, templates, results, time.monotonic() - began, args.prefetch)
        if args.json:
            print(json.dumps({"host": facts, "gauges": gauges, "bodies": templates,
                              "steps": results}, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
