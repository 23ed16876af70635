"""broker.run_sessions, the daemons' link to RabbitMQ, against the real broker.

One tenacity policy covers connecting and reconnecting: a session that fails soon after it
started is retried with a growing backoff (tenacity's attempt numbers go up), a session that had
worked for STABLE_SECONDS reconnects at once with the backoff started afresh, an error that is
not the broker's propagates, and a stop request ends it even while the broker is unreachable.
The assertions are on attempt numbers and calls, never on how long anything took.
"""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest

from pvsim.config import BrokerConfig
from pvsim.pipeline import broker
from pvsim.pipeline.broker import sessions
from pvsim.pipeline.csvsink import SinkError

FAST = dict(retry_initial_seconds=0.01, retry_max_seconds=0.05)


def attempts_logged(caplog) -> list[int]:
    return [int(m.group(1)) for r in caplog.records if r.name.startswith("pvsim.pipeline.broker")
            and (m := re.search(r"\(attempt (\d+)\); retrying", r.getMessage()))]


class Hooks(broker.SessionHooks):
    """What run_sessions tells its caller: when to stop, and each session's end."""

    def __init__(self, should_stop) -> None:
        self.stop_when = should_stop
        self.ended: list[BaseException | None] = []

    def should_stop(self) -> bool:
        return self.stop_when()

    def session_ended(self, error: BaseException | None) -> None:
        self.ended.append(error)


class Sessions(Hooks):
    """A session callable that fails `failures` times with a broker error, then stops; and its
    hooks."""

    def __init__(self, failures: int) -> None:
        self.done = threading.Event()
        super().__init__(self.done.is_set)
        self.failures = failures
        self.calls = 0
        self.connections: list = []

    def __call__(self, connection) -> None:
        self.calls += 1
        self.connections.append(connection)
        assert connection.is_open
        if self.calls <= self.failures:
            raise broker.ConnectionLost("the channel was closed by the broker (test)")
        self.done.set()


def test_a_session_failing_soon_after_it_started_backs_off(rabbitmq, caplog):
    caplog.set_level(logging.WARNING, logger="pvsim.pipeline.broker")
    s = Sessions(failures=3)
    broker.run_sessions(BrokerConfig(url=rabbitmq, **FAST), s, s)
    assert s.calls == 4
    assert attempts_logged(caplog) == [1, 2, 3]  # one policy: the backoff grows across sessions
    assert [type(e) for e in s.ended] == [broker.ConnectionLost] * 3 + [type(None)]
    assert not any(c.is_open for c in s.connections)  # each closed by the thread that opened it


def test_a_session_that_had_worked_reconnects_at_once(rabbitmq, caplog, monkeypatch):
    monkeypatch.setattr(sessions, "STABLE_SECONDS", 0.0)  # every session counts as having worked
    caplog.set_level(logging.WARNING, logger="pvsim.pipeline.broker")
    s = Sessions(failures=3)
    broker.run_sessions(BrokerConfig(url=rabbitmq, **FAST), s, s)
    assert s.calls == 4
    assert attempts_logged(caplog) == []  # no backoff: straight back to attempt 1 each time


def test_an_error_that_is_not_the_brokers_propagates(rabbitmq):
    def session(connection) -> None:
        session.connection = connection
        raise SinkError("cannot write /nowhere/pvsim-2026-01-01.csv: No space left on device")

    hooks = Hooks(lambda: False)
    with pytest.raises(SinkError):
        broker.run_sessions(BrokerConfig(url=rabbitmq, **FAST), session, hooks)
    assert not session.connection.is_open
    assert hooks.ended == [None]  # the session ended, and not by a broker error


def test_a_stop_ends_it_while_the_broker_is_unreachable(amqp_proxy, caplog):
    """The proxy is down: every attempt fails; asking to stop returns without an exception."""
    caplog.set_level(logging.WARNING, logger="pvsim.pipeline.broker")
    stop = threading.Event()
    calls: list = []
    waiter = threading.Thread(target=lambda: (wait_attempts(caplog, 2), stop.set()), daemon=True)
    waiter.start()
    broker.run_sessions(BrokerConfig(url=amqp_proxy.url, **FAST), calls.append,
                        Hooks(stop.is_set))
    assert calls == [] and stop.is_set()
    assert attempts_logged(caplog)[:2] == [1, 2]


def wait_attempts(caplog, n: int) -> None:
    deadline = time.monotonic() + 30
    while len(attempts_logged(caplog)) < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_cluster_node_that_does_not_answer_is_passed_over(rabbitmq, caplog):
    """broker.urls: the first node is down (nothing listens there), the next one answers."""
    caplog.set_level(logging.INFO, logger="pvsim.pipeline.broker")
    down = "amqp://guest:secret@127.0.0.1:1/%2F"
    cfg = BrokerConfig(urls=(down, rabbitmq), connect_attempts=1, **FAST)
    connection = broker.connect(cfg)
    try:
        assert connection.is_open
    finally:
        connection.close()
    text = caplog.text
    assert "RabbitMQ node amqp://guest:***@127.0.0.1:1/%2F: " in text and "trying amqp://" in text
    shown = rabbitmq.replace(":guest@", ":***@").rsplit("/", 1)[0]   # as the log redacts it
    assert f"connected to RabbitMQ at {shown}" in text
    assert "secret" not in text


def test_when_no_node_answers_the_error_names_them_all():
    cfg = BrokerConfig(urls=("amqp://guest:secret@127.0.0.1:1/%2F",
                             "amqp://guest:secret@127.0.0.1:2/%2F"), connect_attempts=2, **FAST)
    with pytest.raises(broker.BrokerUnavailable) as err:
        broker.connect(cfg)
    message = str(err.value)
    assert ("at amqp://guest:***@127.0.0.1:1/%2F or amqp://guest:***@127.0.0.1:2/%2F after 2 attempts"
            in message)
    assert "secret" not in message


def test_a_queue_declared_with_other_arguments_is_an_operators_error_not_retried(
        pvsim_config, rabbitmq, caplog):
    """RabbitMQ refuses (406) to declare a queue that exists with other arguments: run_sessions
    gives up at once with DeclarationMismatch, naming the queue and the difference."""
    caplog.set_level(logging.WARNING, logger="pvsim.pipeline.broker")
    raw = broker.connect(BrokerConfig(url=rabbitmq))
    try:
        raw.channel().queue_declare(pvsim_config.queue, durable=True,
                                    arguments={"x-max-length": 5})
    finally:
        raw.close()
    topology = pvsim_config.topology
    hooks = Hooks(lambda: False)
    with pytest.raises(broker.DeclarationMismatch) as err:
        broker.run_sessions(BrokerConfig(url=rabbitmq, **FAST),
                            lambda link: broker.Publisher(link, topology), hooks)
    message = str(err.value)
    assert f"refused to declare the queue {pvsim_config.queue}:" in message, message
    assert "inequivalent arg '" in message and "\n" not in message
    assert err.value.exit_code == 78, message
    assert attempts_logged(caplog) == [] and hooks.ended == [None]  # tried once, never retried
