"""The PV services pvsim-pv writes through now, shared in turn by everything that writes.

One node has one service, for every meter, opened at start; a fleet node one per shard it
writes, opened when it takes the shard and closed when it gives it up (see shardwriter). The
consuming thread (a message at a time), the API's POSTs (a chunk at a time, see ingest),
retention, SIGHUP and a shard given up all write under one FairLock, in turn: neither stalls the
other's broker I/O for long. A sync makes every open service's rows durable at once, and only
then are they counted as written (see rowmetrics).
"""

from __future__ import annotations

from collections.abc import Iterable

from pvsim import config as configmod
from pvsim.daemons.fairlock import FairLock
from pvsim.daemons.metrics import PvMetrics
from pvsim.daemons.rowmetrics import RowMetrics
from pvsim.model.pvmodels import PvModel
from pvsim.model.reading import Reading
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.pvservice import Outcome, PvService, RowListener


class ServicePool:
    """The open PV services, the lock they are written under and the totals of what they wrote.

    `lock` is public for what must not interleave with a write but is no write itself
    (retention removing a day's files); it is not reentrant, and no method here may be called
    with it held."""

    def __init__(self, cfg: configmod.Config, model: PvModel, rows: RowMetrics,
                 metrics: PvMetrics) -> None:
        self.cfg, self.model, self.rows, self.metrics = cfg, model, rows, metrics
        self.lock = FairLock()
        self.listeners: list[RowListener] = [rows.listener()]
        self._services: list[PvService] = []
        self.rows_total = self.duplicates_total = 0

    def listen(self, listener: RowListener) -> None:
        """Tell `listener` of every row written from now on, by open services and later ones."""
        with self.lock:
            self.listeners.append(listener)
            for service in self._services:
                service.listeners.append(listener)

    def open(self, shard: int | None) -> PvService:
        """A new service for a shard (None: every meter), which recovers what its files hold.
        SinkError when the output directory cannot be written (exit 73)."""
        cfg = self.cfg
        sink = CsvSink(cfg.output.directory, shard=shard)
        service = PvService.recovering(self.model, sink, cfg.tz, cfg.limits.max_power_w,
                                       shards=cfg.fleet.shards)
        with self.lock:
            service.listeners.extend(self.listeners)
            self._services.append(service)
        return service

    def services(self) -> list[PvService]:
        """The services writing now (retention drops what they remember of a removed day)."""
        return list(self._services)

    def process(self, readings: Iterable[Reading], service: PvService) -> Outcome:
        """Write readings through one of the open services, in turn with the other writers."""
        readings = list(readings)
        with self.lock:
            outcome = service.process(readings)
        self.rows_total += outcome.written
        self.duplicates_total += outcome.duplicates
        self.metrics.readings.inc(len(readings))
        self.metrics.duplicates.inc(outcome.duplicates)
        return outcome

    def sync(self) -> None:
        """Make every open service's rows durable, then record them as written."""
        with self.lock:
            self._sync()

    def close(self, service: PvService) -> None:
        """Sync, close the service's files and forget it (a shard given up)."""
        with self.lock:
            try:
                self._sync()
                service.sink.close()
            finally:
                self._services.remove(service)

    def reopen(self) -> None:
        """Sync and close every file; the next row reopens its day's file (logrotate)."""
        with self.lock:
            self._sync()
            for service in self._services:
                service.sink.reopen()

    def close_files(self) -> None:
        """Sync and close every file at stop."""
        with self.lock:
            self._sync()
            for service in self._services:
                service.sink.close()

    def _sync(self) -> None:
        for service in self._services:
            service.sync()
        self.rows.synced()
