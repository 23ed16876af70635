"""RabbitMQ through pika: connections, topology, confirmed publishing, acknowledged consuming.

This module owns every pika object. Rules it keeps:
- a connection belongs to the thread that opened it (pika is not thread-safe);
- connecting, and the daemons' reconnecting, are retried with tenacity (exponential backoff with
  jitter, each attempt logged);
- messages are persistent and published with publisher confirms: `Publisher.publish` returns
  only once RabbitMQ has taken responsibility for the message;
- consumed messages are acknowledged only after the PV service has made their rows durable
  (`consume` syncs, then acks everything up to that delivery at once);
- a message that fails validation is republished to the dead-letter exchange with the reason
  in headers (x-pvsim-reason, x-pvsim-detail), confirmed, and only then acked;
- the broker URL is logged with its password redacted, always.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pika
import pika.data
import pika.exceptions
import tenacity

from pvsim import logsetup
from pvsim.config import BrokerConfig, Config, ConfigError, queue_type
from pvsim.model import shard
from pvsim.pipeline.messages import CONTENT_TYPE, MAX_BODY_BYTES, InvalidMessage

log = logging.getLogger(__name__)

# Errors after which a fresh connection may succeed.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionClosedByBroker,
    pika.exceptions.StreamLostError,
    pika.exceptions.ChannelClosedByBroker,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ConnectionWrongStateError,
    ConnectionError,
    OSError,
)
# RabbitMQ refused a published message (a nack, or unroutable and returned): publish it again.
PUBLISH_REFUSED = (pika.exceptions.NackError, pika.exceptions.UnroutableError)
# A session that worked this long before it failed reconnects at once, without backoff.
STABLE_SECONDS = 30.0
DEPTH_SECONDS = 30.0  # how often an idle consumer looks at the dead-letter queue's depth
DEPTH_AFTER_REJECT_SECONDS = 1.0  # and how soon after it dead-lettered a message
REASON_HEADER = "x-pvsim-reason"
DETAIL_HEADER = "x-pvsim-detail"
# A body over MAX_BODY_BYTES (refused as oversized whatever it holds) is dead-lettered cut to
# this many bytes, its size in a header: enough to see what it was, and a few of them cannot
# push every other dead letter out of a queue bounded by bytes.
TRUNCATED_BYTES = 64 * 1024
SIZE_HEADER = "x-pvsim-original-bytes"


class BrokerUnavailable(Exception):
    """RabbitMQ could not be reached after the configured attempts; the message says what to do."""

    exit_code = os.EX_UNAVAILABLE


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

    def declare(self, channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
        private = bool(self.expires_ms)
        expiry = {"x-expires": self.expires_ms} if private else {}
        kind = {"x-queue-type": "quorum"} if self.quorum else {}
        channel.exchange_declare(self.exchange, "direct", durable=True)
        channel.exchange_declare(self.dead_letter_exchange, "fanout", durable=True,
                                 auto_delete=private)
        if self.dead_letter_max_length or self.dead_letter_max_bytes:
            self._declare_bounded_dead_letter_queue(channel)
        else:
            channel.queue_declare(self.dead_letter_queue, durable=True,
                                  arguments={**kind, **expiry})
        channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange)
        arguments = {"x-dead-letter-exchange": self.dead_letter_exchange, **expiry}
        if self.quorum:
            # Leaders spread over the nodes (not all on the node that declared them first), so
            # that the cluster's work and a node's failure are shared.
            arguments.update({**kind, "x-single-active-consumer": True,
                              "x-queue-leader-locator": "balanced",
                              "x-delivery-limit": self.delivery_limit,
                              "x-dead-letter-strategy": "at-least-once",
                              "x-overflow": "reject-publish"})
        for index, queue in enumerate(self.queues):
            channel.queue_declare(queue, durable=True, arguments=arguments)
            channel.queue_bind(queue, self.exchange, routing_key=self.routing_key(index))
        if self.members_queue:
            channel.queue_declare(self.members_queue, durable=True, arguments=kind)

    def _declare_bounded_dead_letter_queue(self, channel) -> None:
        """Declare the dead-letter queue with its limits (messages, bytes), on a channel of its
        own: a queue from an older install exists without them (or without the bytes limit),
        and RabbitMQ refuses (and closes the channel) when arguments differ. That queue
        is used as it is, and the log says how to bound it with a policy (RabbitMQ applies the
        smaller of a policy's limit and an argument's)."""
        limits = {"x-max-length": self.dead_letter_max_length,
                  "x-max-length-bytes": self.dead_letter_max_bytes}
        probe = channel.connection.channel()
        try:
            probe.queue_declare(self.dead_letter_queue, durable=True, arguments={
                **{k: v for k, v in limits.items() if v}, "x-overflow": "drop-head",
                **({"x-queue-type": "quorum"} if self.quorum else {})})
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 406:  # PRECONDITION_FAILED: it exists with other arguments
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

    def delete_private(self, channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
        """Remove a run's queues (the auto-delete dead-letter exchange goes with its binding)."""
        if not self.expires_ms:
            raise ValueError("only a run's private queues are deleted")
        for queue in self.queues:
            channel.queue_delete(queue)
        channel.queue_delete(self.dead_letter_queue)


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


