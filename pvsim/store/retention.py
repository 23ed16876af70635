"""Old days removed: months unattended must not fill the disk.

A day older than output.retention_days (counted back from today, in the plant's time zone) loses
its CSV, its aggregate file, and what the sink and the store hold of it in memory. 0 keeps
everything. pvsim-pv runs this at start and then hourly, under the lock it writes with, so no
row is being appended to a file while it is removed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from pvsim.pipeline.csvsink import CsvSink, day_files
from pvsim.store.readingstore import ReadingStore, agg_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Removed:
    days: int = 0
    bytes: int = 0


class Retention:
    def __init__(self, directory: str | Path, keep_days: int, tz: ZoneInfo, *,
                 sink: CsvSink | None = None, store: ReadingStore | None = None,
                 today: Callable[[], dt.date] | None = None) -> None:
        self.directory, self.keep_days, self.tz = Path(directory), keep_days, tz
        self.sink, self.store = sink, store
        self._today = today or (lambda: dt.datetime.now(self.tz).date())

    def cutoff(self) -> dt.date:
        """The oldest day kept."""
        return self._today() - dt.timedelta(days=self.keep_days)

    def run(self) -> Removed:
        """Remove every day before the cutoff; a file that cannot be removed is logged and
        tried again next time (it never stops the daemon)."""
        if self.keep_days <= 0:
            return Removed()
        cutoff, days, size = self.cutoff(), 0, 0
        for day, path in day_files(self.directory):
            if day >= cutoff:
                break  # oldest first
            if self.sink is not None:
                self.sink.forget(day)
            try:
                size += path.stat().st_size
                path.unlink()
                (self.directory / agg_name(day)).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("retention: cannot remove %s: %s", path, exc.strerror or exc)
                continue
            if self.store is not None:
                self.store.forget(day)
            days += 1
        if days:
            log.info("retention: removed %d days before %s (%.1f MB) from %s", days, cutoff,
                     size / 1e6, self.directory)
        return Removed(days, size)
