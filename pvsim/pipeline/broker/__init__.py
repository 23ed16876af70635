"""RabbitMQ through pika, behind one boundary: pvsim's link, publisher and consumer.

This package owns every pika object, and no pika exception leaves it (errors.py translates them
into pvsim's own). Rules it keeps:
- a connection belongs to the thread that opened it (pika is not thread-safe): `Link`;
- connecting, and the daemons' reconnecting, are retried with tenacity (exponential backoff with
  jitter, each attempt logged): `connect`, `run_sessions`, `RabbitMQ`;
- what pvsim declares (`Topology`) is idempotent, and a declaration RabbitMQ refuses because it
  exists with other arguments is an operator's error (DeclarationMismatch), never retried;
- messages are persistent and published with publisher confirms: `Publisher.publish` returns
  only once RabbitMQ has taken responsibility for the message;
- consumed messages are acknowledged only after the hooks have made their rows durable
  (`Consumer`, driven through one interface, `ConsumerHooks`);
- a message that fails validation is republished to the dead-letter exchange with the reason
  in headers, confirmed, and only then acked (deadletter.py);
- a fleet's shards are spread over its pvsim-pv instances (balancer.py);
- pika's decoding of headers is made total (headers.py), so no header can stop a consumer;
- the broker URL is logged with its password redacted, always.

What callers need is re-exported here; the modules hold the rest.
"""

from pvsim.pipeline.broker import headers
from pvsim.pipeline.broker.connection import Link, check_url, close_quietly, where
from pvsim.pipeline.broker.consumer import Consumer
from pvsim.pipeline.broker.errors import (BrokerError, BrokerUnavailable, ConnectionLost,
                                          DeclarationMismatch, PublishRefused, SessionEnded,
                                          describe_error)
from pvsim.pipeline.broker.hooks import ConsumerHooks, SessionHooks
from pvsim.pipeline.broker.publisher import Publisher
from pvsim.pipeline.broker.sessions import Broker, RabbitMQ, connect, run_sessions
from pvsim.pipeline.broker.topology import Topology

headers.install()

__all__ = ["Broker", "BrokerError", "BrokerUnavailable", "ConnectionLost", "Consumer",
           "ConsumerHooks", "DeclarationMismatch", "Link", "PublishRefused", "RabbitMQ",
           "SessionEnded", "SessionHooks", "Publisher", "Topology", "check_url", "close_quietly",
           "connect", "describe_error", "run_sessions", "where"]
