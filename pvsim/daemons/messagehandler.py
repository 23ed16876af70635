"""How pvsim-pv handles a consumed message: decoded, written, and what each failure means.

Invalid messages go to the dead-letter queue with the reason in a header; so does a message
whose handling fails in any other way than storage (`processing_error`: a bug must not stop the
pipeline), and one that has ended the process twice while being handled (see
pvsim.pipeline.poison), recognised when it is redelivered. A storage failure (SinkError) stops
the daemon with exit 73, nothing unwritten acknowledged.

A day's file (or a shard's lock) that is not a regular file (a symbolic link, a directory, a
FIFO) is an operator's fault that a restart would not cure: the consumer holds the message that
needs it, unacknowledged, and retries it every HOLD_SECONDS while /healthz answers 503 naming
the file; it goes on by itself once the file is removed or renamed.

`MessageHandler` is shared by the queues' handlers (`QueueHandler`) the daemon's consumer hooks
call: `NodeWriter`
(one node: every meter through one service) and `shardwriter.ShardWriter` (a fleet's shard).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pvsim.daemons.lifecycle import Heartbeat
from pvsim.daemons.metrics import PvMetrics
from pvsim.daemons.servicepool import ServicePool
from pvsim.pipeline import broker
from pvsim.pipeline.csvsink import NotRegularFile, SinkError
from pvsim.pipeline.messages import InvalidMessage, Reason, decode
from pvsim.pipeline.poison import PoisonGuard
from pvsim.pipeline.pvservice import Outcome, PvService

log = logging.getLogger("pvsim.pv")

HOLD_SECONDS = 5.0  # how often a message held by a file that is not a regular file is retried
T = TypeVar("T")


class Session(Protocol):
    """What a held message needs of the consuming session: its broker I/O served meanwhile."""

    def sleep(self, duration: float) -> None:
        """Sleep while serving the connection's heartbeats (pika's BlockingConnection.sleep)."""


class QueueHandler(Protocol):
    """What handles the messages of one consumed queue: `NodeWriter` or a `ShardWriter`."""

    def handle(self, body: bytes, redelivered: bool = False) -> Outcome:
        """Decode and write a message; the rows it added are made durable by the next sync."""


class ShardBusy(broker.SessionEnded):
    """The consumer cannot go on with the message it has: it is stopping with a message held, or
    a shard's previous writer did not let go in time. The session ends (its messages go back to
    the queue) and the next one starts as the last standby of every shard."""


class MessageHandler:
    """Decodes a message and writes it through a service; holds it while a file is in the way.

    `session` is the consuming session's connection while there is one (set by the daemon);
    `held` names what holds the consumer up, if anything (for /healthz)."""

    def __init__(self, pool: ServicePool, metrics: PvMetrics, max_power_w: float,
                 beat: Heartbeat, stop: threading.Event, reopen: threading.Event) -> None:
        self.pool, self.metrics, self.max_power_w = pool, metrics, max_power_w
        self.beat, self.stop, self.reopen = beat, stop, reopen
        self.session: Session | None = None
        self.held: NotRegularFile | None = None

    def handle(self, body: bytes, redelivered: bool, service: PvService,
               poison: PoisonGuard) -> Outcome:
        """Decode and write one message through `service`. InvalidMessage has it dead-lettered:
        a bad message, or any failure other than storage while handling it (decoding
        included), which would otherwise stop the daemon and, redelivered, stop it again after
        every restart. SinkError (storage) stops the daemon with exit 73, nothing unwritten
        acknowledged. A redelivered message goes through the crash record (`poison`): one that
        ended the process twice is not handled again."""
        self.beat.beat()
        self.metrics.messages.inc()
        self.maybe_reopen()
        key = poison.before(body) if redelivered else None  # InvalidMessage: dead-lettered
        try:
            readings = decode(body, self.max_power_w)  # InvalidMessage: dead-lettered
            return self.hold(lambda: self.pool.process(readings, service))
        except (SinkError, InvalidMessage, broker.SessionEnded):  # ShardBusy, or the link lost
            raise
        except OSError as exc:  # I/O while processing is storage: never a bad message
            raise SinkError(f"storage error while writing rows: {exc}") from None
        except Exception as exc:  # a bug on some input must not crash-loop on redelivery
            log.exception("failed to process a message")
            raise InvalidMessage(Reason.PROCESSING_ERROR,
                                 f"{type(exc).__name__}: {str(exc)[:300]}") from None
        finally:
            if key is not None:
                poison.after(key)

    def hold(self, write: Callable[[], T]) -> T:
        """`write()`, retried every HOLD_SECONDS while a file it needs is not a regular file.

        Exit 73 would not cure it (systemd restarts pvsim-pv every few seconds, for ever, and
        every restart meets the same file), nor may the message be acknowledged or
        dead-lettered unwritten: the consumer keeps it, unacknowledged, and keeps the broker
        link and the watchdog served; /healthz answers 503 naming the file. The API goes on
        meanwhile (other days' reads and POSTs). Outside a session (no broker link) it raises."""
        while True:
            try:
                result = write()
            except NotRegularFile as exc:
                session = self.session
                if session is None:
                    raise
                self.held = exc
                until = time.monotonic() + HOLD_SECONDS
                while (left := until - time.monotonic()) > 0:
                    if self.stop.is_set():  # the message goes back to the queue
                        raise ShardBusy("stopping with a message held") from None
                    self.beat.beat()
                    session.sleep(min(left, 0.5))
                continue
            if self.held is not None:
                log.info("the consumer goes on: %s is no longer in the way", self.held.path)
                self.held = None
            return result

    def maybe_reopen(self) -> None:
        """After SIGHUP, between two messages: close the CSV files (logrotate)."""
        if self.reopen.is_set():
            self.reopen.clear()
            self.pool.reopen()
            log.info("SIGHUP: closed the CSV files; the next row reopens its day's file")


@dataclass
class NodeWriter:
    """The handler of a single node's queue: every meter through one service,
    opened at start, with the node's crash record."""

    messages: MessageHandler
    service: PvService
    poison: PoisonGuard

    def handle(self, body: bytes, redelivered: bool = False) -> Outcome:
        return self.messages.handle(body, redelivered, self.service, self.poison)
