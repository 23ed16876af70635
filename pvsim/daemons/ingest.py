"""Where the JOI API's POSTed readings go: two strategies behind the API's one `Ingest` interface.

Both are called with a POST's validated readings and answer with an Outcome once the readings are
safe; the API answers 503 on a SinkError and the client may retry (repeats are dropped).

- `LocalIngest` (one node): written through the node's service, in chunks under the lock the
  consumer shares, and fsynced before the answer.
- `PublishedIngest` (a fleet): published, confirmed, to the meter's shard queue; the shard's
  active pvsim-pv, this one or another, writes them within a second or so.

Why not one path. In a fleet there is no choice: only the writer of a shard may append to its
files, and the node that took the POST may not be it. On one node, publishing too would cost
what the single node promises today: (1) a 200 means the rows are durable *and readable*, so a
GET right after a POST sees them (test_a_store_is_visible_at_once_and_after_a_restart); through
RabbitMQ the answer comes before the consumer has written them; (2) the API stores readings while
RabbitMQ is down or blocked (its only dependency is the disk), where publishing answers 503; (3)
every posted reading would be encoded, confirmed, consumed and decoded again before the same
write, with a connection per POST. So the two stay, named for what they do, behind one interface.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pvsim.config import Config
from pvsim.daemons.servicepool import ServicePool
from pvsim.model import shard
from pvsim.model.reading import Reading
from pvsim.pipeline import broker
from pvsim.pipeline.csvsink import NotRegularFile, SinkError
from pvsim.pipeline.messages import encode_batches
from pvsim.pipeline.pvservice import Outcome, PvService

log = logging.getLogger("pvsim.pv")

INGEST_CHUNK = 5000  # readings of a POST processed per turn of the lock (a few tens of ms)


class LocalIngest:
    """One node's POSTs: processed and made durable before answering.

    A chunk at a time under the services' fair lock, so a large POST lets the consumer in after
    each chunk and the consumer keeps its broker's heartbeats. A storage failure answers 503
    (the API turns the SinkError into it) and stops the daemon with exit 73 (`fail`), as on the
    consuming path: after the restart the day files are read back, so the client's retry stores
    exactly the readings that did not reach the disk."""

    def __init__(self, pool: ServicePool, service: PvService, fail: Callable[[int], None]) -> None:
        self.pool, self.service, self.fail = pool, service, fail

    def __call__(self, readings: list[Reading]) -> Outcome:
        outcome = Outcome()
        try:
            for start in range(0, len(readings), INGEST_CHUNK):
                part = self.pool.process(readings[start:start + INGEST_CHUNK], self.service)
                outcome.written += part.written
                outcome.duplicates += part.duplicates
            self.pool.sync()
        except NotRegularFile:  # that day's fault, not the disk's: answered 503, logged once
            raise
        except SinkError as exc:
            log.error("%s; stopping (exit %d): the client is answered 503 and may retry",
                      exc, exc.exit_code)
            self.fail(exc.exit_code)
            raise
        return outcome


class PublishedIngest:
    """A fleet node's POSTs: published to each meter's shard queue, confirmed, before answering.

    A RabbitMQ that does not take them answers 503 (SinkError), and the client may retry. The
    Outcome counts every reading as written: duplicates are dropped by the shard's writer."""

    def __init__(self, cfg: Config, topology: broker.Topology, rabbit: broker.Broker) -> None:
        self.cfg, self.topology, self.rabbit = cfg, topology, rabbit

    def __call__(self, readings: list[Reading]) -> Outcome:
        link = None
        try:
            link = self.rabbit.connect()
            publisher = broker.Publisher(link, self.topology)
            for index, part in shard.by_shard(readings, self.cfg.fleet.shards):
                for body in encode_batches(part, len(part),
                                           max_power_w=self.cfg.limits.max_power_w):
                    publisher.publish(body, shard_index=index)
        except broker.BrokerError as exc:
            raise SinkError(f"RabbitMQ did not take them: {exc}") from None
        finally:
            broker.close_quietly(link)
        return Outcome(written=len(readings))
