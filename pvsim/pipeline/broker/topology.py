"""What pvsim declares on RabbitMQ: the exchange, the shard queues and the dead-letter queue.

Every declaration is idempotent; one that RabbitMQ refuses because the queue or the exchange
exists with other arguments (406 PRECONDITION_FAILED) is an operator's error, raised as
DeclarationMismatch naming it and the difference, never retried. The one exception is a
dead-letter queue from an older install without its bounds, which is used as it is (see
`_declare_bounded_dead_letter_queue`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pika.exceptions

from pvsim.config import BrokerConfig, Config, queue_type
from pvsim.model import shard
from pvsim.pipeline.broker.errors import PRECONDITION_FAILED, DeclarationMismatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topology:
    """The names of what pvsim declares; every declaration is idempotent.

    One shard: one queue, `queue`, bound to the exchange with its own name (classic by default).
    A fleet of `shards`: one quorum queue per shard, `<queue>.sNN`, bound with that name as its
    routing key, with single active consumer (every pvsim-pv subscribes to every shard; RabbitMQ
    delivers each shard to one at a time and keeps the others as standbys), a delivery limit and
    at-least-once dead-lettering, so a message whose consumer dies each time it holds it ends in
    the dead-letter queue rather than circling for ever, and is never dropped on the way there.
    """

    exchange: str
    queue: str
    dead_letter_exchange: str
    dead_letter_queue: str
    # Set for a one-shot run's private queues: RabbitMQ deletes them when unused for this long
    # (and the dead-letter exchange with its last binding), should the run die before it cleans up.
    expires_ms: int | None = None
    # The dead-letter queue keeps at most this many messages, and this many bytes of bodies,
    # the oldest dropped (0: no limit).
    dead_letter_max_length: int = 0
    dead_letter_max_bytes: int = 0
    shards: int = 1
    quorum: bool = False
    delivery_limit: int = 20

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues consumed, one per shard."""
        if self.shards == 1:
            return (self.queue,)
        return tuple(f"{self.queue}.{shard.label(s)}" for s in range(self.shards))

    @property
    def members_queue(self) -> str | None:
        """A fleet's roll call: a queue every pvsim-pv consumes and nobody publishes to, whose
        consumer count is the number of pvsim-pv connected (a single-active-consumer queue
        counts only its active consumer)."""
        return f"{self.queue}.members" if self.quorum and self.shards > 1 else None

    def routing_key(self, shard_index: int = 0) -> str:
        """What a message for a shard is published with: its queue's name."""
        return self.queues[shard_index]

    @classmethod
    def from_config(cls, cfg: Config) -> "Topology":
        """The daemons' topology."""
        b = cfg.broker
        return cls(b.exchange, b.queue, b.dead_letter_exchange, b.dead_letter_queue,
                   dead_letter_max_length=b.dead_letter_max_length,
                   dead_letter_max_bytes=b.dead_letter_max_bytes, shards=cfg.fleet.shards,
                   quorum=queue_type(b, cfg.fleet) == "quorum", delivery_limit=b.delivery_limit)

    @classmethod
    def for_run(cls, cfg: BrokerConfig, run_id: str, expires_ms: int) -> "Topology":
        """A one-shot run's own queue and dead-letter queue on the daemons' exchange: a run
        never takes the daemons' readings, nor leaves its rejects among theirs. One classic
        queue, whatever the shards: a run has one consumer, and is run again if a node fails."""
        queue = f"{cfg.queue}.run.{run_id}"
        return cls(cfg.exchange, queue, f"{cfg.dead_letter_exchange}.run.{run_id}",
                   f"{queue}.dead", expires_ms)

    def declare(self, channel) -> None:
        """Declare and bind everything on `channel` (a pika channel); DeclarationMismatch when
        something exists with other arguments."""
        private = bool(self.expires_ms)
        expiry: dict[str, object] = {"x-expires": self.expires_ms} if private else {}
        kind: dict[str, object] = {"x-queue-type": "quorum"} if self.quorum else {}
        with _refused("exchange", self.exchange):
            channel.exchange_declare(self.exchange, "direct", durable=True)
        with _refused("exchange", self.dead_letter_exchange):
            channel.exchange_declare(self.dead_letter_exchange, "fanout", durable=True,
                                     auto_delete=private)
        if self.dead_letter_max_length or self.dead_letter_max_bytes:
            self._declare_bounded_dead_letter_queue(channel)
        else:
            with _refused("queue", self.dead_letter_queue):
                channel.queue_declare(self.dead_letter_queue, durable=True,
                                      arguments={**kind, **expiry})
        channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange)
        arguments: dict[str, object] = {"x-dead-letter-exchange": self.dead_letter_exchange,
                                        **expiry}
        if self.quorum:
            # Leaders spread over the nodes (not all on the node that declared them first), so
            # that the cluster's work and a node's failure are shared.
            arguments.update({**kind, "x-single-active-consumer": True,
                              "x-queue-leader-locator": "balanced",
                              "x-delivery-limit": self.delivery_limit,
                              "x-dead-letter-strategy": "at-least-once",
                              "x-overflow": "reject-publish"})
        for index, queue in enumerate(self.queues):
            with _refused("queue", queue):
                channel.queue_declare(queue, durable=True, arguments=arguments)
            channel.queue_bind(queue, self.exchange, routing_key=self.routing_key(index))
        if self.members_queue:
            with _refused("queue", self.members_queue):
                channel.queue_declare(self.members_queue, durable=True, arguments=kind)

    def _declare_bounded_dead_letter_queue(self, channel) -> None:
        """Declare the dead-letter queue with its limits (messages, bytes), on a channel of its
        own: a queue from an older install exists without them (or without the bytes limit),
        and RabbitMQ refuses (and closes the channel) when arguments differ. That queue
        is used as it is, and the log says how to bound it with a policy (RabbitMQ applies the
        smaller of a policy's limit and an argument's)."""
        limits = {"x-max-length": self.dead_letter_max_length,
                  "x-max-length-bytes": self.dead_letter_max_bytes}
        arguments: dict[str, object] = {k: v for k, v in limits.items() if v}
        arguments["x-overflow"] = "drop-head"
        if self.quorum:
            arguments["x-queue-type"] = "quorum"
        probe = channel.connection.channel()
        try:
            probe.queue_declare(self.dead_letter_queue, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != PRECONDITION_FAILED:  # it exists with other arguments
                raise
            policy = json.dumps({k[2:]: v for k, v in limits.items() if v}, separators=(",", ":"))
            log.warning("the dead-letter queue %s exists without broker.dead_letter_max_length "
                        "and dead_letter_max_bytes as its arguments, and may not be bounded: "
                        "bound it with a policy (rabbitmqctl set_policy pvsim-dead '^%s$' '%s' "
                        "--apply-to queues), or delete it (its messages are lost) and restart",
                        self.dead_letter_queue, self.dead_letter_queue.replace(".", "\\."),
                        policy)
        else:
            probe.close()

    def dead_letter_depth(self, channel) -> int:
        """Messages in the dead-letter queue now."""
        return channel.queue_declare(self.dead_letter_queue, passive=True).method.message_count

    def delete_private(self, channel) -> None:
        """Remove a run's queues (the auto-delete dead-letter exchange goes with its binding)."""
        if not self.expires_ms:
            raise ValueError("only a run's private queues are deleted")
        for queue in self.queues:
            channel.queue_delete(queue)
        channel.queue_delete(self.dead_letter_queue)


@contextmanager
def _refused(kind: str, name: str) -> Iterator[None]:
    """A declaration of `kind` `name`: RabbitMQ's 406 becomes DeclarationMismatch, one line."""
    try:
        yield
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != PRECONDITION_FAILED:
            raise
        text = str(exc.reply_text).removeprefix("PRECONDITION_FAILED - ")
        raise DeclarationMismatch(
            f"RabbitMQ refused to declare the {kind} {name}: {text[:300]}; it exists with other "
            f"arguments than this config asks for: delete it (its messages are lost) or go back "
            f"to the settings it was declared with") from None
