"""The test tiers hold: a test is marked from the fixtures it uses, and the fast tier
(`make test-fast`, PVSIM_TEST_TIER=fast) cannot reach a broker, even by a test that forgot to say
it needs one (tests/support/tiers.py)."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.support.paths import PYTHON, ROOT
from tests.support.tiers import broker_port, cap_examples, guard_broker_ports, tiers_of


def test_the_ports_of_every_broker_the_tests_know_are_refused_and_no_other() -> None:
    assert broker_port(("127.0.0.1", 5672)) and broker_port(("localhost", 5672))
    assert broker_port(("127.0.0.1", 27001)) and broker_port(("127.0.0.1", 32620))  # rig nodes
    assert not broker_port(("127.0.0.1", 27021))       # a rig node's Erlang distribution port
    assert not broker_port(("127.0.0.1", 8080)) and not broker_port(("10.0.0.1", 5672))
    assert not broker_port("/run/a.sock")


def test_in_the_fast_tier_a_connection_to_a_broker_fails_and_any_other_works(monkeypatch) -> None:
    guard_broker_ports(monkeypatch)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), timeout=5):
            pass
    with pytest.raises(AssertionError, match="a fast-tier test connected to a RabbitMQ port"):
        socket.create_connection(("127.0.0.1", 5672), timeout=5)
    with socket.socket() as s, pytest.raises(AssertionError, match="RabbitMQ port"):
        s.connect_ex(("127.0.0.1", 27001))


def test_a_test_is_marked_from_the_fixtures_it_uses_directly_or_not() -> None:
    assert tiers_of(["tmp_path", "pvsim_config", "rabbitmq", "daemons"]) == ["broker", "daemon"]
    assert tiers_of(["cluster", "tmp_path"]) == ["broker", "cluster"]
    assert tiers_of(["system_rabbitmq"]) == ["broker", "system_broker"]
    assert tiers_of(["container"]) == ["container"]
    assert tiers_of(["tmp_path", "capsys"]) == []


def test_a_property_gets_a_smaller_budget_and_a_plain_test_none() -> None:
    from hypothesis import given, settings, strategies

    @settings(max_examples=500, deadline=None)
    @given(strategies.integers())
    def prop(n: int) -> None:
        seen.append(n)

    seen: list[int] = []
    assert cap_examples(prop, 7)
    prop()
    assert 0 < len(seen) <= 7
    assert not cap_examples(prop, 7)                        # already within the budget
    assert not cap_examples(test_a_test_is_marked_from_the_fixtures_it_uses_directly_or_not)


def test_a_broker_test_in_the_fast_tier_is_selected_by_its_mark_and_refused_by_its_fixture() -> None:
    """A broker test (marked by its fixture `pvsim_config`, not by hand) run in the fast tier
    fails at once, saying why, without starting a RabbitMQ."""
    test = ("tests/pipeline/test_consume.py::"
            "test_rows_between_two_syncs_never_exceed_sync_rows_plus_one_message")
    proc = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "broker",
                           test],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), PVSIM_TEST_TIER="fast"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "a fast-tier test asked for the private RabbitMQ node" in proc.stdout
    assert "deselected" not in proc.stdout
