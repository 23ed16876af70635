"""Recognising a message that killed pvsim-pv, so that it is dead-lettered, not retried for ever.

A message whose handling raises is dead-lettered at once (`processing_error`). One whose
handling ends the process cannot be: a crash in C, the kernel's OOM killer, a hang that the
watchdog ends with SIGABRT. Nothing runs after it; RabbitMQ gives the message, marked
redelivered, to the next process, which it ends too, for ever, and every reading behind it waits.

The redelivered flag (a quorum queue's `x-delivery-count`) alone proves nothing: after a
reconnect or any restart, every message that was delivered and not yet acknowledged comes back
redelivered, up to a prefetch window of innocent messages that must be written (exactly once:
the PV service drops what the CSV files already hold). So a guard keeps a small record per queue
(`<output>/.pvsim-poison`, a fleet's shard NN `.pvsim-sNN.poison`):

- a redelivered message is recorded "in flight" (its SHA-256) before it is handled and cleared
  after, whatever the outcome; first deliveries, nearly all messages, cost nothing;
- when a process starts consuming the queue (in a fleet: once it holds the shard's lock, so the
  previous writer is gone) and finds a message in flight, the previous process died while
  handling it, and that message's count of crashes goes up;
- a redelivered message that has ended the process POISON_CRASHES times is dead-lettered
  (`processing_error`) without being handled; one handled normally has its count forgotten.

Why twice and not once: an innocent redelivered message can be in flight when a kill -9 or a
power cut lands, and one coincidence must not dead-letter valid readings; the same message's few
milliseconds twice in a row is no coincidence. A poison message ends the process three times
(its first delivery, then two redeliveries) and goes to the dead-letter queue at the fourth
start: about 10 s under systemd (RestartSec=2), within its start limit (5 starts in 10 s).

The record is written without fsync: a process that dies leaves it in the page cache for the
next one; a machine crash may lose it, and the message is then only retried once more. A record
that cannot be read (torn, or not a file of ours) is started afresh, and one that cannot be
written is logged and skipped: the guard never stops the pipeline itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from pvsim.model.shard import label
from pvsim.pipeline.messages import InvalidMessage, Reason

log = logging.getLogger(__name__)

POISON_CRASHES = 2
KEPT = 64  # messages whose crashes are remembered at most (the oldest forgotten first)
MAX_RECORD_BYTES = 64 * 1024
# Never through a link; never blocking on a FIFO named like the record.
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class PoisonGuard:
    """The crash record of one queue's messages, in `directory`; `shard` None: no shards."""

    def __init__(self, directory: str | Path, shard: int | None = None) -> None:
        name = ".pvsim-poison" if shard is None else f".pvsim-{label(shard)}.poison"
        self.path = Path(directory) / name
        self.in_flight: str | None = None
        self.crashes: dict[str, int] = {}
        self._warned = False

    def recover(self) -> None:
        """Read the record a previous process left; a message still in flight then is one that
        process died handling. Call it when this process starts writing the queue's files."""
        self.in_flight, self.crashes = self._read()
        if self.in_flight is None:
            return
        count = self.crashes.pop(self.in_flight, 0) + 1
        self.crashes[self.in_flight] = count  # the newest last: the oldest are forgotten first
        log.warning("the previous pvsim-pv stopped while handling message sha256:%s (%d time%s); "
                    "%s", self.in_flight[:16], count, "s" if count > 1 else "",
                    "it is dead-lettered at its next delivery" if count >= POISON_CRASHES
                    else "it is handled again, alone")
        self.in_flight = None
        self._write()

    def before(self, body: bytes) -> str:
        """Before handling a redelivered message: raise InvalidMessage (processing_error) when it
        has ended the process POISON_CRASHES times, else record it in flight; its digest."""
        key = digest(body)
        count = self.crashes.get(key, 0)
        if count >= POISON_CRASHES:
            self.crashes.pop(key)
            self._write()
            raise InvalidMessage(Reason.PROCESSING_ERROR,
                                 f"pvsim-pv stopped {count} times while handling this message "
                                 f"(sha256:{key[:16]}); not retried again")
        self.in_flight = key
        self._write()
        return key

    def after(self, key: str) -> None:
        """After handling it, whatever the outcome: it did not end the process."""
        self.in_flight = None
        self.crashes.pop(key, None)
        self._write()

    def _read(self) -> tuple[str | None, dict[str, int]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None, {}
        except OSError as exc:
            log.warning("cannot read %s (%s): starting a fresh crash record", self.path,
                        exc.strerror)
            return None, {}
        try:
            with os.fdopen(fd, "rb") as f:
                doc = json.loads(f.read(MAX_RECORD_BYTES + 1))
            in_flight, crashes = doc["in_flight"], doc["crashes"]
            if not (in_flight is None or _is_digest(in_flight)) or type(crashes) is not dict \
                    or not all(_is_digest(k) and type(v) is int for k, v in crashes.items()):
                raise ValueError("not a crash record")
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            log.warning("%s is not a crash record pvsim wrote (%s): starting afresh", self.path,
                        type(exc).__name__)
            return None, {}
        return in_flight, crashes

    def _write(self) -> None:
        while len(self.crashes) > KEPT:
            self.crashes.pop(next(iter(self.crashes)))
        data = json.dumps({"in_flight": self.in_flight, "crashes": self.crashes}).encode()
        try:
            fd = os.open(self.path, _WRITE, 0o640)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            if not self._warned:  # once: the CSV writes report the storage itself
                log.warning("cannot write %s (%s): a message that crashes pvsim-pv is not "
                            "recognised on redelivery meanwhile", self.path, exc.strerror)
                self._warned = True
        else:
            self._warned = False


def _is_digest(value: object) -> bool:
    return type(value) is str and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
