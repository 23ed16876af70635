"""pvsim-pv: consume meter readings, compute PV, write each reading's row exactly once.

    pvsim-pv [--config FILE]

The consuming thread owns the broker link and runs a `broker.Consumer` in a reconnect-forever
loop, the daemon being its hooks (`broker.ConsumerHooks`: what happens to a message, in one
place): each message is decoded and validated, each reading gets the PV power at its own local
time and a row in its own local day's CSV (so files rotate at local midnight, DST included), and
the message is acknowledged only after its rows are fsynced. What a message's failure means
(dead-lettered, exit 73, held while a file is not a regular file) is messagehandler's. After a
start, the first reading of each local day reads that day's CSV back, so a reading redelivered
after a crash or a reconnect is recognised and not written twice.

SIGHUP closes the CSV files between two messages (logrotate); the next row reopens its file.
A CSV that cannot be written stops the daemon with exit 73 (nothing unwritten is acknowledged;
systemd restarts it). The HTTP endpoint serves /metrics, /healthz and the JOI Energy API, whose
POSTed readings go where `ingest` says.

This module is the wiring: one node writes every meter through one service (`NodeWriter`), a
fleet node writes the shards RabbitMQ gives it (`ShardWriter`s); both share the services'
pool (servicepool), its lock and the row metrics (rowmetrics).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pvsim import config as configmod
from pvsim.api.joi import Ingest, JoiApi
from pvsim.daemons import lifecycle, metrics
from pvsim.daemons.brokerlink import BrokerLink
from pvsim.daemons.ingest import LocalIngest, PublishedIngest
from pvsim.daemons.messagehandler import HOLD_SECONDS, MessageHandler, NodeWriter, QueueHandler
from pvsim.daemons.rowmetrics import RowMetrics
from pvsim.daemons.servicepool import ServicePool
from pvsim.daemons.shardwriter import ShardWriter
from pvsim.inputs.models import pv_model
from pvsim.model import shard
from pvsim.pipeline import broker
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.messages import InvalidMessage
from pvsim.pipeline.poison import PoisonGuard
from pvsim.store.retention import Retention

log = logging.getLogger("pvsim.pv")

PROG = "pvsim-pv"
HOUSEKEEPING_SECONDS = 3600


class PvDaemon(broker.ConsumerHooks):
    """pvsim-pv's `lifecycle.Service`, and the hooks of its consumer. One node has `node` (its
    queue's handler and its one service) and no shards; a fleet node has `shards` (a writer per
    shard, writing only while RabbitMQ makes this process the shard's consumer) and no `node`.
    `rabbit` is RabbitMQ by default, or a test's stub broker (tests/support/stubbroker.py)."""

    def __init__(self, cfg: configmod.Config, life: lifecycle.Lifecycle, *,
                 rabbit: broker.Broker | None = None) -> None:
        self.cfg, self.stop = cfg, life.stop
        self.rabbit = rabbit or broker.RabbitMQ(cfg.broker)
        self.registry = metrics.registry()
        self.metrics = metrics.PvMetrics(self.registry)
        self.free_space = metrics.FreeSpace(cfg.output.directory)
        self.registry.register(self.free_space)
        self.topology = broker.Topology.from_config(cfg)
        self.metrics.dead_letter_limit.set(cfg.broker.dead_letter_max_length)
        self.metrics.dead_letter_bytes_limit.set(cfg.broker.dead_letter_max_bytes)
        self.fleet = cfg.fleet.shards > 1
        self.pool = ServicePool(cfg, pv_model(cfg), RowMetrics(self.metrics, per_meter=not self.fleet),
                                self.metrics)
        self._beat = lifecycle.Heartbeat()
        self.messages = MessageHandler(self.pool, self.metrics, cfg.limits.max_power_w, self._beat,
                                       life.stop, life.reopen)
        self.node: NodeWriter | None = None
        self.shards: list[ShardWriter] = []
        ingest: Ingest
        if self.fleet:
            CsvSink(cfg.output.directory).close()  # SinkError (exit 73) at start, not later
            self.shards = [ShardWriter(i, cfg.output.directory, self.messages, self.metrics, self.stop)
                           for i in range(cfg.fleet.shards)]
            ingest = PublishedIngest(cfg, self.topology, self.rabbit)
        else:
            service = self.pool.open(None)  # SinkError: exit 73
            poison = PoisonGuard(cfg.output.directory)  # a fleet's shard has its own
            poison.recover()
            self.node = NodeWriter(self.messages, service, poison)
            ingest = LocalIngest(self.pool, service, life.fail)
        self.handlers: list[QueueHandler] = [self.node] if self.node else list(self.shards)
        self.app = JoiApi(cfg, Path(cfg.output.directory), ingest)
        self.pool.listen(self.app.on_row)
        self.retention = Retention(cfg.output.directory, cfg.output.retention_days, cfg.tz,
                                   services=self.pool.services, store=self.app.store)
        self.link = BrokerLink(self.metrics.broker, "dead-lettering waits")

    # --- the Service protocol -------------------------------------------------------------

    def threads(self) -> list[tuple[str, Callable[[], None]]]:
        return [("consumer", self.consume_loop), ("housekeeping", self.housekeeping_loop)]

    def housekeeping_loop(self) -> None:
        """Retention at start, then hourly, under the lock the writers hold."""
        while True:
            with self.pool.lock:
                removed = self.retention.run()
            self.metrics.csv_files_removed.inc(removed.files)
            if removed.days:
                self.app.recount()
            if self.stop.wait(HOUSEKEEPING_SECONDS):
                return

    def health(self) -> tuple[bool, str]:
        if not self.link.connected:
            return False, "not connected to RabbitMQ (reconnecting)"
        if self.link.blocked:
            return False, ("RabbitMQ blocks the connection (memory or disk alarm); dead-lettering "
                           "waits until it lifts")
        free = self.free_space.free_bytes()
        if free is not None and free < self.cfg.output.min_free_mb * 1_000_000:
            return False, (f"only {free / 1e6:.0f} MB free for {self.cfg.output.directory} "
                           f"(output.min_free_mb: {self.cfg.output.min_free_mb})")
        if self._beat.age() > 10:
            return False, f"the consumer has made no progress for {self._beat.age():.0f} s"
        if (held := self.messages.held) is not None:
            return False, (f"the consumer holds a message and retries it every "
                           f"{HOLD_SECONDS:.0f} s: {held}")
        return True, (f"consuming {self._what()}; {self.pool.rows_total} rows written, "
                      f"{self.pool.duplicates_total} duplicates dropped")

    def alive(self) -> bool:
        return self._beat.age() < lifecycle.STALL_SECONDS or self.link.blocked

    def status(self) -> str:
        if not self.link.connected:
            return f"RabbitMQ unreachable, reconnecting; {self.pool.rows_total} rows written"
        if (held := self.messages.held) is not None:
            return (f"holding a message: {held.path} is {held.kind}; "
                    f"{self.pool.rows_total} rows written")
        return (f"consuming {self._what()}: {self.pool.rows_total} rows written, "
                f"{self.pool.duplicates_total} duplicates dropped")

    def _what(self) -> str:
        if not self.fleet:
            return self.topology.queue
        writing = [shard.label(w.index) for w in self.shards if w.service]
        return (f"{len(self.shards)} shard queues, writing {len(writing)} shard(s)"
                f"{': ' + ' '.join(writing) if writing else ''}")

    def close(self) -> None:
        self.pool.close_files()
        for writer in self.shards:
            writer.release()

    # --- consuming thread: broker.ConsumerHooks, what happens to a message ------------------

    def consume_loop(self) -> None:
        """Consume for as long as the daemon runs, reconnecting whenever needed. A SinkError is
        not a broker error: it leaves the loop (exit 73) with nothing unwritten acknowledged;
        nor is a declaration RabbitMQ refuses (exit 78)."""
        self.rabbit.run_sessions(self._consume_session, self)

    def _consume_session(self, link: broker.Link) -> None:
        broker.Consumer(link, self.topology, self, prefetch=self.cfg.broker.prefetch,
                        max_rows=self.cfg.output.sync_rows).run()

    def should_stop(self) -> bool:
        self._beat.beat()
        return self.stop.is_set()

    def blocked(self, blocked: bool) -> None:
        self.link.on_blocked(blocked)

    def consuming(self, link: broker.Link) -> None:
        """The topology is declared and the queue consumed: healthy from here on."""
        self.messages.session = link  # served while a message is held
        self.link.up()
        log.info("consuming from %s", self._what())

    def handle_message(self, queue: int, body: bytes, redelivered: bool) -> int:
        """A fleet's shard queue goes to its writer; the one queue of a single node to `node`."""
        return self.handlers[queue].handle(body, redelivered).written

    def sync(self) -> None:
        self.pool.sync()

    def rejected(self, error: InvalidMessage) -> None:
        self.metrics.rejected.labels(error.reason).inc()

    def idle(self) -> None:
        self._beat.beat()
        self.messages.maybe_reopen()

    def dead_letter_depth(self, depth: int) -> None:
        self.metrics.dead_letters.set(depth)

    def handed_off(self, queue: int) -> None:
        self.shards[queue].release()

    def session_ended(self, error: broker.BrokerError | None) -> None:
        self.messages.session = None
        for writer in self.shards:  # RabbitMQ hands their shards to the standbys
            writer.release()
        if error is not None:
            log.warning("lost the connection to RabbitMQ: %s; reconnecting", error)
        self.link.down(error)


def main(argv: Sequence[str] | None = None) -> int:
    return lifecycle.main(PROG, "Consume meter readings from RabbitMQ, add simulated PV power and "
                          "write daily CSV files.", "pv.listen", PvDaemon, argv)


if __name__ == "__main__":
    sys.exit(main())
