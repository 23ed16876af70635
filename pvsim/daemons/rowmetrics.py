"""What pvsim-pv's rows say to Prometheus: the latest row per meter, and each row's end-to-end lag.

A row is heard of as it is appended (a PvService listener) but counted as written, and its lag
(reading instant to durable row) observed, only once a sync has made it durable: that is the
moment the reading is acknowledged, the one an operator's lag alert is about.

On one node every meter gets its own gauges (meter, PV and net power, newest instant). A fleet's
meters get none: 100,000 meters would be 400,000 series, about 280 MB and a 23 MB scrape
(measured); their rows are still timed for the lag.
"""

from __future__ import annotations

import time

from prometheus_client import Gauge

from pvsim.daemons.metrics import PvMetrics
from pvsim.pipeline.csvformat import Row
from pvsim.pipeline.pvservice import RowListener


class RowMetrics:
    """The row listener of pvsim-pv's services and the metrics of the rows a sync made durable.

    Not thread-safe by itself: its listener and `synced` are called with the services' lock held."""

    def __init__(self, metrics: PvMetrics, *, per_meter: bool) -> None:
        self.metrics = metrics
        self.per_meter = per_meter
        self._unsynced: list[int] = []  # instants of rows appended since the last sync
        self._gauges: dict[str, tuple[Gauge, Gauge, Gauge, Gauge]] = {}

    def listener(self) -> RowListener:
        """The PvService listener to register: a row was appended (not yet durable)."""
        return self._gauge_and_time if self.per_meter else self._time

    def _gauge_and_time(self, row: Row, nbytes: int) -> None:
        gauges = self._gauges.get(row.meter_id)
        if gauges is None:
            m = self.metrics
            gauges = self._gauges[row.meter_id] = (
                m.last_meter.labels(row.meter_id), m.last_pv.labels(row.meter_id),
                m.last_net.labels(row.meter_id), m.last_written.labels(row.meter_id))
        gauges[0].set(row.meter_w)
        gauges[1].set(round(row.pv_kw * 1000.0, 1))
        gauges[2].set(round(row.net_kw * 1000.0, 1))
        gauges[3].set(row.instant)
        self._unsynced.append(row.instant)

    def _time(self, row: Row, nbytes: int) -> None:
        self._unsynced.append(row.instant)

    def synced(self) -> None:
        """The rows heard of so far are durable: count them and record their lag."""
        if not self._unsynced:
            return
        self.metrics.syncs.inc()
        self.metrics.written.inc(len(self._unsynced))
        now = time.time()
        for instant in self._unsynced:
            self.metrics.lag.observe(now - instant)
        self._unsynced.clear()
