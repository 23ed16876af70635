"""pvsim-pv: consume meter readings, compute PV, write each reading's row exactly once.

    pvsim-pv [--config FILE]

The consuming thread owns the broker link and runs `broker.Consumer` in a reconnect-forever
loop: each message is decoded and validated, each reading gets the PV power at its own local
time and a row in its own local day's CSV (so files rotate at local midnight, DST included), and
the message is acknowledged only after its rows are fsynced. Invalid messages go to the
dead-letter queue with the reason in a header; so does a message whose handling fails in any
other way than storage (`processing_error`: a bug must not stop the pipeline), and one that has
ended the process twice while being handled (see pvsim.pipeline.poison), recognised when it is
redelivered. After a start, the first reading of each local day
reads that day's CSV back, so a reading redelivered after a crash or a reconnect is recognised
and not written twice.

SIGHUP closes the CSV files between two messages (logrotate); the next row reopens its file.
A CSV that cannot be written stops the daemon with exit 73 (nothing unwritten is acknowledged;
systemd restarts it). A day's file (or a shard's lock) that is not a regular file (a symbolic
link, a directory, a FIFO) is an operator's fault that a restart would not cure: the consumer
holds the message that needs it, unacknowledged, and retries it every HOLD_SECONDS while
/healthz answers 503 naming the file; it goes on by itself once the file is removed or renamed.
The HTTP endpoint serves /metrics, /healthz and the JOI Energy API, whose POSTed readings go
through the same service under the same lock as the consumed ones.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from pvsim import config as configmod
from pvsim.api.joi import JoiApi
from pvsim.daemons import lifecycle, metrics
from pvsim.daemons.brokerlink import BrokerLink
from pvsim.daemons.fairlock import FairLock
from pvsim.inputs.models import pv_model
from pvsim.model import shard
from pvsim.model.reading import Reading
from pvsim.pipeline import broker
from pvsim.pipeline.csvsink import CsvSink, NotRegularFile, Row, SinkError
from pvsim.pipeline.messages import InvalidMessage, Reason, decode, encode_batches
from pvsim.pipeline.poison import PoisonGuard
from pvsim.pipeline.pvservice import Outcome, PvService
from pvsim.pipeline.shardlock import ShardLock
from pvsim.store.retention import Retention

log = logging.getLogger("pvsim.pv")

PROG = "pvsim-pv"
HOUSEKEEPING_SECONDS = 3600
INGEST_CHUNK = 5000  # readings of a POST processed per turn of the lock (a few tens of ms)
HOLD_SECONDS = 5.0  # how often a message held by a file that is not a regular file is retried
T = TypeVar("T")


class PvDaemon(broker.ConsumerHooks):
    def __init__(self, cfg: configmod.Config, life: lifecycle.Lifecycle, *,
                 with_api: bool = True, rabbit: broker.Broker | None = None) -> None:
        self.cfg, self.lifecycle = cfg, life
        self.rabbit = rabbit or broker.RabbitMQ(cfg.broker)  # a test's stub broker, or RabbitMQ
        self.stop = life.stop
        self.registry = metrics.registry()
        self.metrics = metrics.PvMetrics(self.registry)
        self.free_space = metrics.FreeSpace(cfg.output.directory)
        self.registry.register(self.free_space)
        self.topology = broker.Topology.from_config(cfg)
        self.metrics.dead_letter_limit.set(cfg.broker.dead_letter_max_length)
        self.metrics.dead_letter_bytes_limit.set(cfg.broker.dead_letter_max_bytes)
        self.curve = pv_model(cfg)
        self.fleet = cfg.fleet.shards > 1
        # The consuming thread and the API's POSTs share the service, a message or a chunk of a
        # POST at a time, in turn: neither stalls the other's broker I/O for long.
        self.lock = FairLock()
        self._unsynced: list[int] = []  # instants of rows appended since the last sync
        self._gauges: dict[str, tuple] = {}
        self.rows_total = self.duplicates_total = 0
        self.app: JoiApi | None = None
        if with_api:
            self.app = JoiApi(cfg, Path(cfg.output.directory),
                              self.publish_posted if self.fleet else self.ingest)
        # Without shards, one service writes every meter's rows, from the start; in a fleet, a
        # writer per shard, which takes its shard when RabbitMQ makes this process its consumer.
        self.service: PvService | None = None
        self.writers: list[ShardWriter] = []
        if self.fleet:
            CsvSink(cfg.output.directory).close()  # SinkError (exit 73) at start, not later
            self.writers = [ShardWriter(self, i) for i in range(cfg.fleet.shards)]
        else:
            self.service = self.new_service(None)  # SinkError: exit 73
        # A fleet's shard has its own, read when its writer takes the shard's lock.
        self.poison = PoisonGuard(cfg.output.directory)
        if not self.fleet:
            self.poison.recover()
        self.retention = Retention(cfg.output.directory, cfg.output.retention_days, cfg.tz,
                                   services=self.services,
                                   store=self.app.store if self.app else None)
        self.link = BrokerLink(self.metrics.broker, "dead-lettering waits")
        self._beat = lifecycle.Heartbeat()
        self._session: broker.Link | None = None  # consuming on it; served while a message is held
        self._held: NotRegularFile | None = None  # what holds the consumer up, if anything

    def new_service(self, shard: int | None) -> PvService:
        """The PV service of a shard (None: of every meter), which recovers what its files hold."""
        sink = CsvSink(self.cfg.output.directory, shard=shard)
        service = PvService.recovering(self.curve, sink, self.cfg.tz, self.cfg.limits.max_power_w,
                                       shards=self.cfg.fleet.shards)
        # A fleet's meters get no series of their own: 100,000 meters would be 400,000 series,
        # about 280 MB and a 23 MB scrape (measured); its rows are still timed for the lag.
        service.listeners.append(self._on_row_timed if self.fleet else self._on_row)
        if self.app is not None:
            service.listeners.append(self.app.on_row)
        return service

    def services(self) -> list[PvService]:
        """The services writing now: the one, or those of the shards this process writes."""
        if self.service is not None:
            return [self.service]
        return [w.service for w in self.writers if w.service is not None]

    def sinks(self) -> list[CsvSink]:
        """The sinks writing now (retention closes a file before removing it)."""
        return [service.sink for service in self.services()]

    # --- the Service protocol -------------------------------------------------------------

    def threads(self) -> list[tuple[str, Callable[[], None]]]:
        return [("consumer", self.consume_loop), ("housekeeping", self.housekeeping_loop)]

    def housekeeping_loop(self) -> None:
        """Retention at start, then hourly, under the lock the writers hold."""
        while True:
            with self.lock:
                removed = self.retention.run()
            self.metrics.csv_files_removed.inc(removed.files)
            if removed.days and self.app is not None:
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
        if (held := self._held) is not None:
            return False, (f"the consumer holds a message and retries it every "
                           f"{HOLD_SECONDS:.0f} s: {held}")
        return True, (f"consuming {self._what()}; {self.rows_total} rows written, "
                      f"{self.duplicates_total} duplicates dropped")

    def alive(self) -> bool:
        return self._beat.age() < lifecycle.STALL_SECONDS or self.link.blocked

    def status(self) -> str:
        if not self.link.connected:
            return f"RabbitMQ unreachable, reconnecting; {self.rows_total} rows written"
        if (held := self._held) is not None:
            return f"holding a message: {held.path} is {held.kind}; {self.rows_total} rows written"
        return (f"consuming {self._what()}: {self.rows_total} rows written, "
                f"{self.duplicates_total} duplicates dropped")

    def _what(self) -> str:
        if not self.fleet:
            return self.topology.queue
        writing = [shard.label(w.index) for w in self.writers if w.service]
        return (f"{len(self.writers)} shard queues, writing {len(writing)} shard(s)"
                f"{': ' + ' '.join(writing) if writing else ''}")

    def close(self) -> None:
        with self.lock:
            self._sync()
            for sink in self.sinks():
                sink.close()
        for writer in self.writers:
            writer.release()

    # --- rows, syncs and the API ------------------------------------------------------------

    def _on_row(self, row: Row, instant: int) -> None:
        gauges = self._gauges.get(row.meter_id)
        if gauges is None:
            m = self.metrics
            gauges = self._gauges[row.meter_id] = (
                m.last_meter.labels(row.meter_id), m.last_pv.labels(row.meter_id),
                m.last_net.labels(row.meter_id), m.last_written.labels(row.meter_id))
        gauges[0].set(row.meter_w)
        gauges[1].set(round(row.pv_kw * 1000.0, 1))
        gauges[2].set(round(row.net_kw * 1000.0, 1))
        gauges[3].set(instant)
        self._unsynced.append(instant)

    def _on_row_timed(self, row: Row, instant: int) -> None:
        self._unsynced.append(instant)

    def _sync(self) -> None:
        """Make the rows durable (lock held), then record their end-to-end lag."""
        for service in self.services():
            service.sync()
        if self._unsynced:
            self.metrics.syncs.inc()
            self.metrics.written.inc(len(self._unsynced))
            now = time.time()
            for instant in self._unsynced:
                self.metrics.lag.observe(now - instant)
            self._unsynced.clear()

    def process(self, readings: Iterable[Reading], service: PvService | None = None) -> Outcome:
        """Write readings through `service` (by default the one of every meter)."""
        readings = list(readings)
        with self.lock:
            outcome = (service or self.service).process(readings)
        self.rows_total += outcome.written
        self.duplicates_total += outcome.duplicates
        self.metrics.readings.inc(len(readings))
        self.metrics.duplicates.inc(outcome.duplicates)
        return outcome

    def ingest(self, readings: list[Reading]) -> Outcome:
        """For the API: process and make durable before answering.

        A storage failure answers 503 (the API turns the SinkError into it) and stops the daemon
        with exit 73, as on the consuming path: after the restart the day files are read back,
        so the client's retry stores exactly the readings that did not reach the disk."""
        outcome = Outcome()
        try:
            for start in range(0, len(readings), INGEST_CHUNK):
                part = self.process(readings[start:start + INGEST_CHUNK])  # the lock, per chunk
                outcome.written += part.written
                outcome.duplicates += part.duplicates
            with self.lock:
                self._sync()
        except NotRegularFile:  # that day's fault, not the disk's: answered 503, logged once
            raise
        except SinkError as exc:
            log.error("%s; stopping (exit %d): the client is answered 503 and may retry",
                      exc, exc.exit_code)
            self.lifecycle.fail(exc.exit_code)
            raise
        return outcome

    # --- a message's handling -----------------------------------------------------------------

    def handle(self, body: bytes, redelivered: bool = False, service: PvService | None = None,
               poison: PoisonGuard | None = None) -> Outcome:
        """Decode and write one message (by default through the service of every meter).
        InvalidMessage has it dead-lettered: a bad message, or any failure other than storage
        while handling it (decoding included), which would otherwise stop the daemon and,
        redelivered, stop it again after every restart. SinkError (storage) stops the daemon
        with exit 73, nothing unwritten acknowledged. A redelivered message goes through the
        crash record (`poison`): one that ended the process twice is not handled again."""
        self._beat.beat()
        self.metrics.messages.inc()
        self._maybe_reopen()
        poison = poison or self.poison
        key = poison.before(body) if redelivered else None  # InvalidMessage: dead-lettered
        try:
            readings = decode(body, self.cfg.limits.max_power_w)  # InvalidMessage: dead-lettered
            return self.hold(lambda: self.process(readings, service))
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
                link = self._session
                if link is None:
                    raise
                self._held = exc
                until = time.monotonic() + HOLD_SECONDS
                while (left := until - time.monotonic()) > 0:
                    if self.stop.is_set():  # the message goes back to the queue
                        raise ShardBusy("stopping with a message held") from None
                    self._beat.beat()
                    link.sleep(min(left, 0.5))
                continue
            if self._held is not None:
                log.info("the consumer goes on: %s is no longer in the way", self._held.path)
                self._held = None
            return result

    def _maybe_reopen(self) -> None:
        if self.lifecycle.reopen.is_set():
            self.lifecycle.reopen.clear()
            with self.lock:
                self._sync()
                for sink in self.sinks():
                    sink.reopen()
            log.info("SIGHUP: closed the CSV files; the next row reopens its day's file")

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
        self._session = link
        self.link.up()
        log.info("consuming from %s", self._what())

    def handle_message(self, queue: int, body: bytes, redelivered: bool) -> int:
        """A fleet's shard queue goes to its writer; the one queue of a single node to us."""
        if self.writers:
            return self.writers[queue].handle(body, redelivered).written
        return self.handle(body, redelivered).written

    def sync(self) -> None:
        with self.lock:
            self._sync()

    def rejected(self, error: InvalidMessage) -> None:
        self.metrics.rejected.labels(error.reason).inc()

    def idle(self) -> None:
        self._beat.beat()
        self._maybe_reopen()

    def dead_letter_depth(self, depth: int) -> None:
        self.metrics.dead_letters.set(depth)

    def handed_off(self, queue: int) -> None:
        self.writers[queue].release()

    def session_ended(self, error: broker.BrokerError | None) -> None:
        self._session = None
        for writer in self.writers:  # RabbitMQ hands their shards to the standbys
            writer.release()
        if error is not None:
            log.warning("lost the connection to RabbitMQ: %s; reconnecting", error)
        self.link.down(error)

    # --- a fleet's POSTed readings ------------------------------------------------------------

    def publish_posted(self, readings: list[Reading]) -> Outcome:
        """For the API in a fleet: publish to the meter's shard queue, confirmed, before
        answering. The shard's active pvsim-pv, this one or another, writes them (within a
        second or so); only the writer of a shard ever appends to its files. A RabbitMQ that
        does not take them answers 503, and the client may retry (repeats are dropped)."""
        link = None
        try:
            link = self.rabbit.connect()
            publisher = broker.Publisher(link, self.topology)
            for index, part in shard.by_shard(readings, self.cfg.fleet.shards):
                for body in encode_batches(part, len(part), max_power_w=self.cfg.limits.max_power_w):
                    publisher.publish(body, shard_index=index)
        except broker.BrokerError as exc:
            raise SinkError(f"RabbitMQ did not take them: {exc}") from None
        finally:
            broker.close_quietly(link)
        return Outcome(written=len(readings))


