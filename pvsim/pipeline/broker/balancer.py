"""Fleet balancing: spreading a fleet's shards over the pvsim-pv instances consuming them."""

from __future__ import annotations

import logging
import time

from pvsim.pipeline.broker.topology import Topology

log = logging.getLogger(__name__)


class Balancer:
    """Spreads a fleet's shards over the pvsim-pv instances consuming them.

    RabbitMQ 3.10 makes the first consumer of a single-active-consumer queue its active one
    (consumer priorities count for it only from 3.13 on), so the first pvsim-pv to start would
    write every shard and the others would only stand by. Every BALANCE_SECONDS, an instance
    that is active for more shards than its fair share, ceil(shards / instances) (instances:
    the consumers of the topology's members queue, which every instance consumes), gives
    the surplus up: it cancels those consumers and subscribes again, last in the line, and the
    next standby becomes active. Only instances above their share give, so it settles (16
    shards over 3 instances: 6, 6 and 4). A shard counts as active here when it delivered in
    the last ACTIVE_SECONDS: AMQP 0-9-1 does not tell a consumer that it became active.
    """

    BALANCE_SECONDS = 10.0
    ACTIVE_SECONDS = 5.0

    def __init__(self, channel, topology: Topology) -> None:
        self.channel, self.topology = channel, topology
        self.last: dict[int, float] = {}
        self.due = time.monotonic() + self.BALANCE_SECONDS

    def delivered(self, index: int) -> None:
        self.last[index] = time.monotonic()

    def surplus(self) -> list[int]:
        """The shards to give up now (most often none)."""
        now = time.monotonic()
        if now < self.due:
            return []
        self.due = now + self.BALANCE_SECONDS
        active = sorted(i for i, at in self.last.items() if now - at < self.ACTIVE_SECONDS)
        instances = self.channel.queue_declare(self.topology.members_queue, passive=True
                                               ).method.consumer_count
        share = -(-self.topology.shards // max(1, instances))
        if len(active) <= share:
            return []
        given = active[share:]
        for index in given:
            self.last.pop(index, None)
        log.info("active for %d shards, a fair share of %d over %d instances: handing %s to "
                 "standbys", len(active), share, instances,
                 ", ".join(self.topology.queues[i] for i in given))
        return given
