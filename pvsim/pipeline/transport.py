"""How message bodies travel from the meter to the PV service in a one-shot run.

Two implementations of one small interface, `deliver(bodies, service, expected)`:
- `InProcess` hands each body straight to the service (broker-less runs, quick studies, tests);
- `RabbitRun` sends them through RabbitMQ on a queue of the run's own: published with confirms
  from a thread with its own connection, consumed with acks by the caller's thread, with the
  same `broker.consume` loop as the pvsim-pv daemon. The queue is deleted afterwards (and
  expires by itself if the run dies), so a run never disturbs running daemons.
Both encode and decode every message, so the two write byte-identical CSVs.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from typing import Protocol

from pvsim.config import BrokerConfig
from pvsim.pipeline import broker
from pvsim.pipeline.messages import InvalidMessage
from pvsim.pipeline.pvservice import PvService

log = logging.getLogger(__name__)


class Transport(Protocol):
    name: str

    def deliver(self, bodies: Iterable[bytes], service: PvService, expected: int) -> None:
        """Get every body to `service` and return once `expected` rows are durable."""


class InProcess:
    name = "in-process"

    def __init__(self) -> None:
        self.dead_letters: list[InvalidMessage] = []

    def deliver(self, bodies: Iterable[bytes], service: PvService, expected: int) -> None:
        for body in bodies:
            try:
                service.handle(body)
            except InvalidMessage as error:
                self.dead_letters.append(error)
                log.warning("rejected a message: %s", error)
        service.sync()


class RabbitRun:
    name = "rabbitmq"

    def __init__(self, cfg: BrokerConfig) -> None:
        self.cfg = cfg
        queue = f"{cfg.queue}.run.{uuid.uuid4().hex[:12]}"
        self.topology = broker.Topology.from_config(cfg, queue=queue, expires_ms=600_000)

    def deliver(self, bodies: Iterable[bytes], service: PvService, expected: int) -> None:
        consumer = broker.connect(self.cfg)  # fails fast, with a clear message, if unreachable
        failure: list[BaseException] = []

        def publish_all() -> None:
            connection = None
            try:
                connection = broker.connect(self.cfg)
                publisher = broker.Publisher(connection, self.topology)
                for body in bodies:
                    publisher.publish(body)
            except BaseException as exc:  # reported by the consuming thread
                failure.append(exc)
            finally:
                broker.close_quietly(connection)

        thread = threading.Thread(target=publish_all, name="pvsim-run-publisher", daemon=True)
        try:
            thread.start()
            broker.consume(consumer, self.topology, service, prefetch=self.cfg.prefetch,
                           max_pending=64,
                           should_stop=lambda: bool(failure) or service.rows_total >= expected)
            if failure:
                raise failure[0]
        except broker.CONNECTION_ERRORS as exc:
            raise broker.BrokerUnavailable(
                f"lost the connection to RabbitMQ at {broker.redact(self.cfg.url)} during the run: "
                f"{broker.describe_error(exc)}") from None
        finally:
            thread.join(timeout=10)
            self._delete_queue(consumer)
            broker.close_quietly(consumer)

    def _delete_queue(self, connection) -> None:
        try:
            if connection.is_open:
                connection.channel().queue_delete(self.topology.queue)
        except broker.CONNECTION_ERRORS as exc:
            log.warning("could not delete run queue %s (it expires by itself): %s",
                        self.topology.queue, exc)