class ShardBusy(broker.SessionEnded):
    """A shard's previous writer did not let go in time: the session ends (its messages go
    back to the queue) and the next one starts as the last standby of every shard."""


class ShardWriter:
    """A fleet shard's writing in this pvsim-pv: the handler of its queue's messages.

    RabbitMQ makes one consumer of a shard's queue active and says nothing to it, so the first
    message is the news: the writer then takes the shard's lock (waiting while a previous
    writer finishes) and a fresh service that reads the shard's files back on each day's first
    reading, the exactly-once memory another process may have added to since this one last
    wrote the shard. It gives the shard up (synced, files closed, lock released) when the
    session ends or the balancer hands it to a standby.
    """

    TAKE_SECONDS = 30.0

    def __init__(self, daemon: PvDaemon, index: int) -> None:
        self.daemon, self.index = daemon, index
        self.lock = ShardLock(daemon.cfg.output.directory, index)
        self.poison = PoisonGuard(daemon.cfg.output.directory, index)
        self.service: PvService | None = None

    def handle(self, body: bytes, redelivered: bool = False) -> Outcome:
        if self.service is None:
            self.daemon.hold(self._take)  # a lock file that is not a regular file holds it
        return self.daemon.handle(body, redelivered, self.service, self.poison)

    def sync(self) -> None:
        self.daemon.sync()

    def _take(self) -> None:
        waited = time.monotonic()
        while not self.lock.try_take():
            if time.monotonic() - waited > self.TAKE_SECONDS:
                raise ShardBusy(f"shard {shard.label(self.index)} is still locked by its previous "
                                f"writer after {self.TAKE_SECONDS:.0f} s ({self.lock.journal})")
            if self.daemon.stop.wait(0.05):
                raise ShardBusy("stopping")
        self.service = self.daemon.new_service(self.index)
        self.poison.recover()  # the previous writer is gone: what did it die handling?
        self.daemon.metrics.shards_written.inc()
        self.daemon.metrics.takeovers.inc()
        log.info("shard %s: writing it now (lock taken after %.2f s)", shard.label(self.index),
                 time.monotonic() - waited)

    def release(self) -> None:
        """Sync, close and unlock the shard's files; the next message takes it again."""
        if self.service is None:
            return
        with self.daemon.lock:
            try:
                self.daemon._sync()
                self.service.sink.close()
            finally:
                self.service = None
                self.lock.release()
        self.daemon.metrics.shards_written.dec()
        log.info("shard %s: given up", shard.label(self.index))


def main(argv: Sequence[str] | None = None) -> int:
    return lifecycle.main(PROG, "Consume meter readings from RabbitMQ, add simulated PV power and "
                       "write daily CSV files.", "pv.listen", PvDaemon, argv)


if __name__ == "__main__":
    sys.exit(main())
