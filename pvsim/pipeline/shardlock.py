"""The lock that makes one process at a time the writer of a shard's files.

A fleet's shard is written by whichever pvsim-pv RabbitMQ made its active consumer. Handing a
shard over is not instantaneous everywhere at once: a process whose connection died may still be
appending the rows of a message it holds while a standby already receives the redelivery. The
lock closes that gap. `<directory>/.pvsim-sNN.lock` is locked with flock(2) by the writer from
before it reads the shard's files back (its exactly-once memory) until after it synced and closed
them; a standby that becomes active waits for it. The kernel drops the lock when its process
dies, however it dies, so a killed writer never blocks a shard.

Every taking and giving-up is appended to `<directory>/.pvsim-sNN.owners` while the lock is held
(`<unix time> taken|released <host> <pid>`), the record a test or an operator checks to see that
no two processes ever wrote a shard at the same time.

Several hosts sharing the directory need a file system whose flock is seen by every host: NFS
version 4 (Linux emulates flock with NFS byte-range locks), CephFS or GlusterFS with locking on;
not NFS version 3 without lockd, nor a directory synced between hosts.

Both files are opened as every file pvsim writes (csvsink.open_regular): a lock file that is a
symbolic link, a directory or a FIFO is refused (NotRegularFile: the shard is not taken), an
owner record that is one is not written.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from pathlib import Path

from pvsim.model.shard import label
from pvsim.pipeline.csvsink import NotRegularFile, SinkError, open_regular

log = logging.getLogger(__name__)


class ShardLock:
    """flock on a shard's lock file; `take` waits, `release` lets go."""

    def __init__(self, directory: str | Path, shard: int) -> None:
        self.directory, self.shard = Path(directory), shard
        self.path = self.directory / f".pvsim-{label(shard)}.lock"
        self.journal = self.directory / f".pvsim-{label(shard)}.owners"
        self._fd: int | None = None

    def try_take(self) -> bool:
        """Take the lock if it is free; True once held (also when held already)."""
        if self._fd is not None:
            return True
        try:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, 0o640)  # NotRegularFile
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise SinkError(f"cannot lock {self.path}: {exc.strerror}") from None
        self._fd = fd
        self._record("taken")
        return True

    def release(self) -> None:
        """Let go (the shard's files must be synced and closed first)."""
        if self._fd is None:
            return
        try:
            self._record("released")
        finally:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def _record(self, event: str) -> None:
        line = f"{time.time():.6f} {event} {socket.gethostname()} {os.getpid()}\n"
        try:
            fd = open_regular(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            with open(fd, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except NotRegularFile:  # logged once; the lock itself holds
            pass
        except OSError as exc:  # the record is for checking; the lock itself holds
            log.warning("cannot record %s of %s in %s: %s", event, label(self.shard),
                        self.journal, exc.strerror)
