"""How message bodies travel from the meter to the PV service in a one-shot run.

Two implementations of one small interface, `deliver(bodies, service, expected)`:
- `InProcess` hands each body straight to the service (broker-less runs, quick studies, tests);
- `RabbitRun` sends them through RabbitMQ on a queue of the run's own: published with confirms
  from a thread with its own connection, consumed with acks by the caller's thread, with the
  same `broker.Consumer` as the pvsim-pv daemon. The queue is deleted afterwards (and
  expires by itself if the run dies), so a run never disturbs running daemons.
Both encode and decode every message, so the two write byte-identical CSVs. A message the
service rejects ends the run at once with MessageRejected (the encoder makes only messages the
decoder accepts, so a reject is a bug to report, not a reading to wait for); through RabbitMQ it
is kept in the run's own dead-letter queue until the run ends.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Protocol

from pvsim.config import BrokerConfig
from pvsim.pipeline import broker
from pvsim.pipeline.messages import InvalidMessage
from pvsim.pipeline.pvservice import Outcome

log = logging.getLogger(__name__)


class MessageRejected(Exception):
    """A message of the run was rejected: the run cannot complete."""

    exit_code = os.EX_SOFTWARE

    def __init__(self, error: InvalidMessage) -> None:
        super().__init__(f"a message of the run was rejected ({error}); the run is incomplete, "
                         "please report this")
        self.error = error


def _never() -> bool:
    return False


class Receiver(Protocol):
    """What a transport delivers to: a PvService, or a run's ShardSet of them."""

    @property
    def rows_total(self) -> int: ...

    def handle(self, body: bytes, redelivered: bool = False) -> Outcome: ...

    def sync(self) -> None: ...


class Transport(Protocol):
    name: str

    def deliver(self, bodies: Iterable[bytes], service: Receiver, expected: int,
                should_stop: Callable[[], bool] = _never) -> None:
        """Get every body to `service` and return once `expected` rows are durable; end with
        KeyboardInterrupt, between two messages and after cleaning up, once `should_stop()`."""


class InProcess(Transport):
    name = "in-process"

    def deliver(self, bodies: Iterable[bytes], service: Receiver, expected: int,
                should_stop: Callable[[], bool] = _never) -> None:
        for body in bodies:
            if should_stop():
                service.sync()  # what was written so far is kept
                raise KeyboardInterrupt
            try:
                service.handle(body)
            except InvalidMessage as error:
                service.sync()  # what was written so far is kept
                raise MessageRejected(error) from None
        service.sync()


class RabbitRun(Transport):
    name = "rabbitmq"

    def __init__(self, cfg: BrokerConfig) -> None:
        self.cfg = cfg
        self.topology = broker.Topology.for_run(cfg, uuid.uuid4().hex[:12], expires_ms=600_000)

    def deliver(self, bodies: Iterable[bytes], service: Receiver, expected: int,
                should_stop: Callable[[], bool] = _never) -> None:
        link = broker.connect(self.cfg)  # fails fast, with a clear message, if unreachable
        failure: list[BaseException] = []
        finished = threading.Event()  # the consuming side is done: publish no more

        def publish_all() -> None:
            publishing = None
            try:
                publishing = broker.connect(self.cfg)
                publisher = broker.Publisher(publishing, self.topology)
                for body in bodies:
                    if finished.is_set() or should_stop():
                        return
                    publisher.publish(body)
            except BaseException as exc:  # reported by the consuming thread
                failure.append(exc)
            finally:
                broker.close_quietly(publishing)

        hooks = _RunHooks(service, expected, lambda: bool(failure) or should_stop())
        thread = threading.Thread(target=publish_all, name="pvsim-run-publisher", daemon=True)
        try:
            thread.start()
            broker.Consumer(link, self.topology, hooks, prefetch=self.cfg.prefetch,
                            max_rows=64 * self.cfg.batch_size).run()
            if hooks.rejects:
                raise MessageRejected(hooks.rejects[0])
            if failure:
                raise failure[0]
            if service.rows_total < expected:  # asked to stop
                raise KeyboardInterrupt
        except broker.ConnectionLost as exc:
            raise broker.BrokerUnavailable(
                f"lost the connection to RabbitMQ at {broker.where(self.cfg)} during the run: "
                f"{exc}") from None
        finally:
            finished.set()
            thread.join(timeout=10)
            self._delete_queues(link)
            broker.close_quietly(link)

    def _delete_queues(self, link: broker.Link) -> None:
        try:
            if link.is_open:
                self.topology.delete_private(link.channel())
        except broker.BrokerError as exc:
            log.warning("could not delete the run's queues %s (they expire by themselves): %s",
                        self.topology.queue, exc)


class _RunHooks(broker.ConsumerHooks):
    """A run's consumer: every message to the receiver, until the expected rows are durable, a
    message is rejected (kept in the run's dead-letter queue), or `stopping()`."""

    def __init__(self, service: Receiver, expected: int, stopping: Callable[[], bool]) -> None:
        self.service, self.expected, self.stopping = service, expected, stopping
        self.rejects: list[InvalidMessage] = []

    def handle_message(self, queue: int, body: bytes, redelivered: bool) -> int:
        return self.service.handle(body, redelivered).written

    def sync(self) -> None:
        self.service.sync()

    def rejected(self, error: InvalidMessage) -> None:
        self.rejects.append(error)

    def should_stop(self) -> bool:
        return bool(self.rejects) or self.stopping() or self.service.rows_total >= self.expected
