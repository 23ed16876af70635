"""Acknowledged consuming: handle each message, sync, then acknowledge in batches.

Consumed messages are acknowledged only after the hooks have made their rows durable: the
consumer calls `hooks.sync()`, then acknowledges everything up to that delivery at once. A
message the hooks reject (InvalidMessage) is dead-lettered, confirmed, and only then acked.
Every call into pika is made under `errors.translated`: a lost link leaves `run` as
ConnectionLost, and what was delivered and not acknowledged is redelivered.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import pika

from pvsim.pipeline.broker.balancer import Balancer
from pvsim.pipeline.broker.connection import Link
from pvsim.pipeline.broker.deadletter import dead_letter
from pvsim.pipeline.broker.errors import translated
from pvsim.pipeline.broker.hooks import ConsumerHooks
from pvsim.pipeline.broker.topology import Topology
from pvsim.pipeline.messages import InvalidMessage

log = logging.getLogger(__name__)

DEPTH_SECONDS = 30.0  # how often an idle consumer looks at the dead-letter queue's depth
DEPTH_AFTER_REJECT_SECONDS = 1.0  # and how soon after it dead-lettered a message


@dataclass
class _Delivery:
    queue: int  # the index of its queue in topology.queues
    method: pika.spec.Basic.Deliver
    props: pika.BasicProperties
    body: bytes


class Consumer:
    """Consumes a topology's queues on a link until `hooks.should_stop()`.

    `hooks.handle_message(i, ...)` handles the messages of `topology.queues[i]` (one per shard).
    Acks go out when the messages awaiting them hold `max_rows` rows (output.sync_rows) or half
    a queue's prefetch window (so the broker keeps sending), when the oldest has waited
    `max_delay` seconds, when the queues are idle, and before stopping; each ack is preceded by
    `hooks.sync()`, so nothing acknowledged can be lost. With shards on single-active-consumer
    queues, a `Balancer` decides when this consumer gives a shard up to a standby.
    """

    def __init__(self, link: Link, topology: Topology, hooks: ConsumerHooks, *,
                 prefetch: int = 1000, max_rows: int = 1000, max_delay: float = 0.2) -> None:
        self.link, self.topology, self.hooks = link, topology, hooks
        self.max_rows, self.max_delay = max_rows, max_delay
        # broker.prefetch is the consumer's window, shared by its queues: each shard's consumer
        # gets its part (quorum queues have no window per channel), so that a fleet's pvsim-pv
        # does not hold 16 windows of messages, nor make a shard it is given wait behind them.
        self.window = max(2, prefetch // len(topology.queues))
        self.max_messages = max(1, self.window // 2)
        self.inbox: deque[_Delivery] = deque()
        self.tags: list[str] = []
        # The ack batch: messages handled and not yet acknowledged, their rows, the oldest's age.
        self.last_tag = 0
        self.pending = self.rows = 0
        self.oldest = 0.0
        self.depth_due = 0.0
        self.channel: Any = None  # a pika channel, once started
        self.balancer: Balancer | None = None

    def run(self) -> None:
        """Consume until asked to stop; ConnectionLost when the link fails (reconnect and run
        a new Consumer: unacknowledged messages are redelivered and deduplicated)."""
        with translated():
            self._start()
            while not self._turn():
                pass
            self._stop()

    def _start(self) -> None:
        self.channel = channel = self.link.channel()
        self.topology.declare(channel)
        channel.confirm_delivery()  # for dead-letter republishing
        channel.basic_qos(prefetch_count=self.window)
        self.tags = [self._subscribe(i) for i in range(len(self.topology.queues))]
        if self.topology.members_queue:
            channel.basic_consume(self.topology.members_queue, lambda *_: None, auto_ack=True)
            self.balancer = Balancer(channel, self.topology)
        self.hooks.consuming(self.link)

    def _subscribe(self, index: int) -> str:
        def on_message(_ch, method, props, body) -> None:
            self.inbox.append(_Delivery(index, method, props, body))
        return self.channel.basic_consume(self.topology.queues[index], on_message)

    def _turn(self) -> bool:
        """Handle one message, or wait a little for one; True once asked to stop."""
        if not self.inbox:
            self.link.poll(0.1)
        if not self.inbox:  # idle: make everything durable and acknowledged
            self._settle()
            self.hooks.idle()
        else:
            self._handle(self.inbox.popleft())
        if time.monotonic() >= self.depth_due:
            self._report_depth()
        if self.balancer is not None:  # busy or idle: a saturated instance must share too
            for index in self.balancer.surplus():
                self._hand_off(index)
        return self.hooks.should_stop()

    def _handle(self, delivery: _Delivery) -> None:
        if self.balancer is not None:
            self.balancer.delivered(delivery.queue)
        try:
            written = self.hooks.handle_message(delivery.queue, delivery.body,
                                                redelivered(delivery.method, delivery.props))
        except InvalidMessage as error:
            self._reject(delivery, error)
            return
        if not self.pending:
            self.oldest = time.monotonic()
        self.last_tag = delivery.method.delivery_tag
        self.pending += 1
        self.rows += written
        if (self.rows >= self.max_rows or self.pending >= self.max_messages
                or time.monotonic() - self.oldest >= self.max_delay):
            self._settle()

    def _reject(self, delivery: _Delivery, error: InvalidMessage) -> None:
        """Dead-letter it (after acknowledging what came before), then ack it."""
        self._settle()
        dead_letter(self.channel, self.topology, delivery.body, delivery.props, error,
                    self.topology.queues[delivery.queue])
        self.channel.basic_ack(delivery.method.delivery_tag)
        self.hooks.rejected(error)
        # Looked at within a second, not after each one: a flood of bad messages costs a
        # round trip less each.
        self.depth_due = min(self.depth_due, time.monotonic() + DEPTH_AFTER_REJECT_SECONDS)

    def _settle(self) -> None:
        """Sync, then acknowledge every message handled so far at once."""
        if self.pending:
            self.hooks.sync()
            self.channel.basic_ack(self.last_tag, multiple=True)
            self.pending = self.rows = 0

    def _report_depth(self) -> None:
        self.hooks.dead_letter_depth(self.topology.dead_letter_depth(self.channel))
        self.depth_due = time.monotonic() + DEPTH_SECONDS

    def _hand_off(self, index: int) -> None:
        self._settle()
        channel = self.channel
        # What arrived for it and was not handled goes back to the queue, for the next one.
        for delivery in [d for d in self.inbox if d.queue == index]:
            self.inbox.remove(delivery)
            channel.basic_reject(delivery.method.delivery_tag, requeue=True)
        channel.basic_cancel(self.tags[index])  # pika requeues what arrives for it meanwhile
        self.hooks.handed_off(index)
        self.tags[index] = self._subscribe(index)  # back in the line, as the last standby

    def _stop(self) -> None:
        self._settle()
        channel = self.channel
        for tag in self.tags:
            channel.basic_cancel(tag)
        # What arrived but was not handled is given back, never held unacknowledged.
        for delivery in self.inbox:
            channel.basic_reject(delivery.method.delivery_tag, requeue=True)
        if channel.is_open:
            channel.close()


def redelivered(method: pika.spec.Basic.Deliver, props: pika.BasicProperties) -> bool:
    """Whether RabbitMQ delivered the message to a consumer before: the redelivered flag, or a
    quorum queue's x-delivery-count (which also counts returns the flag may not show)."""
    count = props.headers.get("x-delivery-count") if isinstance(props.headers, dict) else 0
    return bool(method.redelivered) or (type(count) is int and count > 0)
