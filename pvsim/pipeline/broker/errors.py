"""pvsim's own broker errors, and the one place pika's exceptions are translated into them.

Nothing outside this package catches a pika exception (nor OSError for a broker's sake): every
call into pika is made under `translated()`, so a daemon or a transport sees only these, as
dramatiq's RabbitMQ broker raises its own ConnectionClosed. Each carries a short human reason
(`describe_error`) as its message; the pika error stays attached as `__cause__` for debugging.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pika.exceptions


class BrokerError(Exception):
    """Something about RabbitMQ that the caller must act on; the message says what."""

    exit_code = os.EX_UNAVAILABLE


class BrokerUnavailable(BrokerError):
    """RabbitMQ could not be reached after the configured attempts; the message says what to do."""


class SessionEnded(BrokerError):
    """The session on a connection ends, and a fresh one may succeed: `run_sessions` retries it
    (a daemon raises a subclass of its own to give up what it holds and start again)."""


class ConnectionLost(SessionEnded):
    """The link to RabbitMQ failed (socket, heartbeat, a channel or connection closed by the
    broker); whatever was delivered and not acknowledged is redelivered."""


class PublishRefused(BrokerError):
    """RabbitMQ refused a published message (a nack, or unroutable and returned): publishing it
    again on a fresh connection is the cure."""


class DeclarationMismatch(BrokerError):
    """RabbitMQ refused a declaration (406 PRECONDITION_FAILED): a queue or an exchange exists
    with other arguments. An operator's error that no retry can cure: the program stops, as on
    a config error (exit 78, which the units list in RestartPreventExitStatus)."""

    exit_code = os.EX_CONFIG


# pika's errors after which a fresh connection may succeed.
_CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionClosedByBroker,
    pika.exceptions.StreamLostError,
    pika.exceptions.ChannelClosedByBroker,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ConnectionWrongStateError,
    ConnectionError,
    OSError,
)
_PUBLISH_REFUSED = (pika.exceptions.NackError, pika.exceptions.UnroutableError)
PRECONDITION_FAILED = 406


@contextmanager
def translated() -> Iterator[None]:
    """Run a call into pika; its connection errors leave as ConnectionLost, a refused publish
    as PublishRefused. pvsim's own errors, and pika's other ones (a bug), pass unchanged."""
    try:
        yield
    except _PUBLISH_REFUSED as exc:
        raise PublishRefused(describe_error(exc)) from exc
    except _CONNECTION_ERRORS as exc:
        raise ConnectionLost(describe_error(exc)) from exc


def describe_error(exc: BaseException | None) -> str:
    """A short human reason for a broker error (pika nests the socket error inside its own)."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, BrokerError):
        return str(exc)
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
