"""Benchmark: sparse readings POSTed newest first (issue 18, 6), the exactly-once memory's cost.

    PYTHONPATH=. python3 bench/bench_exactly_once.py [--readings 100000] [--posts 2]

POSTs `--posts` times `--readings` isolated readings of one meter (`--step` s apart, so no two
touch; 30 s: 35 days a POST), newest first, each POST older than the one before, through the
JOI API into a real PvService and CsvSink in a temporary directory, in chunks of 5,000 as
pvsim-pv's ingest takes them (fsync after each POST). Prints per POST the seconds it took, the
size of the exactly-once memory (`PvService.written`, measured object by object) and the memory
pvsim holds in all after it (tracemalloc, after a collection: the store's caches too), so the
figures can be compared with another tree (PYTHONPATH=that tree). Before issue 18 each insert
shifted every range after it (RangeSet.add at index 0) and the memory of every day was kept for
ever.

Measured on the development VM (2 cores, other tests running), defaults (2 x 100,000, 30 s apart):

| tree | POST 1 | POST 2 | exactly-once memory after 1 / 2 | all held after 1 / 2 / a query |
|---|---|---|---|---|
| before (0bebc43) | 16.7 s | 34.3 s | 4.8 / 9.6 MB | 37.4 / 42.2 / 23.4 MB |
| after | 1.6 s | 1.9 s | 1.2 / 1.1 MB | 33.9 / 33.9 / 15.1 MB |

(The rest of what is held is the store's journal and queue, bounded by their lengths.)
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pvsim
from pvsim import config
from pvsim.api.joi import JoiApi
from pvsim.model.pvcurve import PvCurve
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.pvservice import Outcome, PvService

CHUNK = 5000  # daemons.ingest.INGEST_CHUNK
NEWEST = 1_780_000_000  # 2026-05-28


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=2)
    parser.add_argument("--step", type=int, default=30)
    args = parser.parse_args(argv)
    print(f"{args.posts} POSTs of {args.readings:,} isolated readings of one meter, newest "
          f"first (pvsim from {Path(pvsim.__file__).parent})")
    for traced in (False, True):  # times without tracemalloc (it slows Python down), then memory
        run(args, traced)
    return 0


def run(args: argparse.Namespace, traced: bool) -> None:
    directory = Path(tempfile.mkdtemp(prefix="pvsim-bench-"))
    try:
        cfg = config.Config()
        service = PvService.recovering(PvCurve(cfg.tz), CsvSink(directory), cfg.tz)

        def ingest(readings):
            outcome = Outcome()
            for start in range(0, len(readings), CHUNK):
                part = service.process(readings[start:start + CHUNK])
                outcome.written += part.written
                outcome.duplicates += part.duplicates
            service.sync()
            return outcome

        api = JoiApi(cfg, directory, ingest, now=lambda: NEWEST + 60)
        service.listeners.append(api.on_row)
        if traced:
            tracemalloc.start()
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        newest = NEWEST
        for k in range(args.posts):
            times = range(newest, newest - args.step * args.readings, -args.step)
            body = json.dumps({"smartMeterId": "sparse", "electricityReadings": [
                {"time": t, "reading": 0.5} for t in times]}).encode()
            started = time.perf_counter()
            status, answer = api("POST", "/readings/store", {}, body)
            took = time.perf_counter() - started
            assert status == 200, answer
            if traced:
                gc.collect()
                held = tracemalloc.get_traced_memory()[0] - base
                print(f"POST {k + 1}: memory held afterwards {held / 1e6:6.1f} MB in all (tracemalloc)")
            else:
                print(f"POST {k + 1}: {took:6.2f} s; exactly-once memory "
                      f"{deep_size(service.written) / 1e6:5.1f} MB")
            newest -= args.step * args.readings
        del body
        answer = api("GET", "/price-plans/compare-all/sparse", {}, b"")
        assert answer[0] == 200 and answer[1]["energyBalance"]["readings"] == args.posts * args.readings
        if traced:
            gc.collect()
            print(f"after a compare-all: memory held "
                  f"{(tracemalloc.get_traced_memory()[0] - base) / 1e6:.1f} MB (tracemalloc)")
            tracemalloc.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def deep_size(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of an object and of everything it holds (dicts, lists, sets, slotted objects)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        size += sum(deep_size(x, seen) for x in obj)
    else:
        for name in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, name):
                size += deep_size(getattr(obj, name), seen)
    return size


if __name__ == "__main__":
    sys.exit(main())
