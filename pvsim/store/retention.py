"""Old days removed: months unattended must not fill the disk.

A day older than output.retention_days (counted back from today, in the plant's time zone) loses
its CSVs (every shard's, `csvsink.all_day_files`), their aggregate files, and what the sinks and
the store hold of it in memory. 0 keeps everything. pvsim-pv runs this at start and then hourly,
under the lock it writes with, so no row is being appended to a file while it is removed. The
sinks are asked for each run (`sinks`): a fleet's pvsim-pv writes the shards it holds at the
time, and that set changes. Another pvsim-pv sharing the directory may remove the same files
first: a file already gone is no error, and its store forgets the day when it finds it gone.
Only regular files are removed: anything else named like a day's file (a symbolic link, a
directory, a FIFO) is left where it is, its path logged once (csvsink.NotRegularFile), and
nothing is ever removed through a link.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from pvsim.pipeline.csvsink import CsvSink, NotRegularFile, all_day_files, check_regular
from pvsim.store.readingstore import agg_name
from pvsim.store.shardedstore import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Removed:
    days: int = 0
    bytes: int = 0
    files: int = 0  # CSV files: one a day, or one a day and shard


class Retention:
    def __init__(self, directory: str | Path, keep_days: int, tz: ZoneInfo, *,
                 sinks: Callable[[], Iterable[CsvSink]] | None = None,
                 store: Store | None = None,
                 today: Callable[[], dt.date] | None = None) -> None:
        self.directory, self.keep_days, self.tz = Path(directory), keep_days, tz
        self.sinks, self.store = sinks, store
        self._today = today or (lambda: dt.datetime.now(self.tz).date())

    def cutoff(self) -> dt.date:
        """The oldest day kept."""
        return self._today() - dt.timedelta(days=self.keep_days)

    def run(self) -> Removed:
        """Remove every day before the cutoff; a file that cannot be removed is logged and
        tried again next time (it never stops the daemon)."""
        if self.keep_days <= 0:
            return Removed()
        cutoff, days, files, size = self.cutoff(), 0, 0, 0
        old = itertools.takewhile(lambda f: f[0] < cutoff, all_day_files(self.directory))  # oldest first
        for day, group in itertools.groupby(old, key=lambda f: f[0]):
            for sink in self.sinks() if self.sinks is not None else ():
                sink.forget(day)  # its file closed before it goes; a late row starts a new one
            sizes = [self._remove(day, shard, path) for _, shard, path in group]
            removed = [n for n in sizes if n is not None]
            if not removed:
                continue
            if self.store is not None:
                self.store.forget(day)
            days, files, size = days + 1, files + len(removed), size + sum(removed)
        if days:
            log.info("retention: removed %d days before %s (%d files, %.1f MB) from %s", days,
                     cutoff, files, size / 1e6, self.directory)
        return Removed(days, size, files)

    def _remove(self, day: dt.date, shard: int | None, path: Path) -> int | None:
        """Remove a day's CSV (of a shard) and its aggregate; its size, None if it stays."""
        try:
            st = check_regular(path)
            if st is None:
                return None
            size = st.st_size
            path.unlink()  # unlink(2) never follows a link
            (self.directory / agg_name(day, shard)).unlink(missing_ok=True)
        except NotRegularFile:  # logged once: the operator's to remove
            return None
        except FileNotFoundError:
            return None  # another pvsim-pv sharing the directory was first
        except OSError as exc:
            log.warning("retention: cannot remove %s: %s", path, exc.strerror or exc)
            return None
        return size