def _log_attempt(url: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("RabbitMQ at %s: %s (attempt %d); retrying in %.1f s",
                    redact(url), describe_error(exc), state.attempt_number,
                    state.next_action.sleep if state.next_action else 0.0)
    return before_sleep


def _retrying(cfg: BrokerConfig, *, forever: bool, should_stop: Callable[[], bool],
              retry_on: tuple[type[BaseException], ...] = CONNECTION_ERRORS) -> tenacity.Retrying:
    """The one retry policy: capped exponential backoff with jitter, each attempt logged."""
    stop = tenacity.stop_never if forever else tenacity.stop_after_attempt(cfg.connect_attempts)
    return tenacity.Retrying(
        stop=stop | tenacity.stop.stop_when_event_set(_Flag(should_stop)),
        wait=tenacity.wait_exponential_jitter(initial=cfg.retry_initial_seconds,
                                              max=cfg.retry_max_seconds, jitter=cfg.retry_initial_seconds),
        retry=tenacity.retry_if_exception_type(retry_on),
        before_sleep=_log_attempt(where(cfg)),
        sleep=_interruptible_sleep(should_stop),
        reraise=True,
    )


def _open(cfg: BrokerConfig, on_blocked: Callable[[bool], None] | None) -> pika.BlockingConnection:
    """One connection attempt (each node in turn, until one answers), with the
    blocked/unblocked callbacks of a resource alarm."""
    urls = nodes(cfg)
    for i, url in enumerate(urls):
        try:
            connection = pika.BlockingConnection(parameters(cfg, url))
            break
        except CONNECTION_ERRORS as exc:
            if i == len(urls) - 1:
                raise
            log.warning("RabbitMQ node %s: %s; trying %s", redact(url), describe_error(exc),
                        redact(urls[i + 1]))
    if on_blocked is not None:
        # BlockingConnection defers these callbacks to process_data_events, which a thread
        # waiting for a publisher confirm (exactly what a blocked connection makes it do) never
        # reaches: register them on the connection underneath, whose I/O loop calls them as the
        # frame arrives, in this same thread. They only set flags.
        target = getattr(connection, "_impl", connection)
        target.add_on_connection_blocked_callback(lambda *_: on_blocked(True))
        target.add_on_connection_unblocked_callback(lambda *_: on_blocked(False))
    log.info("connected to RabbitMQ at %s", redact(url))
    return connection


def connect(cfg: BrokerConfig, *, should_stop: Callable[[], bool] = lambda: False) -> pika.BlockingConnection:
    """Open a connection for a one-shot run, giving up after `connect_attempts`.

    Raises BrokerUnavailable with a message a user can act on. The daemons use `run_sessions`,
    which never gives up.
    """
    try:
        return _retrying(cfg, forever=False, should_stop=should_stop)(_open, cfg, None)
    except CONNECTION_ERRORS as exc:
        reason = describe_error(exc)
        hint = "" if "broker.url" in reason else (
            " Is it running? Start it with 'sudo systemctl start rabbitmq-server' (or "
            "'rabbitmq-server -detached'), or point broker.url (broker.urls) at another broker.")
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ at {where(cfg)} after {cfg.connect_attempts} "
            f"attempts: {reason}.{hint}") from None


class _StableSessionEnded(Exception):
    """A session that had worked for STABLE_SECONDS lost its link: reconnect without backoff."""


