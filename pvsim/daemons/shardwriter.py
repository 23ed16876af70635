"""A fleet shard's writing in one pvsim-pv: the handler of the shard's queue.

RabbitMQ makes one consumer of a shard's queue active and says nothing to it, so the first
message is the news: the writer then takes the shard's lock (waiting while a previous writer
finishes) and a fresh service that reads the shard's files back on each day's first reading, the
exactly-once memory another process may have added to since this one last wrote the shard. It
gives the shard up (synced, files closed, lock released) when the session ends or the balancer
hands it to a standby. Only the writer of a shard ever appends to its files.
"""

from __future__ import annotations

import logging
import threading
import time

from pvsim.daemons.messagehandler import MessageHandler, ShardBusy
from pvsim.daemons.metrics import PvMetrics
from pvsim.model import shard
from pvsim.pipeline.poison import PoisonGuard
from pvsim.pipeline.pvservice import Outcome, PvService
from pvsim.pipeline.shardlock import ShardLock

log = logging.getLogger("pvsim.pv")


class ShardWriter:
    """Takes its shard on the first message, writes the shard's messages, and gives it up.

    `service` is the shard's service while this process writes the shard, else None."""

    TAKE_SECONDS = 30.0

    def __init__(self, index: int, directory: str, messages: MessageHandler,
                 metrics: PvMetrics, stop: threading.Event) -> None:
        self.index, self.messages, self.metrics, self.stop = index, messages, metrics, stop
        self.lock = ShardLock(directory, index)
        self.poison = PoisonGuard(directory, index)
        self.service: PvService | None = None

    def handle(self, body: bytes, redelivered: bool = False) -> Outcome:
        # The first message takes the shard; a lock file that is not a regular file holds it.
        service = self.service or self.messages.hold(self._take)
        return self.messages.handle(body, redelivered, service, self.poison)

    def _take(self) -> PvService:
        waited = time.monotonic()
        while not self.lock.try_take():
            if time.monotonic() - waited > self.TAKE_SECONDS:
                raise ShardBusy(f"shard {shard.label(self.index)} is still locked by its previous "
                                f"writer after {self.TAKE_SECONDS:.0f} s ({self.lock.journal})")
            if self.stop.wait(0.05):
                raise ShardBusy("stopping")
        self.service = self.messages.pool.open(self.index)
        self.poison.recover()  # the previous writer is gone: what did it die handling?
        self.metrics.shards_written.inc()
        self.metrics.takeovers.inc()
        log.info("shard %s: writing it now (lock taken after %.2f s)", shard.label(self.index),
                 time.monotonic() - waited)
        return self.service

    def release(self) -> None:
        """Sync, close and unlock the shard's files; the next message takes it again."""
        service = self.service
        if service is None:
            return
        try:
            self.messages.pool.close(service)
        finally:
            self.service = None
            self.lock.release()
        self.metrics.shards_written.dec()
        log.info("shard %s: given up", shard.label(self.index))
