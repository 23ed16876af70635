"""Prometheus metrics of the two daemons, each on a registry of its own.

Names follow the Prometheus conventions: prefix `pvsim_`, base units in the name (`_seconds`,
`_watts`), `_total` for counters; `promtool check metrics` passes on a scrape (tested). A daemon
gets its own CollectorRegistry (not the global one), so tests can run several in one process.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from pvsim import __version__
from pvsim.pipeline.messages import Reason

# Publish-confirm round trips on loopback are around a millisecond; a blocked broker takes longer.
CONFIRM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                   30, 60)
# Reading instant to durable row: about a second in steady state, hours after an outage.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)


def registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors and pvsim_build_info."""
    reg = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    info = Gauge("pvsim_build_info", "pvsim version and Python it runs on; always 1",
                 ["version", "python_version"], registry=reg)
    info.labels(__version__, platform.python_version()).set(1)
    return reg


class BrokerMetrics:
    def __init__(self, reg: CollectorRegistry) -> None:
        self.connected = Gauge("pvsim_broker_connected",
                               "1 while connected to RabbitMQ, else 0", registry=reg)
        self.blocked = Gauge("pvsim_broker_blocked",
                             "1 while RabbitMQ blocks the connection (memory or disk alarm)",
                             registry=reg)
        self.reconnects = Counter("pvsim_broker_reconnects_total",
                                  "Connections to RabbitMQ re-established after losing one",
                                  registry=reg)
        self.connection_errors = Counter("pvsim_broker_connection_errors_total",
                                         "Connections to RabbitMQ lost", registry=reg)


class MeterMetrics:
    def __init__(self, reg: CollectorRegistry) -> None:
        self.broker = BrokerMetrics(reg)
        self.produced = Counter("pvsim_meter_readings_produced_total",
                                "Readings taken by the meter (one per second per meter)",
                                ["meter"], registry=reg)
        self.published = Counter("pvsim_meter_readings_published_total",
                                 "Readings confirmed by RabbitMQ", ["meter"], registry=reg)
        self.messages = Counter("pvsim_meter_messages_published_total",
                                "AMQP messages confirmed by RabbitMQ", registry=reg)
        self.clipped = Counter("pvsim_meter_readings_clipped_total",
                               "Readings the model put above meter.max_w, sent as meter.max_w",
                               ["meter"], registry=reg)
        self.dropped = Counter("pvsim_meter_readings_dropped_total",
                               "Readings dropped because the buffer was full (oldest first)",
                               registry=reg)
        self.publish_errors = Counter("pvsim_meter_publish_errors_total",
                                      "Publishes not confirmed (nack, unroutable or lost link); "
                                      "the readings are published again", registry=reg)
        self.buffer = Gauge("pvsim_meter_buffer_readings",
                            "Readings waiting for RabbitMQ's confirm", registry=reg)
        self.buffer_capacity = Gauge("pvsim_meter_buffer_capacity_readings",
                                     "Readings the buffer holds at most (meter.buffer_size)",
                                     registry=reg)
        self.last_power = Gauge("pvsim_meter_last_power_watts", "Power of the latest reading",
                                ["meter"], registry=reg)
        self.last_confirmed = Gauge("pvsim_meter_last_confirmed_timestamp_seconds",
                                    "Instant (Unix time) of the newest confirmed reading",
                                    ["meter"], registry=reg)
        self.confirm_seconds = Histogram("pvsim_meter_publish_confirm_seconds",
                                         "Time from publishing a message to RabbitMQ's confirm",
                                         buckets=CONFIRM_BUCKETS, registry=reg)


class FreeSpace(Collector):
    """pvsim_pv_output_free_bytes and _size_bytes: the output file system, read at each scrape."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def space(self) -> tuple[int, int] | None:
        """(free bytes, size in bytes) of the output file system; None when it cannot be read."""
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def free_bytes(self) -> int | None:
        space = self.space()
        return None if space is None else space[0]

    def collect(self) -> Iterator[Metric]:
        space = self.space()
        if space is None:
            return
        free = GaugeMetricFamily("pvsim_pv_output_free_bytes",
                                 "Space left for the CSV files (output.directory's file system)")
        free.add_metric([], space[0])
        size = GaugeMetricFamily("pvsim_pv_output_size_bytes",
                                 "Size of output.directory's file system")
        size.add_metric([], space[1])
        yield free
        yield size


class PvMetrics:
    def __init__(self, reg: CollectorRegistry) -> None:
        self.broker = BrokerMetrics(reg)
        self.messages = Counter("pvsim_pv_messages_consumed_total",
                                "AMQP messages received (valid or not)", registry=reg)
        self.readings = Counter("pvsim_pv_readings_consumed_total",
                                "Readings received in valid messages", registry=reg)
        self.written = Counter("pvsim_pv_readings_written_total",
                               "Readings written to the CSV and fsynced (one row each)", registry=reg)
        self.rejected = Counter("pvsim_pv_messages_rejected_total",
                                "Messages sent to the dead-letter queue, by reason", ["reason"],
                                registry=reg)
        self.duplicates = Counter("pvsim_pv_duplicates_dropped_total",
                                  "Readings dropped because their row was already written",
                                  registry=reg)
        self.syncs = Counter("pvsim_pv_csv_syncs_total", "fsyncs of the CSV files", registry=reg)
        self.dead_letters = Gauge("pvsim_pv_dead_letter_messages",
                                  "Messages in the dead-letter queue", registry=reg)
        self.dead_letter_limit = Gauge("pvsim_pv_dead_letter_max_messages",
                                       "broker.dead_letter_max_length (0: no limit); beyond it "
                                       "the oldest dead letters are dropped", registry=reg)
        self.dead_letter_bytes_limit = Gauge("pvsim_pv_dead_letter_max_bytes",
                                             "broker.dead_letter_max_bytes (0: no limit); beyond "
                                             "it the oldest dead letters are dropped", registry=reg)
        self.csv_files_removed = Counter(
            "pvsim_pv_csv_files_removed_total",
            "Daily CSVs removed for being older than output.retention_days", registry=reg)
        self.shards_written = Gauge("pvsim_pv_shards_written",
                                    "Fleet shards this pvsim-pv writes now (their active consumer)",
                                    registry=reg)
        self.takeovers = Counter("pvsim_pv_shard_takeovers_total",
                                 "Times this pvsim-pv took a fleet shard over (its lock taken, "
                                 "its files read back)", registry=reg)
        self.last_meter = Gauge("pvsim_pv_last_meter_watts", "Meter power of the latest row",
                                ["meter"], registry=reg)
        self.last_pv = Gauge("pvsim_pv_last_pv_watts", "PV power of the latest row", ["meter"],
                             registry=reg)
        self.last_net = Gauge("pvsim_pv_last_net_watts",
                              "Net power (meter minus PV) of the latest row", ["meter"],
                              registry=reg)
        self.last_written = Gauge("pvsim_pv_last_written_timestamp_seconds",
                                  "Instant (Unix time) of the newest row written", ["meter"],
                                  registry=reg)
        self.lag = Histogram("pvsim_pv_end_to_end_lag_seconds",
                             "Time from a reading's instant to its row being durable on disk",
                             buckets=LAG_BUCKETS, registry=reg)
        for reason in Reason:  # every one present at 0 from the start, so rate() works
            self.rejected.labels(reason.value)
