"""Connecting to RabbitMQ: the nodes to try, pika's parameters, and `Link`, pvsim's connection.

A `Link` belongs to the thread that opened it (pika is not thread-safe, shutdown included); its
methods are the only calls into a pika connection outside this package's publisher and consumer,
and raise pvsim's errors (see errors.py), never pika's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pika

from pvsim import logsetup
from pvsim.config import BrokerConfig, Config, ConfigError
from pvsim.pipeline.broker.errors import ConnectionLost, translated

log = logging.getLogger(__name__)


def redact(url: str) -> str:
    """The URL with its password replaced, fit for logs and error messages."""
    return logsetup.redact(url)


def nodes(cfg: BrokerConfig) -> tuple[str, ...]:
    """The URLs of the broker's nodes, in the order they are tried: broker.urls, or broker.url."""
    return cfg.urls or (cfg.url,)


def where(cfg: BrokerConfig) -> str:
    """The broker for a message: its URL, or its nodes' (passwords replaced)."""
    return " or ".join(redact(url) for url in nodes(cfg))


def check_url(cfg: Config) -> None:
    """What pika makes of broker.url or of each of broker.urls (query options included),
    checked when a program starts: a URL it cannot use is a config error (exit 78), not a
    broker outage."""
    keys = [f"broker.urls[{i}]" for i in range(len(cfg.broker.urls))] or ["broker.url"]
    for key, url in zip(keys, nodes(cfg.broker)):
        try:
            pika.URLParameters(url)
        except Exception as exc:  # pika raises assorted errors for bad URLs
            raise ConfigError(cfg.source, key, redact(str(exc))[:200]) from None


def parameters(cfg: BrokerConfig, url: str | None = None) -> pika.URLParameters:
    """Connection parameters for a node (`url`, by default the first of `nodes`)."""
    params = pika.URLParameters(url or nodes(cfg)[0])  # checked at start-up (check_url)
    params.heartbeat = cfg.heartbeat_seconds
    params.connection_attempts = 1  # tenacity does the retrying, with logging
    params.socket_timeout = 10
    params.stack_timeout = 30
    # A connection blocked by a memory or disk alarm for this long is closed and reconnected,
    # so a blocked broker shows up as an error and a reconnect instead of a silent hang.
    params.blocked_connection_timeout = 300
    return params


class Link:
    """An open connection to RabbitMQ (a pika BlockingConnection), in pvsim's terms."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.connection = connection

    @property
    def is_open(self) -> bool:
        return bool(self.connection.is_open)

    def channel(self):
        """A new pika channel; only this package's publisher, consumer and topology use it."""
        with translated():
            return self.connection.channel()

    def poll(self, seconds: float = 0.0) -> None:
        """Serve the connection (heartbeats, alarms, deliveries) for up to `seconds`."""
        with translated():
            self.connection.process_data_events(time_limit=seconds)

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` while serving the connection, so that the broker keeps the link."""
        with translated():
            self.connection.sleep(seconds)

    def close(self) -> None:
        """Close it if it is open; errors while closing a dying connection are only logged."""
        if self.connection.is_open:
            try:
                self.connection.close()
            except Exception as exc:  # closing a dying connection: nothing left to save
                log.debug("error while closing connection: %s", exc)


def close_quietly(link: Link | None) -> None:
    if link is not None:
        link.close()


def open_link(cfg: BrokerConfig, on_blocked: Callable[[bool], None] | None = None) -> Link:
    """One connection attempt (each node in turn, until one answers), with the
    blocked/unblocked callbacks of a resource alarm; ConnectionLost when none answers."""
    urls = nodes(cfg)
    for i, url in enumerate(urls):
        try:
            with translated():
                connection = pika.BlockingConnection(parameters(cfg, url))
            break
        except ConnectionLost as exc:
            if i == len(urls) - 1:
                raise
            log.warning("RabbitMQ node %s: %s; trying %s", redact(url), exc, redact(urls[i + 1]))
    if on_blocked is not None:
        # BlockingConnection defers these callbacks to process_data_events, which a thread
        # waiting for a publisher confirm (exactly what a blocked connection makes it do) never
        # reaches: register them on the connection underneath (pika's private `_impl`, checked
        # by tests/pipeline/test_pika_internals.py), whose I/O loop calls them as the frame
        # arrives, in this same thread. They only set flags.
        target = getattr(connection, "_impl", connection)
        target.add_on_connection_blocked_callback(lambda *_: on_blocked(True))
        target.add_on_connection_unblocked_callback(lambda *_: on_blocked(False))
    log.info("connected to RabbitMQ at %s", redact(url))
    return Link(connection)
