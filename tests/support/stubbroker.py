"""An in-process broker for tests of the daemons' logic without RabbitMQ (as dramatiq's StubBroker).

`StubBroker` implements the boundary a daemon is given (`pvsim.pipeline.broker.Broker`:
`connect`, `run_sessions`), and its links and channels the few AMQP operations pvsim's own
`Topology`, `Publisher` and `Consumer` make, so that those real classes run unchanged on it:
declarations, direct and fanout routing, confirmed publishing (an unroutable mandatory message
is refused), consuming with a prefetch window, acks (one, or every tag up to one), rejects with
requeue (to the message's own place in its queue), and dead-lettering through the dead-letter
exchange. `lose_connection_at_next_ack()` simulates a lost link: that ack never arrives, the
link fails with ConnectionLost, and what it had delivered and not acknowledged goes back to its
place in its queue, marked redelivered, for the next session, as RabbitMQ does. Everything runs
in the calling threads, in milliseconds.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace

import pika

from pvsim.pipeline.broker import ConnectionLost, PublishRefused, SessionEnded


@dataclass
class StubMessage:
    body: bytes
    properties: pika.BasicProperties
    seq: int  # its place in its queue, kept when it is returned (as RabbitMQ keeps it)
    redelivered: bool = False


@dataclass
class _Consumer:
    tag: str
    queue: str
    callback: object
    auto_ack: bool
    channel: "StubChannel"


@dataclass
class StubBroker:
    """The broker: exchanges, queues, and the links open on it."""

    queues: dict[str, deque[StubMessage]] = field(default_factory=dict)
    direct: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    fanout: dict[str, list[str]] = field(default_factory=dict)
    consumers: list[_Consumer] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    acked: int = 0
    sessions: int = 0
    _lose_at_ack: bool = False
    _tags: itertools.count = field(default_factory=itertools.count)
    _seq: itertools.count = field(default_factory=itertools.count)

    def requeue(self, queue: str, message: StubMessage) -> None:
        """A returned message goes back to its place in its queue, marked redelivered."""
        with self.lock:
            message.redelivered = True
            messages = self.queues[queue]
            messages.append(message)
            self.queues[queue] = deque(sorted(messages, key=lambda m: m.seq))

    # --- the Broker boundary ---------------------------------------------------------------

    def connect(self) -> "StubLink":
        return StubLink(self)

    def run_sessions(self, session, hooks, retry_on=(SessionEnded,)) -> None:
        """As broker.run_sessions, without the backoff: a session a lost link ended is
        followed at once by another on a fresh link, until `hooks.should_stop()`."""
        retry_on = (ConnectionLost, *retry_on)
        while not hooks.should_stop():
            link = self.connect()
            self.sessions += 1
            error = None
            try:
                session(link)
            except retry_on as exc:
                error = exc
            finally:
                link.close()
                hooks.session_ended(error)
            if error is None:
                return

    # --- what a test does ------------------------------------------------------------------

    def publish(self, exchange: str, routing_key: str, body: bytes,
                properties: pika.BasicProperties | None = None) -> bool:
        """Route a message as RabbitMQ would; False when no queue takes it."""
        properties = properties or pika.BasicProperties()
        with self.lock:
            targets = self.fanout.get(exchange) or self.direct.get((exchange, routing_key), [])
            for queue in targets:
                self.queues[queue].append(StubMessage(body, properties, next(self._seq)))
            return bool(targets)

    def lose_connection_at_next_ack(self) -> None:
        self._lose_at_ack = True

    def settled(self, queue: str) -> bool:
        """The queue is empty and nothing taken from it waits for an ack."""
        with self.lock:
            return not self.queues.get(queue) and not any(
                m.queue == queue for c in self._channels() for m in c.unacked.values())

    def _channels(self) -> list["StubChannel"]:
        return list({id(c.channel): c.channel for c in self.consumers}.values())

    def _deliver(self) -> int:
        """Give each consumer what its channel's prefetch window allows; how many were given."""
        given = 0
        with self.lock:
            for consumer in list(self.consumers):
                channel = consumer.channel
                queue = self.queues.get(consumer.queue)
                while queue and (consumer.auto_ack or len(channel.unacked) < channel.prefetch):
                    message = queue.popleft()
                    tag = channel.next_tag()
                    if not consumer.auto_ack:
                        channel.unacked[tag] = _Unacked(consumer.queue, message)
                    method = SimpleNamespace(delivery_tag=tag, redelivered=message.redelivered,
                                             consumer_tag=consumer.tag)
                    consumer.callback(channel, method, message.properties, message.body)
                    given += 1
        return given


@dataclass
class _Unacked:
    queue: str
    message: StubMessage


