"""The readings the pipeline wrote, read back from the daily CSVs: by meter and window, paged, and
as energy per local day, fast enough to price a month of 1-second readings in milliseconds.

The daily CSV files are the store (they survive restarts and are what the pipeline made durable);
this module adds an index over them, one `aggregates.MeterDay` per (local day, meter):

- A store reads one shard's files (`shard`: `pvsim-YYYY-MM-DD.sNN.csv`) or, without one, the
  files of a directory without shards (`pvsim-YYYY-MM-DD.csv`); `shardedstore` puts one per
  shard behind the face of one.
- Days are loaded lazily. A complete past day's aggregate is persisted beside its CSV as
  `.pvsim-YYYY-MM-DD.agg.json` (`.pvsim-YYYY-MM-DD.sNN.agg.json` for a shard), stamped with the
  CSV's size and mtime; it is used only while both still match (otherwise the day is rebuilt from
  the CSV and the file rewritten), so a month of past days loads from 30 small JSON files after a
  restart.
- New rows arrive through `on_row(row, nbytes)`, the PvService listener (the row and the length
  of its line, from the writer). It only queues them (no I/O, never blocks the pipeline for
  long); every query first applies the queue to the days in memory. A row that arrives out of
  order for its (day, meter) marks the day for a rebuild. The last rows seen are kept in a
  journal and merged whenever a day is read from its CSV, so a row that the sink has appended but
  not yet flushed is never missed; an instant already in the day is never counted twice
  (duplicates in a CSV are ignored too).
- Other processes may append to the same files (a fleet's pvsim-pv processes, possibly on other
  hosts, each write some shards and answer for every meter). A day in memory knows the bytes of
  its CSV it has read (`read_to`) and the bytes it accounts for (`nbytes`: those, plus this
  process's own rows, counted when they arrive, before they are flushed). Every query stats the
  CSV of each day it touches: a file larger than `nbytes` holds rows from elsewhere, and the
  complete lines past `read_to` are read and their new instants added in order (a row earlier
  than its meter's last, or any row for a day loaded from its aggregate, rebuilds the day). A
  file that shrank was replaced (the day is rebuilt); one that is gone was removed by another
  process's retention (the day is forgotten). Own rows still in the sink's buffer can hide
  another process's rows of the same size until the next sync; they are never lost, because
  reading resumes at `read_to`, not at `nbytes`.
- A window's energy is `aggregates.combine` over the days it touches: whole days from their
  aggregates, the days it cuts through from their samples.
- A day whose CSV is not a regular file (a symbolic link, a directory, a FIFO: never followed,
  never read, never waited on) is a storage fault of that day only: a query whose window
  touches it raises csvsink.NotRegularFile naming the path (the API answers 503), while every
  other day answers as before (a window next to it is priced as if the day had no file: without
  the segment from its last reading); `meters` and `has_meter` pass over it. An aggregate file
  that is not a regular file is ignored and never replaced.

Windows are half-open, [start, end) in epoch seconds; None is unbounded.

Over 350 lines (a third of them this docstring) because it is one class, `ReadingStore`, whose
methods all share the days in memory, the journal and one lock: split, each part would need
the others' private state.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from pvsim.model.clock import local_midnight
from pvsim.model.energy import EnergyBalance
from pvsim.pipeline.csvformat import HEADER_LINE, Row, agg_name, day_files, file_name, parse_sample
from pvsim.pipeline.csvsink import NotRegularFile, check_regular, open_regular
from pvsim.store.aggregates import DayPart, MeterDay, NEVER_AFTER, NEVER_BEFORE, Sample, combine

log = logging.getLogger(__name__)

AGG_VERSION = 2  # 2: peaks included
DRAIN_AT = 5_000          # queued rows that make on_row apply the queue itself (if the store is free)
PENDING_CAP = 500_000     # queued rows beyond which the oldest are dropped and their day rebuilt
_Journaled = tuple[Row, int]  # a row as on_row heard of it, and the length of its line


@dataclass
class _Day:
    """A day in memory: its meters, how many bytes of its CSV they account for (own rows
    included, flushed or not) and how far its CSV was read (where another process's rows start)."""

    meters: dict[str, MeterDay] = field(default_factory=dict)
    nbytes: int = 0
    read_to: int = 0
    dirty: bool = True  # changed since it was loaded or persisted


class ReadingStore:
    """Readings and per-day energy of the meters in a directory of daily CSVs (of one shard,
    with `shard`), thread-safe."""

    def __init__(self, directory: str | Path, tz: ZoneInfo, max_gap_seconds: float = 3600.0, *,
                 persist: bool = True, journal_rows: int = 20_000,
                 today: Callable[[], dt.date] | None = None, shard: int | None = None) -> None:
        self.directory, self.shard = Path(directory), shard
        self.tz, self.max_gap, self.persist = tz, float(max_gap_seconds), persist
        self._today = today or (lambda: dt.datetime.now(self.tz).date())
        self._lock = threading.RLock()      # the store's state; held by queries
        self._in_lock = threading.Lock()    # the queue only; held by on_row for microseconds
        self._pending: deque[_Journaled] = deque()
        self._overflowed: set[dt.date] = set()
        self._recent: deque[_Journaled] = deque(maxlen=max(1, journal_rows))
        # The journal's rows by day, so a day's are found without a scan of the whole journal
        # (per day read, that was quadratic: 18,300 days posted made one query take 10 s).
        self._recent_by_day: dict[dt.date, deque[_Journaled]] = {}
        self._days: dict[dt.date, _Day] = {}
        self._stale: set[dt.date] = set()

    # -- input --

    def on_row(self, row: Row, nbytes: int) -> None:
        """PvService listener: queue a new row (and the length of its line); never does I/O."""
        with self._in_lock:
            self._pending.append((row, nbytes))
            if len(self._pending) > PENDING_CAP:
                self._overflowed.add(self._pending.popleft()[0].day)
            big = len(self._pending) >= DRAIN_AT
        if big and self._lock.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self._lock.release()

    def _drain(self) -> None:
        with self._in_lock:
            items, self._pending = self._pending, deque()
            overflowed, self._overflowed = self._overflowed, set()
        self._stale |= overflowed
        for item in items:
            self._remember(item)
            row, nbytes = item
            day = row.day
            loaded = self._days.get(day)
            if loaded is None or day in self._stale:
                continue
            md = loaded.meters.get(row.meter_id)
            if md is None:
                md = loaded.meters[row.meter_id] = MeterDay(self.max_gap)
            if row.instant in md.instants:
                continue  # read from the CSV already
            if md.add(row.instant, row.meter_kw, row.pv_kw):
                loaded.nbytes += nbytes
                loaded.dirty = True
            else:
                self._stale.add(day)

    # -- queries --

    def meters(self) -> set[str]:
        """Every meter with at least one reading."""
        with self._lock:
            self._drain()
            found: set[str] = set()
            for day in self._all_days():
                try:
                    loaded = self._day(day)
                except NotRegularFile:  # logged; its meters are found in their other days
                    continue
                found.update(m for m, md in loaded.meters.items() if md.first is not None)
            return found

    def has_meter(self, meter_id: str) -> bool:
        with self._lock:
            self._drain()
            refused: NotRegularFile | None = None
            for day in reversed(self._all_days()):
                try:
                    md = self._day(day).meters.get(meter_id)
                except NotRegularFile as exc:  # found elsewhere, or the answer is unknown
                    refused = refused or exc
                    continue
                if md is not None and md.first is not None:
                    return True
            if refused is not None:
                raise refused
            return False

    def energy_by_day(self, meter_id: str, start: int | None = None,
                      end: int | None = None) -> dict[dt.date, EnergyBalance]:
        """Energy per local day of one meter's readings in [start, end)."""
        with self._lock:
            self._drain()
            lookback = dt.timedelta(days=math.ceil(self.max_gap / 82_800) + 1)  # 23-hour days
            lo = self._date(start) - lookback if start is not None else None
            hi = self._date(end - 1) + lookback if end is not None else None
            parts = []
            for day in self._all_days():
                if (lo is not None and day < lo) or (hi is not None and day > hi):
                    continue
                if (loaded := self._day_in(day, start, end)) is None:
                    continue
                md = loaded.meters.get(meter_id)
                if md is None or md.first is None or md.last is None:
                    continue
                first, last = md.first, md.last
                d_start = local_midnight(day, self.tz)
                d_end = local_midnight(day + dt.timedelta(days=1), self.tz)
                s = start if start is not None else NEVER_BEFORE
                e = end if end is not None else NEVER_AFTER
                if s <= first[0] and last[0] < e and s <= d_start and d_end <= e:
                    parts.append(DayPart(day, first, last, md=md))
                elif last[0] < s or first[0] >= e:
                    parts.append(DayPart(day, first, last, inside=False))
                else:
                    parts.append(DayPart(day, first, last, samples=self._samples(day, meter_id)))
            result = combine(parts, self.tz, self.max_gap, start, end)
            self._persist_ready()
            return result

    def readings(self, meter_id: str, start: int | None = None, end: int | None = None,
                 limit: int = 10_000) -> list[tuple[int, float]]:
        """(instant, meter kW) of one meter in [start, end), oldest first, at most `limit`."""
        with self._lock:
            self._drain()
            out: list[tuple[int, float]] = []
            s = start if start is not None else NEVER_BEFORE
            e = end if end is not None else NEVER_AFTER
            for day in self._all_days():
                if len(out) >= limit:
                    break
                if (start is not None and day < self._date(start) - dt.timedelta(days=1)) or \
                        (end is not None and day > self._date(end - 1) + dt.timedelta(days=1)):
                    continue
                if (loaded := self._day_in(day, start, end)) is None:
                    continue
                md = loaded.meters.get(meter_id)
                if md is None or md.first is None or md.last is None or md.last[0] < s or md.first[0] >= e:
                    continue
                out.extend((t, m) for t, m, _ in self._samples(day, meter_id) if s <= t < e)
            self._persist_ready()
            return out[:limit]

    def forget(self, day: dt.date) -> None:
        """Drop what memory holds of a day whose files were removed (retention)."""
        with self._lock:
            self._drain()
            self._days.pop(day, None)
            self._stale.discard(day)
            if self._recent_by_day.pop(day, None) is not None:
                self._recent = deque((r for r in self._recent if r[0].day != day), maxlen=self._recent.maxlen)

    # -- days --

    def _date(self, instant: int) -> dt.date:
        return dt.datetime.fromtimestamp(instant, self.tz).date()

    def _all_days(self) -> list[dt.date]:
        days = {day for day, _ in day_files(self.directory, self.shard)}
        days.update(self._days)
        return sorted(days)

    def _day(self, day: dt.date) -> _Day:
        loaded = self._days.get(day)
        if loaded is not None and day not in self._stale:
            size = _stat(self._csv(day))
            if size is None:  # removed by another process's retention
                self.forget(day)
                return _Day()
            if self._caught_up(day, loaded, size[0]):
                return loaded
            self._stale.add(day)
        if day in self._stale:
            loaded = self._build(day)
            self._stale.discard(day)
        else:
            loaded = self._load_agg(day) or self._build(day)
        self._days[day] = loaded
        return loaded

    def _day_in(self, day: dt.date, start: int | None, end: int | None) -> _Day | None:
        """`_day` for a query of [start, end): None for a day whose CSV is refused but which lies
        wholly outside the window (a neighbour looked at for the window's edges, priced as if
        it had no file); NotRegularFile for one inside it."""
        try:
            return self._day(day)
        except NotRegularFile:
            if ((start is not None and local_midnight(day + dt.timedelta(days=1), self.tz) <= start)
                    or (end is not None and local_midnight(day, self.tz) >= end)):
                return None
            raise

    def _caught_up(self, day: dt.date, loaded: _Day, size: int) -> bool:
        """Add the rows other processes appended to a day's CSV since it was read (the complete
        lines past `read_to`; an instant held already is skipped, so own rows flushed meanwhile
        count once). Nothing to read while the file is no larger than `nbytes`: always so for a
        file only this process writes. False when the day must be rebuilt instead: a row earlier
        than its meter's last, a day loaded from its aggregate, or a file that shrank."""
        if size <= loaded.nbytes:
            return size >= loaded.read_to
        per_meter, end = self._read_csv(day, offset=loaded.read_to)
        for meter, samples in per_meter.items():
            md = loaded.meters.get(meter)
            if md is None:
                md = loaded.meters[meter] = MeterDay(self.max_gap)
            if not md.add_many(sorted(samples)):
                return False
        loaded.dirty = loaded.dirty or bool(per_meter)
        # What nbytes counted beyond the bytes now read is own rows the file may not hold yet;
        # this keeps at most that, never more, so no later append of another process is hidden.
        loaded.read_to, loaded.nbytes = end, max(end, loaded.nbytes)
        return True

    def _csv(self, day: dt.date) -> Path:
        return self.directory / file_name(day, self.shard)

    def _agg(self, day: dt.date) -> Path:
        return self.directory / agg_name(day, self.shard)

    def _load_agg(self, day: dt.date) -> _Day | None:
        if not self.persist:
            return None
        st = check_regular(self._csv(day))  # NotRegularFile: the day's fault
        if st is None:
            return None
        try:
            with open(open_regular(self._agg(day), os.O_RDONLY), encoding="utf-8") as f:
                doc = json.loads(f.read())
            if (doc.get("version") != AGG_VERSION or doc.get("csv_size") != st.st_size
                    or doc.get("csv_mtime_ns") != st.st_mtime_ns
                    or doc.get("max_gap_seconds") != self.max_gap):
                return None
            meters = {m: MeterDay.from_json(d, self.max_gap) for m, d in doc["meters"].items()}
        except (FileNotFoundError, NotRegularFile):  # logged once; rebuilt from the CSV
            return None
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("ignoring unreadable aggregate %s: %s", self._agg(day), exc)
            return None
        return _Day(meters, st.st_size, st.st_size, dirty=False)

    def _read_csv(self, day: dt.date, meter_id: str | None = None,
                  offset: int = 0) -> tuple[dict[str, list[Sample]], int]:
        """Samples per meter in a day's CSV from byte `offset` on (complete lines only), and the
        offset where those lines end."""
        per_meter: dict[str, list[Sample]] = {}
        try:
            with open(open_regular(self._csv(day), os.O_RDONLY), "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return per_meter, offset
        end = data.rfind(b"\n") + 1  # a torn last line is not a row (yet)
        for line in data[:end].decode("utf-8", errors="replace").splitlines():
            parsed = parse_sample(line, meter_id)
            if parsed is None:
                continue
            meter, instant, meter_kw, pv_kw = parsed
            samples = per_meter.get(meter)
            if samples is None:
                samples = per_meter[meter] = []
            samples.append((instant, meter_kw, pv_kw))
        return per_meter, offset + end

    def _journal(self, day: dt.date, meter_id: str | None = None) -> list[_Journaled]:
        return [r for r in self._recent_by_day.get(day, ()) if meter_id is None or r[0].meter_id == meter_id]

    def _remember(self, item: _Journaled) -> None:
        """Journal a row; the oldest goes when the journal is full (first of its day too)."""
        recent = self._recent
        if len(recent) == recent.maxlen:
            old_day = recent[0][0].day
            of_old_day = self._recent_by_day[old_day]
            of_old_day.popleft()
            if not of_old_day:
                del self._recent_by_day[old_day]
        recent.append(item)
        day = item[0].day
        of_day = self._recent_by_day.get(day)
        if of_day is None:
            of_day = self._recent_by_day[day] = deque()
        of_day.append(item)

    def _samples(self, day: dt.date, meter_id: str) -> list[Sample]:
        """One meter's samples on a day, sorted, each instant once (CSV and journal merged)."""
        per_meter, _ = self._read_csv(day, meter_id)
        by_instant: dict[int, Sample] = {}
        for s in per_meter.get(meter_id, ()):
            by_instant.setdefault(s[0], s)
        for row, _ in self._journal(day, meter_id):
            by_instant.setdefault(row.instant, (row.instant, row.meter_kw, row.pv_kw))
        return sorted(by_instant.values())

    def _build(self, day: dt.date) -> _Day:
        """A day from its CSV (plus journal rows not flushed yet); persisted when complete."""
        path = self._csv(day)
        before = _stat(path)
        per_meter, nbytes = self._read_csv(day)
        after = _stat(path)
        if before is None and nbytes == 0:
            nbytes = len(HEADER_LINE)  # the sink writes the header when it creates the file
        meters = {m: MeterDay.build(s, self.max_gap) for m, s in per_meter.items()}
        late: dict[str, dict[int, tuple[Sample, int]]] = {}
        for row, size in self._journal(day):
            md = meters.get(row.meter_id)
            if md is not None and row.instant in md.instants:
                continue  # in the CSV already
            sample = (row.instant, row.meter_kw, row.pv_kw)
            late.setdefault(row.meter_id, {}).setdefault(row.instant, (sample, size))
        extra = sum(size for rows in late.values() for _, size in rows.values())
        for meter, rows in late.items():
            md = meters.get(meter) or MeterDay(self.max_gap)
            samples = sorted(sample for sample, _ in rows.values())
            if not all(md.add(*sample) for sample in samples):  # earlier than the CSV's last
                md = MeterDay.build(per_meter.get(meter, []) + samples, self.max_gap)
            meters[meter] = md
        loaded = _Day(meters, nbytes + extra, nbytes)
        log.debug("built the aggregate of %s from %s (%d meters)", day, path, len(meters))
        if extra == 0 and before is not None and before == after and before[0] == nbytes:
            self._write_agg(day, loaded, before)
        return loaded

    def _persist_ready(self) -> None:
        """Persist days that are complete (past) and whose CSV holds exactly what they count."""
        if not self.persist:
            return
        today = self._today()
        for day, loaded in self._days.items():
            if not loaded.dirty or day >= today or day in self._stale:
                continue
            try:
                st = _stat(self._csv(day))
            except NotRegularFile:  # replaced since it was read: the query that reads it says so
                continue
            if st is not None and st[0] == loaded.nbytes:
                self._write_agg(day, loaded, st)

    def _write_agg(self, day: dt.date, loaded: _Day, st: tuple[int, int]) -> None:
        if not self.persist or day >= self._today():
            return
        doc = {"version": AGG_VERSION, "day": day.isoformat(), "csv_size": st[0],
               "csv_mtime_ns": st[1], "max_gap_seconds": self.max_gap,
               "meters": {m: md.to_json() for m, md in loaded.meters.items()}}
        # A name of this process's own: processes sharing the directory may write it at once.
        path = self._agg(day)
        tmp = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
        try:
            check_regular(path)  # never replace what is not an aggregate pvsim wrote
            if os.path.lexists(tmp):
                os.unlink(tmp)  # a crashed writer's (a link itself, never its target)
            fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            with open(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(doc, separators=(",", ":")))
            os.replace(tmp, path)
        except NotRegularFile:  # logged once
            return
        except OSError as exc:
            log.warning("cannot write %s (the day is rebuilt from its CSV next time): %s", path, exc)
            return
        loaded.dirty = False


def _stat(path: Path) -> tuple[int, int] | None:
    """Size and mtime of a day's CSV; None when it is gone, NotRegularFile when it is not a
    regular file (never followed)."""
    st = check_regular(path)
    if st is None:
        return None
    return st.st_size, st.st_mtime_ns
