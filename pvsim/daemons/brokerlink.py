"""A daemon's view of its RabbitMQ connection: connected, blocked by a resource alarm, ever up.

The thread that owns the connection writes it (through the daemon's broker hooks); /healthz,
the systemd status line and the metrics read it. Each change is logged once and mirrored in the
`pvsim_broker_*` metrics.
"""

from __future__ import annotations

import logging

from pvsim.daemons.metrics import BrokerMetrics

log = logging.getLogger(__name__)


class BrokerLink:
    def __init__(self, metrics: BrokerMetrics, while_blocked: str) -> None:
        self.metrics = metrics
        self.while_blocked = while_blocked  # what the daemon does meanwhile, for the log line
        self.connected = False
        self.blocked = False
        self.ever_connected = False

    def up(self) -> None:
        if self.ever_connected:
            self.metrics.reconnects.inc()
        self.ever_connected = self.connected = True
        self.metrics.connected.set(1)

    def down(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.metrics.connection_errors.inc()
        self.connected = self.blocked = False
        self.metrics.connected.set(0)
        self.metrics.blocked.set(0)

    def on_blocked(self, blocked: bool) -> None:
        """RabbitMQ blocked or unblocked the connection (SessionHooks.blocked): a memory or disk
        alarm. Called from inside the broker link's I/O: it only sets flags and logs."""
        self.blocked = blocked
        self.metrics.blocked.set(1 if blocked else 0)
        if blocked:
            log.warning("RabbitMQ blocked the connection (memory or disk alarm): %s until it lifts",
                        self.while_blocked)
        else:
            log.info("RabbitMQ unblocked the connection")