class StubLink:
    """A connection to the stub broker: what `pvsim.pipeline.broker.Link` offers."""

    def __init__(self, broker: StubBroker) -> None:
        self.broker = broker
        self.is_open = True
        self.channels: list[StubChannel] = []

    def channel(self) -> "StubChannel":
        self._check()
        channel = StubChannel(self)
        self.channels.append(channel)
        return channel

    @property
    def connection(self) -> "StubLink":
        """What a pika channel's `connection` is: here, the link (it opens channels)."""
        return self

    def poll(self, seconds: float = 0.0) -> None:
        self._check()
        if not self.broker._deliver() and seconds:
            time.sleep(min(seconds, 0.001))

    def sleep(self, seconds: float) -> None:
        self.poll(seconds)

    def close(self) -> None:
        if self.is_open:
            self._lose()

    def _lose(self) -> None:
        """The link goes: its consumers with it, its unacked messages back to their queues'
        heads, in order, marked redelivered."""
        with self.broker.lock:
            self.is_open = False
            for channel in self.channels:
                channel.requeue_unacked()
            self.broker.consumers = [c for c in self.broker.consumers
                                     if c.channel.link is not self]

    def _check(self) -> None:
        if not self.is_open:
            raise ConnectionLost("connection lost (stub broker)")


class StubChannel:
    """The AMQP operations pvsim's Topology, Publisher and Consumer make on a pika channel."""

    def __init__(self, link: StubLink) -> None:
        self.link, self.broker = link, link.broker
        self.connection = link
        self.is_open = True
        self.prefetch = 0
        self.unacked: dict[int, _Unacked] = {}
        self._tags = itertools.count(1)

    def next_tag(self) -> int:
        return next(self._tags)

    # declarations
    def exchange_declare(self, exchange: str, exchange_type: str = "direct", **_) -> None:
        self.link._check()
        with self.broker.lock:
            if exchange_type == "fanout":
                self.broker.fanout.setdefault(exchange, [])

    def queue_declare(self, queue: str, passive: bool = False, **_) -> SimpleNamespace:
        self.link._check()
        with self.broker.lock:
            messages = self.broker.queues.setdefault(queue, deque())
            consumers = sum(1 for c in self.broker.consumers if c.queue == queue)
        return SimpleNamespace(method=SimpleNamespace(message_count=len(messages),
                                                      consumer_count=consumers))

    def queue_bind(self, queue: str, exchange: str, routing_key: str | None = None) -> None:
        self.link._check()
        with self.broker.lock:
            if exchange in self.broker.fanout:
                routes = self.broker.fanout[exchange]
            else:
                routes = self.broker.direct.setdefault((exchange, routing_key or queue), [])
            if queue not in routes:  # declarations are idempotent, bindings too
                routes.append(queue)

    def queue_delete(self, queue: str) -> None:
        with self.broker.lock:
            self.broker.queues.pop(queue, None)

    # publishing
    def confirm_delivery(self) -> None:
        self.link._check()

    def basic_publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: pika.BasicProperties | None = None,
                      mandatory: bool = False) -> None:
        self.link._check()
        if not self.broker.publish(exchange, routing_key, body, properties) and mandatory:
            raise PublishRefused(f"unroutable: {exchange} {routing_key} (stub broker)")

    # consuming
    def basic_qos(self, prefetch_count: int = 0) -> None:
        self.prefetch = prefetch_count

    def basic_consume(self, queue: str, on_message_callback, auto_ack: bool = False) -> str:
        self.link._check()
        tag = f"stub.{next(self.broker._tags)}"
        with self.broker.lock:
            self.broker.consumers.append(_Consumer(tag, queue, on_message_callback, auto_ack,
                                                   self))
        return tag

    def basic_cancel(self, tag: str) -> None:
        self.link._check()
        with self.broker.lock:
            self.broker.consumers = [c for c in self.broker.consumers if c.tag != tag]

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.link._check()
        if self.broker._lose_at_ack:
            self.broker._lose_at_ack = False
            self.link._lose()
            self.link._check()
        with self.broker.lock:
            tags = [t for t in self.unacked if t <= delivery_tag] if multiple else [delivery_tag]
            for tag in tags:
                del self.unacked[tag]
                self.broker.acked += 1

    def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        self.link._check()
        with self.broker.lock:
            held = self.unacked.pop(delivery_tag)
            if requeue:
                self.broker.requeue(held.queue, held.message)

    def requeue_unacked(self) -> None:
        for held in self.unacked.values():
            self.broker.requeue(held.queue, held.message)
        self.unacked.clear()
        self.is_open = False

    def close(self) -> None:
        self.is_open = False
