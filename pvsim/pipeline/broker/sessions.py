"""Connecting and reconnecting: the one retry policy, a one-shot `connect`, the daemons'
`run_sessions`, and `RabbitMQ`, the `Broker` the daemons are given.

Connecting, and the daemons' reconnecting, are retried with tenacity (capped exponential backoff
with jitter, each attempt logged). Only pvsim's own errors are seen here: a pika error has been
translated at the call that raised it (errors.translated).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import tenacity

from pvsim.config import BrokerConfig
from pvsim.pipeline.broker.connection import Link, close_quietly, open_link, redact, where
from pvsim.pipeline.broker.errors import BrokerError, BrokerUnavailable, ConnectionLost, SessionEnded
from pvsim.pipeline.broker.hooks import SessionHooks

log = logging.getLogger(__name__)

# A session that worked this long before it failed reconnects at once, without backoff.
STABLE_SECONDS = 30.0
Session = Callable[[Link], None]


class Broker(Protocol):
    """What a daemon needs of its broker: RabbitMQ, or a test's in-process stub."""

    def connect(self) -> Link:
        """A connection for a one-off task (BrokerUnavailable when none can be had)."""

    def run_sessions(self, session: Session, hooks: SessionHooks,
                     retry_on: tuple[type[BrokerError], ...] = (SessionEnded,)) -> None:
        """`session(link)` on fresh connections until `hooks.should_stop()`."""


class RabbitMQ:
    """The broker of a config's `broker` section."""

    def __init__(self, cfg: BrokerConfig) -> None:
        self.cfg = cfg

    def connect(self) -> Link:
        return connect(self.cfg)

    def run_sessions(self, session: Session, hooks: SessionHooks,
                     retry_on: tuple[type[BrokerError], ...] = (SessionEnded,)) -> None:
        run_sessions(self.cfg, session, hooks, retry_on)


def _log_attempt(url: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("RabbitMQ at %s: %s (attempt %d); retrying in %.1f s",
                    redact(url), exc, state.attempt_number,
                    state.next_action.sleep if state.next_action else 0.0)
    return before_sleep


def _retrying(cfg: BrokerConfig, *, forever: bool, should_stop: Callable[[], bool],
              retry_on: tuple[type[BaseException], ...] = (ConnectionLost,)) -> tenacity.Retrying:
    """The one retry policy: capped exponential backoff with jitter, each attempt logged."""
    stop = tenacity.stop_never if forever else tenacity.stop_after_attempt(cfg.connect_attempts)
    return tenacity.Retrying(
        stop=stop | _StopWhen(should_stop),
        wait=tenacity.wait_exponential_jitter(initial=cfg.retry_initial_seconds,
                                              max=cfg.retry_max_seconds,
                                              jitter=cfg.retry_initial_seconds),
        retry=tenacity.retry_if_exception_type(retry_on),
        before_sleep=_log_attempt(where(cfg)),
        sleep=_interruptible_sleep(should_stop),
        reraise=True,
    )


def connect(cfg: BrokerConfig, *, should_stop: Callable[[], bool] = lambda: False) -> Link:
    """Open a connection for a one-shot run, giving up after `connect_attempts`.

    Raises BrokerUnavailable with a message a user can act on. The daemons use `run_sessions`,
    which never gives up.
    """
    try:
        return _retrying(cfg, forever=False, should_stop=should_stop)(open_link, cfg, None)
    except ConnectionLost as exc:
        reason = str(exc)
        hint = "" if "broker.url" in reason else (
            " Is it running? Start it with 'sudo systemctl start rabbitmq-server' (or "
            "'rabbitmq-server -detached'), or point broker.url (broker.urls) at another broker.")
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ at {where(cfg)} after {cfg.connect_attempts} "
            f"attempts: {reason}.{hint}") from None


class _StableSessionEnded(Exception):
    """A session that had worked for STABLE_SECONDS lost its link: reconnect without backoff."""


def run_sessions(cfg: BrokerConfig, session: Session, hooks: SessionHooks,
                 retry_on: tuple[type[BrokerError], ...] = (SessionEnded,)) -> None:
    """The daemons' link to RabbitMQ: `session(link)` on fresh connections until stopped.

    Opening a connection and running the session on it are one attempt for tenacity, so a broker
    that is down, a topology that cannot be declared, or a session that fails soon after it
    started are all retried after the same capped exponential backoff with jitter, forever. A
    session that had run for STABLE_SECONDS when it failed was a working link: the next
    connection is tried at once and the backoff starts afresh. `session` returns once
    `hooks.should_stop()`; `hooks.session_ended(error)` is called after each session, with the
    broker error that ended it (None when it returned, or ended by an error outside `retry_on`).
    The connection is opened and closed by the calling thread, which alone uses it (pika is not
    thread-safe, shutdown included). Errors outside `retry_on` propagate to the caller: among
    them DeclarationMismatch, an operator's error no reconnect cures.
    """
    retry_on = (ConnectionLost, *retry_on)  # failing to connect is always retried

    def attempt() -> None:
        link = open_link(cfg, hooks.blocked)
        began = time.monotonic()
        error: BrokerError | None = None
        try:
            session(link)
        except retry_on as exc:
            error = exc
            if time.monotonic() - began >= STABLE_SECONDS:
                raise _StableSessionEnded() from exc
            raise
        finally:
            close_quietly(link)
            hooks.session_ended(error)

    while not hooks.should_stop():
        try:
            _retrying(cfg, forever=True, should_stop=hooks.should_stop, retry_on=retry_on)(attempt)
        except _StableSessionEnded:
            continue
        except retry_on:
            if not hooks.should_stop():  # tenacity only gives up when asked to stop
                raise
        return


class _StopWhen(tenacity.stop.stop_base):
    """tenacity stops retrying once the should-stop callable says so."""

    def __init__(self, predicate: Callable[[], bool]) -> None:
        self.predicate = predicate

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.predicate()


def _interruptible_sleep(should_stop: Callable[[], bool]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not should_stop() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))
    return sleep
