"""Old days removed: months unattended must not fill the disk.

A day older than output.retention_days (counted back from today, in the plant's time zone) loses
its CSVs (every shard's, `csvformat.all_day_files`), their aggregate files, and what the services
(their exactly-once memory and sinks) and the store hold of it in memory, once nothing was
written to its files for as long either: the cutoff applies to the day and to its files'
modification times. So live readings go retention_days after their day, and readings a client
posted for a long-past day are kept retention_days from when they were posted: an accepted
reading is never removed behind the client's back at the next start (the JOI spec's own example
is from 2020). What a client can create in all is bounded by the API (`api.joi`: a horizon for
the future, a cap on the days with data), not here. 0 keeps everything. pvsim-pv runs this at
start and then hourly, under the lock it writes with, so no row is being appended to a file while
it is removed. The sinks are asked for each run (`sinks`): a fleet's pvsim-pv writes the shards
it holds at the time, and that set changes. Another pvsim-pv sharing the directory may remove the
same files first: a file already gone is no error, and its store forgets the day when it finds it gone.
Only regular files are removed: anything else named like a day's file (a symbolic link, a
directory, a FIFO) is left where it is, its path logged once (csvsink.NotRegularFile), and
nothing is ever removed through a link.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pvsim.model.clock import local_midnight
from pvsim.pipeline.csvformat import agg_name, all_day_files
from pvsim.pipeline.csvsink import CsvSink, NotRegularFile, check_regular
from pvsim.store.shardedstore import Store

if TYPE_CHECKING:
    from pvsim.pipeline.pvservice import PvService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Removed:
    days: int = 0
    bytes: int = 0
    files: int = 0  # CSV files: one a day, or one a day and shard
    kept: int = 0   # days before the cutoff kept because their files were written since


class Retention:
    def __init__(self, directory: str | Path, keep_days: int, tz: ZoneInfo, *,
                 sinks: Callable[[], Iterable[CsvSink]] | None = None,
                 services: Callable[[], Iterable[PvService]] | None = None,
                 store: Store | None = None,
                 today: Callable[[], dt.date] | None = None) -> None:
        self.directory, self.keep_days, self.tz = Path(directory), keep_days, tz
        self.sinks, self.services, self.store = sinks, services, store
        self._today = today or (lambda: dt.datetime.now(self.tz).date())

    def cutoff(self) -> dt.date:
        """The oldest day kept."""
        return self._today() - dt.timedelta(days=self.keep_days)

    def run(self) -> Removed:
        """Remove every day before the cutoff; a file that cannot be removed is logged and
        tried again next time (it never stops the daemon)."""
        if self.keep_days <= 0:
            return Removed()
        cutoff, days, files, size, kept = self.cutoff(), 0, 0, 0, 0
        since = local_midnight(cutoff, self.tz)  # a file written after this is kept
        old = itertools.takewhile(lambda f: f[0] < cutoff, all_day_files(self.directory))  # oldest first
        for day, of_day in itertools.groupby(old, key=lambda f: f[0]):
            group = list(of_day)
            if any(_mtime(path) >= since for _, _, path in group):
                kept += 1  # posted (or written late) within the window: kept as long again
                continue
            for service in self.services() if self.services is not None else ():
                service.forget(day)  # its memory of the day dropped: a re-sent reading is written
            for sink in self.sinks() if self.sinks is not None else ():
                sink.forget(day)  # its file closed before it goes; a late row starts a new one
            sizes = [self._remove(day, shard, path) for _, shard, path in group]
            removed = [n for n in sizes if n is not None]
            if not removed:
                continue
            if self.store is not None:
                self.store.forget(day)
            days, files, size = days + 1, files + len(removed), size + sum(removed)
        self._forget_gone(cutoff)
        if days:
            log.info("retention: removed %d days before %s (%d files, %.1f MB) from %s", days,
                     cutoff, files, size / 1e6, self.directory)
        if kept:
            log.info("retention: kept %d days before %s whose files were written since", kept, cutoff)
        return Removed(days, size, files, kept)

    def _forget_gone(self, cutoff: dt.date) -> None:
        """Drop what the services remember of old days whose files are gone: another pvsim-pv
        sharing the directory (a fleet) may have removed them first, and a reading of such a
        day sent again must be written again, not dropped as a duplicate."""
        for service in self.services() if self.services is not None else ():
            for day in [d for d in service.written if d < cutoff]:
                if not os.path.lexists(service.sink.path_for(day)):
                    service.forget(day)

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


def _mtime(path: Path) -> float:
    """When a day's file was last written (a link's own time: it is not followed); 0 when gone."""
    try:
        return os.stat(path, follow_symlinks=False).st_mtime
    except OSError:
        return 0.0
