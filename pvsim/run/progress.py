"""A run's progress: a batch listener that counts the rows written, and the bar that shows them.

Each process of a run (the only one, or each worker) counts its own rows with `reporter` and
tells `report(rows, last instant)` (pvsim.run.workers); `ProgressBar.draw` shows the sum of every
process's rows and where each is in simulated time, on stderr (pvsim-run draws it on a terminal
only).
"""

from __future__ import annotations

import datetime as dt
import sys
from zoneinfo import ZoneInfo

from pvsim.pipeline.csvformat import Row
from pvsim.pipeline.pvservice import BatchListener
from pvsim.run.workers import Report

REPORTS = 200  # a process reports every 0.5 % of its rows


def reporter(total: int, report: Report) -> BatchListener:
    """A batch listener telling `report(rows, last instant)` every 1/REPORTS of the `total` rows
    (and at the last one)."""
    every = max(1, total // REPORTS)
    count, due = 0, every

    def update(rows: list[Row]) -> None:
        nonlocal count, due
        count += len(rows)
        if count >= due or count >= total:
            report(count, rows[-1][2])
            due = count + every
    return update


class ProgressBar:
    """The progress bar on stderr: the share of the run's rows written, and where each process
    of the run is in simulated time."""

    def __init__(self, total: int, tz: ZoneInfo) -> None:
        self.total, self.tz = max(1, total), tz

    def draw(self, rows: list[int], instants: list[int]) -> None:
        """Redraw the bar over itself: `rows` done and last `instants` of each process."""
        done = sum(rows) / self.total
        bar = "#" * int(done * 40)
        where = "  ".join(f"{dt.datetime.fromtimestamp(t, self.tz):%Y-%m-%d %H:%M}"
                          for t in instants if t)
        sys.stderr.write(f"\r[{bar:<40}] {done:6.1%} {where}")
        sys.stderr.flush()

    def end(self) -> None:
        """Leave the bar's line: what is written next starts on a line of its own."""
        sys.stderr.write("\n")
