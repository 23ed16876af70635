"""Daily CSV files: one per local calendar day, appended, made durable before acknowledgement.

Their names and format are `csvformat`'s. A row goes to the file of its own local date, so
rotation at local midnight (and across DST changes, where a day has 23 or 25 hours) needs no
timer: the first row of the new day opens the new file. `sync()` flushes and fsyncs every file
written since the last sync; the PV service acks a message only after that, so an acknowledged
reading is on disk.

`written(day)` reads a day's file back, so that a restarted PV service knows what it holds: a crash
between a write and its ack then cannot double a row when the message is redelivered.
A torn last line (a crash in the middle of a write, never acknowledged) is cut off on open.

Every file pvsim opens in its directories goes through `open_regular`: never through a symbolic
link (O_NOFOLLOW), never blocking on a FIFO (O_NONBLOCK until fstat has shown a regular file),
and anything but a regular file is refused (`NotRegularFile`, a SinkError naming the path, logged
once): a link named like a day's file is never followed, a directory or FIFO never read as one.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import logging
import os
import stat
import threading
from pathlib import Path
from collections.abc import Iterator
from typing import BinaryIO

from pvsim.pipeline.csvformat import HEADER_LINE, file_name, parse_sample

log = logging.getLogger(__name__)


class SinkError(Exception):
    """The output directory or a file in it cannot be written; the message says which and why.

    Deliberately not an OSError: broker code treats OSError as a lost connection, and a storage
    failure must never pass for one (it stops the daemon with exit 73 instead)."""

    exit_code = os.EX_CANTCREAT


class NotRegularFile(SinkError):
    """A path pvsim would open is not a regular file (a symbolic link, a directory, a FIFO...).

    A storage fault of that path only (of that day, for a day's CSV): pvsim neither reads,
    writes nor removes through it, and never waits on it; the message names it."""

    def __init__(self, path: str | Path, kind: str) -> None:
        self.path, self.kind = str(path), kind
        super().__init__(f"cannot open {path}: it is {kind}, not a regular file, and pvsim "
                         "neither reads, writes nor removes through it; remove or rename it")


_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
_refused: set[tuple[str, str]] = set()  # (path, kind) logged: one line each, until it is fine
_refused_lock = threading.Lock()


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def refuse(path: str | Path, mode: int, report: bool = True) -> NotRegularFile:
    """The error for a path that is not a regular file; the first time, also one log line
    (unless not `report`: the caller's own error line names it, as pvsim-run's does)."""
    error = NotRegularFile(path, _kind(mode))
    if not report:
        return error
    with _refused_lock:
        first = (error.path, error.kind) not in _refused
        _refused.add((error.path, error.kind))
    if first:
        log.error("%s", error)
    return error


def _fine(path: str | Path) -> None:
    """A path refused before is a regular file again (or gone): a new refusal is logged anew."""
    if _refused:
        with _refused_lock:
            _refused.difference_update([key for key in _refused if key[0] == str(path)])


def check_regular(path: str | Path, report: bool = True) -> os.stat_result | None:
    """lstat(2) of a path pvsim reads or writes: None when there is none, NotRegularFile when it
    is anything but a regular file (a link is never followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        _fine(path)
        return None
    if not stat.S_ISREG(st.st_mode):
        raise refuse(path, st.st_mode, report)
    _fine(path)
    return st


def open_regular(path: str | Path, flags: int, mode: int = 0o644, report: bool = True) -> int:
    """os.open of a regular file, never through a link and never blocking on a FIFO.

    O_NOFOLLOW (a link fails), O_NONBLOCK (a FIFO or device opens at once, or fails) until
    fstat has shown a regular file; anything else raises NotRegularFile. With O_CREAT|O_EXCL the
    file is one this call created. OSError as os.open raises it (FileNotFoundError without
    O_CREAT, FileExistsError with O_EXCL)."""
    if not flags & os.O_EXCL:
        check_regular(path, report)  # a device or FIFO is not even opened
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):
            check_regular(path, report)  # raises for what is there; else the error was another
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(path, st.st_mode, report)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    _fine(path)
    return fd


class CsvSink:
    """Appends rows to daily files (of one shard, with `shard`); `truncate=True` starts each
    day's file afresh (pvsim-run). A day's file that is not a regular file raises
    NotRegularFile, logged once unless `log_refusals` is False (pvsim-run: its exit line)."""

    def __init__(self, directory: str | Path, *, truncate: bool = False, max_open: int = 3,
                 shard: int | None = None, log_refusals: bool = True) -> None:
        self.directory = Path(directory)
        self.log_refusals = log_refusals
        self.shard = shard
        self.truncate, self.max_open = truncate, max_open
        self._files: dict[dt.date, BinaryIO] = {}
        self._dirty: set[dt.date] = set()
        self._started: set[dt.date] = set()  # days truncated by this sink already
        self.paths: list[Path] = []           # every file written, in order of first write
        self._ensure_directory()

    def _ensure_directory(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create output directory {self.directory}: {exc.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise SinkError(f"output directory {self.directory} is not writable "
                            f"(choose another with --output DIR or output.directory)")

    def path_for(self, day: dt.date) -> Path:
        return self.directory / file_name(day, self.shard)

    def append_line(self, day: dt.date, line: bytes) -> None:
        """Append a formatted row (`csvformat.format_line`) to the file of its local date `day`."""
        f = self._files.get(day) or self._open(day)
        try:
            f.write(line)
        except OSError as exc:
            raise SinkError(f"cannot write {self.path_for(day)}: {exc.strerror}") from None
        self._dirty.add(day)

    def sync(self) -> None:
        """Flush and fsync every file written since the last sync."""
        for day in sorted(self._dirty):
            f = self._files[day]
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise SinkError(f"cannot write {self.path_for(day)}: {exc.strerror}") from None
        self._dirty.clear()

    def reopen(self) -> None:
        """Close every file (synced); the next row reopens its day's file (SIGHUP, logrotate)."""
        self.sync()
        for f in self._files.values():
            f.close()
        self._files.clear()

    close = reopen

    def forget(self, day: dt.date) -> None:
        """Sync and close a day's file if it is open (its file is about to be removed); a later
        row of that day starts a new file."""
        if day in self._files:
            self.sync()
            self._files.pop(day).close()
        self._started.discard(day)

    def check(self, day: dt.date) -> None:
        """Raise NotRegularFile now if a day's file is there and is not a regular file (a file
        open already is the regular file this sink opened): a batch is refused before its
        first row, never half written."""
        if day not in self._files:
            check_regular(self.path_for(day), self.log_refusals)

    def _open(self, day: dt.date) -> BinaryIO:
        path = self.path_for(day)
        fresh = self.truncate and day not in self._started
        append, report = os.O_WRONLY | os.O_APPEND, self.log_refusals
        try:
            try:  # a new file is one this sink created, never whatever a link points to
                fd, created = open_regular(path, append | os.O_CREAT | os.O_EXCL), True
            except FileExistsError:
                if not fresh:
                    repair_tail(path, report)
                fd = open_regular(path, append | (os.O_TRUNC if fresh else 0), report=report)
                created = False
            f = os.fdopen(fd, "ab")
            if created or fresh or os.fstat(fd).st_size == 0:
                f.write(HEADER_LINE)
            if created:
                _fsync_directory(self.directory)
        except OSError as exc:
            raise SinkError(f"cannot open {path}: {exc.strerror}") from None
        self._started.add(day)
        if path not in self.paths:
            self.paths.append(path)
        self._files[day] = f
        while len(self._files) > self.max_open:  # keep a few days open for late arrivals
            oldest = min(d for d in self._files if d != day)  # never the file about to be written
            self.sync()
            self._files.pop(oldest).close()
        log.info("writing %s", path)
        return f

    def written(self, day: dt.date) -> Iterator[tuple[str, int]]:
        """(meter id, instant) of every row in a day's file: what a restarted service must skip."""
        path = self.path_for(day)
        try:
            try:
                repair_tail(path, self.log_refusals)
            except FileNotFoundError:
                return
            count = 0
            with open(open_regular(path, os.O_RDONLY, report=self.log_refusals),
                      encoding="utf-8", errors="replace") as f:
                for line in f:
                    parsed = parse_sample(line)
                    if parsed is not None:
                        count += 1
                        yield parsed[0], parsed[1]
        except OSError as exc:
            raise SinkError(f"cannot read back {path}: {exc.strerror}") from None
        log.info("recovered %d rows from %s", count, path)


def repair_tail(path: Path, report: bool = True) -> None:
    """Cut a torn last line (no newline: a write interrupted by a crash, never acknowledged).

    Only the torn part goes, however far back the last newline is (a power loss can leave
    megabytes of NUL bytes after the last complete row); every complete row is kept, and what
    was cut is logged. A file with no newline at all is reset to its header. FileNotFoundError
    when there is no file; NotRegularFile when it is not a regular one.
    """
    with os.fdopen(open_regular(path, os.O_RDWR, report=report), "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        keep = _after_last_newline(f, size)
        f.seek(keep)
        cut = f.read(min(size - keep, 40))
        f.truncate(keep)
        if keep == 0:
            f.seek(0)
            f.write(HEADER_LINE)
        f.flush()
        os.fsync(f.fileno())
    log.warning("cut a torn last line off %s: %d bytes from offset %d (starting %r)",
                path, size - keep, keep, cut)


def _after_last_newline(f: BinaryIO, size: int, chunk: int = 1 << 16) -> int:
    """The offset just after the last newline of a file of `size` bytes (0 when there is none),
    reading backwards a chunk at a time."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        f.seek(start)
        block = f.read(end - start)
        at = block.rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable, not only its contents."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