def run_sessions(cfg: BrokerConfig, session: Callable[[pika.BlockingConnection], None], *,
                 should_stop: Callable[[], bool],
                 on_blocked: Callable[[bool], None] | None = None,
                 on_end: Callable[[BaseException | None], None] | None = None,
                 retry_on: tuple[type[BaseException], ...] = CONNECTION_ERRORS) -> None:
    """The daemons' link to RabbitMQ: `session(connection)` on fresh connections until stopped.

    Opening a connection and running the session on it are one attempt for tenacity, so a broker
    that is down, a topology that cannot be declared, or a session that fails soon after it
    started are all retried after the same capped exponential backoff with jitter, forever. A
    session that had run for STABLE_SECONDS when it failed was a working link: the next
    connection is tried at once and the backoff starts afresh. `session` returns once
    `should_stop()`; `on_end(error)` is called after each session, with the broker error that
    ended it (None when it returned, or ended by an error outside `retry_on`).
    The connection is opened and closed by the calling thread, which alone uses it (pika is not
    thread-safe, shutdown included). Errors outside `retry_on` propagate to the caller.
    """
    def attempt() -> None:
        connection = _open(cfg, on_blocked)
        began = time.monotonic()
        error: BaseException | None = None
        try:
            session(connection)
        except retry_on as exc:
            error = exc
            if time.monotonic() - began >= STABLE_SECONDS:
                raise _StableSessionEnded() from exc
            raise
        finally:
            close_quietly(connection)
            if on_end is not None:
                on_end(error)

    while not should_stop():
        try:
            _retrying(cfg, forever=True, should_stop=should_stop, retry_on=retry_on)(attempt)
        except _StableSessionEnded:
            continue
        except retry_on:
            if not should_stop():  # tenacity only gives up when asked to stop
                raise
        return


class _Flag:
    """Adapts a should-stop callable to tenacity's stop_when_event_set (which calls is_set)."""

    def __init__(self, predicate: Callable[[], bool]) -> None:
        self.is_set = predicate


def _interruptible_sleep(should_stop: Callable[[], bool]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not should_stop() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))
    return sleep


def _total_header_decoding() -> None:
    """Make pika's decoding of a message's headers total (installed once, at import).

    pika decodes every header before pvsim sees the message, and some values another client may
    publish, which RabbitMQ passes on, make that raise: a timestamp past time_t (a 'T' of 2**63:
    OverflowError), an array nested 3,000 deep (RecursionError); so would a float pika cannot
    turn into the int it makes of floats (NaN, infinity; RabbitMQ 3.11 refuses those itself).
    The error surfaces as a lost connection; the message is redelivered, drops the next
    connection too, for ever, and every message behind it waits. Such a value is decoded as its
    raw number (an array or table as its raw bytes) instead; pvsim reads no header but
    x-delivery-count, and dead-letters a message whose headers cannot be encoded again without
    them."""
    original = pika.data.decode_value
    if getattr(original, "pvsim_total", False):
        return

    def decode_value(encoded, offset):
        try:
            return original(encoded, offset)
        except (OverflowError, ValueError, OSError, RecursionError):
            kind = encoded[offset:offset + 1]
            if kind in _RAW_NUMBERS:
                code, size = _RAW_NUMBERS[kind]
                return struct.unpack_from(code, encoded, offset + 1)[0], offset + 1 + size
            if kind in (b"A", b"F"):
                length = struct.unpack_from(">I", encoded, offset + 1)[0]
                return bytes(encoded[offset + 5:offset + 5 + length]), offset + 5 + length
            raise

    decode_value.pvsim_total = True  # type: ignore[attr-defined]
    pika.data.decode_value = decode_value


_RAW_NUMBERS = {b"T": (">Q", 8), b"d": (">d", 8), b"f": (">f", 4)}
_total_header_decoding()


