"""Confirmed publishing: `Publisher.publish` returns only once RabbitMQ has taken responsibility
for the message (persistent, with publisher confirms, mandatory so that an unroutable one comes
back as an error instead of vanishing)."""

from __future__ import annotations

import time

import pika

from pvsim.pipeline.broker.connection import Link
from pvsim.pipeline.broker.errors import translated
from pvsim.pipeline.broker.topology import Topology
from pvsim.pipeline.messages import CONTENT_TYPE


class Publisher:
    """Publishes message bodies with confirms on a link of the calling thread."""

    def __init__(self, link: Link, topology: Topology) -> None:
        self.topology = topology
        self.channel = link.channel()
        with translated():
            topology.declare(self.channel)
            self.channel.confirm_delivery()

    def publish(self, body: bytes, message_id: str | None = None, shard_index: int = 0) -> None:
        """Returns once RabbitMQ confirmed the message (for a quorum queue: once a majority of
        its nodes hold it); raises PublishRefused on a nack or a return, ConnectionLost on a
        lost link. `shard_index`: the shard whose queue takes it."""
        props = pika.BasicProperties(delivery_mode=2, content_type=CONTENT_TYPE,
                                     message_id=message_id, timestamp=int(time.time()))
        with translated():
            self.channel.basic_publish(self.topology.exchange,
                                       self.topology.routing_key(shard_index),
                                       body, properties=props, mandatory=True)
