"""Benchmark: JOI compare-all over a month of 1-second readings of one meter.

    PYTHONPATH=. python3 bench/bench_joi.py [--days 30] [--keep DIR]

Writes the month's daily CSVs (pvsim's exact row format, ~2.6 million rows) into a temporary
directory, then times GET /price-plans/compare-all through JoiApi:
- first: no aggregate files yet, every day is read from its CSV (and its aggregate persisted);
- cold: a new JoiApi on the same directory, as after a restart: the aggregates come from disk;
- warm: the same JoiApi again (median of repeats);
plus a window cutting through two days (read from their CSVs) and a page of /readings/read.
The requirement is compare-all over the month in under 200 ms after a restart.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pvsim import config
from pvsim.api.joi import JoiApi
from pvsim.model.pvcurve import PvCurve
from pvsim.pipeline.csvformat import HEADER, file_name
from pvsim.pipeline.pvservice import Outcome

METER = "smart-meter-0"


def generate(directory: Path, first: dt.date, days: int, tz) -> int:
    """One meter's readings every second of `days` local days, as pvsim-pv writes them."""
    chart = PvCurve(tz)
    rnd = random.Random(1)
    rows = 0
    for n in range(days):
        day = first + dt.timedelta(days=n)
        start = int(dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp())
        end = int(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz).timestamp())
        lines = [HEADER + "\n"]
        moment = dt.datetime.fromtimestamp(start, tz)
        for t in range(start, end):
            local = moment + dt.timedelta(seconds=t - start)
            sec = (t - start) % 86400
            pv = round(chart.clear_sky_kw(sec), 4)
            kw = round(max(0.0, 1.5 + 2.5 * math.sin(math.pi * sec / 86400)
                           + rnd.uniform(-0.3, 0.3)), 4)
            lines.append(f"{local.isoformat()},{METER},{kw * 1000:.1f},{kw:.4f},{pv:.4f},"
                         f"{kw - pv + 0.0:.4f}\n")
        (directory / file_name(day)).write_text("".join(lines))
        rows += end - start
    return rows


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--first", type=dt.date.fromisoformat, default=dt.date(2024, 5, 1))
    ap.add_argument("--keep", type=Path, help="write the data here and keep it")
    args = ap.parse_args()
    cfg = dataclasses.replace(config.Config(), timezone="Europe/Madrid")
    directory = args.keep or Path(tempfile.mkdtemp(prefix="pvsim-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        began = time.perf_counter()
        rows = generate(directory, args.first, args.days, cfg.tz)
        print(f"generated {rows:,} readings of {METER} over {args.days} days "
              f"({sum(p.stat().st_size for p in directory.glob('*.csv')) / 1e6:.0f} MB of CSV) "
              f"in {time.perf_counter() - began:.1f} s")

        def no_ingest(readings):
            return Outcome()

        def compare(api, query=None):
            code, body = api("GET", f"/price-plans/compare-all/{METER}", query or {}, b"")
            assert code == 200, body
            return body

        api = JoiApi(cfg, directory, no_ingest)
        t_first, body = timed(lambda: compare(api))
        print(f"compare-all, first ever (all {args.days} days read from CSV, aggregates written): "
              f"{t_first * 1000:8.1f} ms")
        restarted = JoiApi(cfg, directory, no_ingest)
        t_cold, cold = timed(lambda: compare(restarted))
        assert cold == body, "the aggregates on disk must give the same answer"
        print(f"compare-all, cold (after a restart, aggregates on disk):            "
              f"{t_cold * 1000:8.1f} ms   {'OK' if t_cold < 0.2 else 'OVER'} (< 200 ms)")
        t_warm, _ = timed(lambda: compare(restarted), repeat=20)
        print(f"compare-all, warm (median of 20):                                    {t_warm * 1000:8.1f} ms")
        mid = args.first + dt.timedelta(days=args.days // 2)
        window = {"from": [f"{mid}T12:00:00"], "to": [f"{mid + dt.timedelta(days=3)}T12:00:00"]}
        t_win, _ = timed(lambda: compare(restarted, window), repeat=3)
        print(f"compare-all, window cutting two days (read from their CSVs):         {t_win * 1000:8.1f} ms")
        t_read, page = timed(
            lambda: restarted("GET", f"/readings/read/{METER}", {"limit": ["10000"]}, b""), 3)
        print(f"read, a page of {len(page[1]):,} readings:"
              f"                                  {t_read * 1000:8.1f} ms")
        e = body["energyBalance"]
        print(f"month: {e['readings']:,} readings, consumed {e['consumedKwh']:.1f} kWh, "
              f"PV {e['pvKwh']:.1f} kWh, import {e['gridImportKwh']:.1f} kWh, "
              f"export {e['gridExportKwh']:.1f} kWh; "
              f"costs {body['pricePlanComparisons']}")
        return 0 if t_cold < 0.2 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