def describe_error(exc: BaseException | None) -> str:
    """A short human reason for a pika error (pika nests the socket error inside its own)."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, pika.exceptions.ProbableAuthenticationError):
        return "authentication failed (check the user and password in broker.url)"
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return "access denied (check the virtual host in broker.url and the user's permissions)"
    inner = getattr(exc, "exception", None)  # pika's connection-workflow errors wrap the cause
    if isinstance(inner, BaseException):
        return describe_error(inner)
    for arg in exc.args:
        if isinstance(arg, BaseException):
            return describe_error(arg)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    return text[:200]


class Publisher:
    """Publishes message bodies with confirms on a connection of the calling thread."""

    def __init__(self, connection: pika.BlockingConnection, topology: Topology) -> None:
        self.topology = topology
        self.channel = connection.channel()
        topology.declare(self.channel)
        self.channel.confirm_delivery()

    def publish(self, body: bytes, message_id: str | None = None, shard_index: int = 0) -> None:
        """Returns once RabbitMQ confirmed the message (for a quorum queue: once a majority of
        its nodes hold it); raises PUBLISH_REFUSED on a nack or a return, a CONNECTION_ERRORS
        error on a lost link. `shard_index`: the shard whose queue takes it."""
        props = pika.BasicProperties(delivery_mode=2, content_type=CONTENT_TYPE,
                                     message_id=message_id, timestamp=int(time.time()))
        self.channel.basic_publish(self.topology.exchange, self.topology.routing_key(shard_index),
                                   body, properties=props, mandatory=True)


def close_quietly(connection: pika.BlockingConnection | None) -> None:
    if connection is not None and connection.is_open:
        try:
            connection.close()
        except Exception as exc:  # closing a dying connection: nothing left to save
            log.debug("error while closing connection: %s", exc)


class Handled(Protocol):
    written: int  # rows the message added, which the next sync makes durable


class Handler(Protocol):
    """What `consume` drives: in practice the PV service."""

    def handle(self, body: bytes, redelivered: bool = False) -> Handled:
        """Process a message body; raise InvalidMessage to have it dead-lettered. `redelivered`:
        RabbitMQ gave it to a consumer before (see `redelivered`)."""

    def sync(self) -> None:
        """Make everything handled so far durable."""


def consume(connection: pika.BlockingConnection, topology: Topology,
            handlers: Sequence[Handler], *,
            should_stop: Callable[[], bool], prefetch: int = 1000, max_rows: int = 1000,
            max_delay: float = 0.2, on_idle: Callable[[], None] | None = None,
            on_reject: Callable[[InvalidMessage], None] | None = None,
            on_dead_letter_depth: Callable[[int], None] | None = None,
            on_consuming: Callable[[], None] | None = None,
            on_handoff: Callable[[int], None] | None = None) -> None:
    """Consume until `should_stop()`: handle each message, sync, then ack in batches.

    `handlers[i]` handles the messages of `topology.queues[i]` (one per shard). Acks go out
    when the messages awaiting them hold `max_rows` rows (output.sync_rows) or half a queue's
    prefetch window (so the broker keeps sending), when the oldest has waited `max_delay`
    seconds, when the queues are idle, and before stopping; each ack is preceded by a sync of
    every handler, so nothing acknowledged can be lost. Returns when asked to stop; connection
    errors propagate (the caller reconnects; unacked messages are redelivered and deduplicated).
    `on_dead_letter_depth(n)` hears the dead-letter queue's depth at start, within
    DEPTH_AFTER_REJECT_SECONDS of a reject, and every DEPTH_SECONDS. `handlers[i].handle` is
    told whether RabbitMQ delivered the message before (`redelivered`), for pvsim-pv's crash
    record. `on_consuming()` is called once the queues are declared and consumed: from then on
    a message published to the exchange waits for this consumer. With shards on
    single-active-consumer queues, `on_handoff(i)` is called after this consumer gave shard i up
    to a standby (see `_Balancer`): its handler must let go of the shard's files before another
    process can take them.
    """
    channel = connection.channel()
    topology.declare(channel)
    channel.confirm_delivery()  # for dead-letter republishing
    # broker.prefetch is the consumer's window, shared by its queues: each shard's consumer
    # gets its part (quorum queues have no window per channel), so that a fleet's pvsim-pv
    # does not hold 16 windows of messages, nor make a shard it is given wait behind them.
    window = max(2, prefetch // len(topology.queues))
    channel.basic_qos(prefetch_count=window)
    inbox: deque[tuple[int, pika.spec.Basic.Deliver, pika.BasicProperties, bytes]] = deque()
    tags: list[str] = []
    last_tag = 0
    pending = rows = 0
    oldest = 0.0
    max_messages = max(1, window // 2)
    depth_due = 0.0
    touched: set[int] = set()

    def subscribe(index: int) -> str:
        def on_message(_ch, method, props, body) -> None:
            inbox.append((index, method, props, body))
        return channel.basic_consume(topology.queues[index], on_message)

    def report_depth() -> None:
        nonlocal depth_due
        if on_dead_letter_depth is not None:
            on_dead_letter_depth(topology.dead_letter_depth(channel))
            depth_due = time.monotonic() + DEPTH_SECONDS

    def settle() -> None:
        nonlocal pending, rows
        if pending:
            for index in sorted(touched):
                handlers[index].sync()
            channel.basic_ack(last_tag, multiple=True)
            pending = rows = 0
            touched.clear()

    def hand_off(index: int) -> None:
        settle()
        # What arrived for it and was not handled goes back to the queue, for the next one.
        for item in [item for item in inbox if item[0] == index]:
            inbox.remove(item)
            channel.basic_reject(item[1].delivery_tag, requeue=True)
        channel.basic_cancel(tags[index])  # pika requeues what arrives for it meanwhile
        if on_handoff is not None:
            on_handoff(index)
        tags[index] = subscribe(index)  # back in the line, as the last standby

    tags.extend(subscribe(i) for i in range(len(topology.queues)))
    balancer = None
    if topology.members_queue:
        channel.basic_consume(topology.members_queue, lambda *_: None, auto_ack=True)
        balancer = _Balancer(channel, topology)
    if on_consuming is not None:
        on_consuming()
    while True:
        if not inbox:
            connection.process_data_events(time_limit=0.1)
        if not inbox:  # idle: make everything durable and acknowledged
            settle()
            if on_idle is not None:
                on_idle()
        else:
            index, method, props, body = inbox.popleft()
            if balancer is not None:
                balancer.delivered(index)
            try:
                handled = handlers[index].handle(body, redelivered(method, props))
            except InvalidMessage as error:
                settle()
                _dead_letter(channel, topology, body, props, error, topology.queues[index])
                channel.basic_ack(method.delivery_tag)
                if on_reject is not None:
                    on_reject(error)
                # Looked at within a second, not after each one: a flood of bad messages
                # costs a round trip less each.
                depth_due = min(depth_due, time.monotonic() + DEPTH_AFTER_REJECT_SECONDS)
            else:
                if not pending:
                    oldest = time.monotonic()
                last_tag = method.delivery_tag
                pending += 1
                rows += handled.written
                touched.add(index)
                if (rows >= max_rows or pending >= max_messages
                        or time.monotonic() - oldest >= max_delay):
                    settle()
        if time.monotonic() >= depth_due:
            report_depth()
        if balancer is not None:  # busy or idle: a saturated instance must share too
            for index in balancer.surplus():
                hand_off(index)
        if should_stop():
            settle()
            for tag in tags:
                channel.basic_cancel(tag)
            # What arrived but was not handled is given back, never held unacknowledged.
            for _, method, _, _ in inbox:
                channel.basic_reject(method.delivery_tag, requeue=True)
            break
    if channel.is_open:
        channel.close()


class _Balancer:
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


def redelivered(method: pika.spec.Basic.Deliver, props: pika.BasicProperties) -> bool:
    """Whether RabbitMQ delivered the message to a consumer before: the redelivered flag, or a
    quorum queue's x-delivery-count (which also counts returns the flag may not show)."""
    count = props.headers.get("x-delivery-count") if isinstance(props.headers, dict) else 0
    return bool(method.redelivered) or (type(count) is int and count > 0)


