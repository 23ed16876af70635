"""The test tiers: which fixtures put a test in which tier, and the fast tier's broker guard.

A test's tiers follow from the fixtures it uses (tests/conftest.py marks it at collection), so
that nobody has to remember a marker. `make test-fast` deselects every tier below and runs with
PVSIM_TEST_TIER=fast, where `guard_broker_ports` makes a connection to a broker's port from the
test process fail the test, the broker fixtures refuse to start, and every Hypothesis property
runs at most FAST_TIER_MAX_EXAMPLES examples (the fuzzers' full budgets are `make check`'s).
"""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import settings

from tests.support.rabbit import SYSTEM_AMQP_PORT
from tests.support.rig import BLOCK, FIRST_BASE, LAST_BASE

# fixture -> the markers of every test that uses it (directly or through another fixture)
TIER_FIXTURES: dict[str, tuple[str, ...]] = {
    "rabbitmq": ("broker",), "rabbit_node": ("broker",), "private_rabbitmq": ("broker",),
    "system_rabbitmq": ("broker", "system_broker"), "amqp_proxy": ("broker",),
    "cluster": ("broker", "cluster"), "daemons": ("daemon",),
    "container": ("container",), "host_can_start_containers": ("container",),
}
FAST_TIER_ENV = "PVSIM_TEST_TIER"
FAST_TIER_MAX_EXAMPLES = 25   # a property's examples in the fast tier; `make check` runs them all
LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "")


def fast_tier() -> bool:
    """Whether this run is `make test-fast` (no broker, no daemons, no cluster, no container)."""
    return os.environ.get(FAST_TIER_ENV) == "fast"


def tiers_of(fixturenames: object) -> list[str]:
    """The markers a test using these fixtures gets, in TIER_FIXTURES' order, each once."""
    used = set(fixturenames) if isinstance(fixturenames, (list, tuple, set, frozenset)) else set()
    marks: list[str] = []
    for fixture, fixture_marks in TIER_FIXTURES.items():
        if fixture in used:
            marks += [m for m in fixture_marks if m not in marks]
    return marks


def broker_port(address: object) -> bool:
    """Whether a socket address is a RabbitMQ's AMQP port on this host: the machine's 5672, or
    a rig node's (the tests' private node and the cluster's: base+1..base+20 of a rig block)."""
    if not (isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int)):
        return False
    host, port = address[0], address[1]
    if host not in LOOPBACK:
        return False
    in_rig = FIRST_BASE <= port < LAST_BASE + BLOCK and 1 <= (port - FIRST_BASE) % BLOCK <= 20
    return port == SYSTEM_AMQP_PORT or in_rig


def refuse_in_fast_tier(what: str) -> None:
    """Fail the test that asked for `what` (a broker) in the fast tier."""
    if fast_tier():
        pytest.fail(f"a fast-tier test asked for {what}: it belongs in the broker tier "
                    f"(its fixture marks it so; `make check` runs it)", pytrace=False)


def guard_broker_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on (until monkeypatch undoes it), connecting a socket of this process to a
    broker's port raises AssertionError naming it."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(address: object) -> None:
        if broker_port(address):
            raise AssertionError(f"a fast-tier test connected to a RabbitMQ port ({address}); "
                                 f"use the `rabbitmq` fixture, which puts it in the broker tier")

    def connect(sock: socket.socket, address: object) -> None:
        refuse(address)
        return real_connect(sock, address)  # type: ignore[arg-type]

    def connect_ex(sock: socket.socket, address: object) -> int:
        refuse(address)
        return real_connect_ex(sock, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


def cap_examples(test: object, max_examples: int = FAST_TIER_MAX_EXAMPLES) -> bool:
    """Give a Hypothesis test at most `max_examples` examples (its other settings kept); False
    for a test that is not one. Hypothesis reads the settings when the test runs, so this holds
    for a test already collected."""
    current = getattr(test, "_hypothesis_internal_use_settings", None)
    if current is None or current.max_examples <= max_examples:
        return False
    setattr(test, "_hypothesis_internal_use_settings", settings(current, max_examples=max_examples))
    return True