def _dead_letter(channel, topology: Topology, body: bytes, props: pika.BasicProperties,
                 error: InvalidMessage, queue: str) -> None:
    """Republish the message to the dead-letter exchange, confirmed, with the reason in headers
    and its own headers kept: those pika can encode again (it decodes a negative 64-bit header
    as an unsigned one it then cannot encode), else none of them, so that no header a sender
    chose can stop the daemon. A body over MAX_BODY_BYTES is kept cut to TRUNCATED_BYTES."""
    ours = {REASON_HEADER: error.reason.value, DETAIL_HEADER: error.detail[:500],
            "x-pvsim-queue": queue}
    if len(body) > MAX_BODY_BYTES:
        ours[SIZE_HEADER] = len(body)
        body = body[:TRUNCATED_BYTES]
    theirs = props.headers if isinstance(props.headers, dict) else {}
    for headers in ({**theirs, **ours}, ours):
        dl_props = pika.BasicProperties(delivery_mode=2, content_type=props.content_type,
                                        message_id=props.message_id, timestamp=props.timestamp,
                                        headers=headers)
        try:
            channel.basic_publish(topology.dead_letter_exchange, queue, body, properties=dl_props)
            break
        except (pika.exceptions.UnsupportedAMQPFieldException, struct.error, TypeError,
                ValueError, OverflowError) as exc:  # raised while encoding, before any I/O
            if headers is ours:
                raise
            log.warning("the message's own headers cannot be sent again (%s): dead-lettering it "
                        "without them", type(exc).__name__)
    log.warning("dead-lettered a message: %s", error)
