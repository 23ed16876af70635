"""The suite's fixtures, and the tiers its tests are marked with (helpers are in tests/support/).

Fixtures
- `rabbitmq` (session): the tests' private RabbitMQ node (`tests.support.rabbit.RabbitNode`: a
  one-node rig on ports, directories and an Erlang cookie of its own), started once, on first use,
  for every broker test of the session; its AMQP URL. The machine's broker is never used, started
  or changed. Skipped, saying why, when Debian's rabbitmq-server is not installed. When a test
  that used it failed, its logs are kept and their directory printed in the summary.
- `rabbit_node`: that node itself (for `rabbitmqctl` against it).
- `private_rabbitmq`: the same node, for tests that stop, restart, kill or alarm the broker: when
  the test ends, it is running again with its memory watermark back at its default.
- `system_rabbitmq`: the machine's broker on 127.0.0.1:5672, for the few tests that must use it for
  a reason their `system_broker` mark gives (pvsim-run's default broker: the README's commands run
  as written, the fuzz of its flags).
- `pvsim_config` (and `private_config`, its name where a test breaks the broker): a config file in
  tmp_path with fresh exchange/queue/dead-letter names, free HTTP ports, an output directory and a
  meter state file of its own, on the private node; the names are deleted afterwards.
- `daemons`: starts `python3 -m pvsim.daemons.<name> --config FILE` as a subprocess
  (`daemons.start("pv", cfg)`), waits for /healthz, and kills whatever is left at teardown.
- `amqp_proxy`: a TCP proxy in front of the private node that a test can take down and bring
  back, to simulate an unreachable or vanishing broker.
- `tiny_fs`: a 256 KiB tmpfs that really fills up (root only).

Tiers (markers, applied here from the fixtures a test uses, so nobody has to remember them)
- `broker`: talks to a RabbitMQ (any fixture above that gives one, or the cluster);
  `system_broker` as well when that RabbitMQ is the machine's.
- `daemon`: starts pvsim daemons as processes (`daemons`).
- `cluster`: uses the 3-node cluster of tests/cluster/.
- `container`: boots a systemd-nspawn container (tests/package/).
`make test-fast` runs the rest (and not `slow`), with PVSIM_TEST_TIER=fast: there the broker
fixtures fail the test that asks for one, and a connection from the test process to a broker port
is refused, so a test that reaches a broker without saying so fails instead of passing by luck;
Hypothesis properties run a smaller budget of examples there (tests/support/tiers.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Generator, Iterator

import pytest

from tests.support.daemons import Daemons
from tests.support.disk import TinyFs
from tests.support.net import TcpProxy
from tests.support.pvsimconfig import PvsimConfig
from tests.support.rabbit import (SYSTEM_AMQP_HOST, SYSTEM_AMQP_PORT, SYSTEM_AMQP_URL, RabbitNode,
                                  port_open)
from tests.support.rig import ClusterError, available
from tests.support.tiers import cap_examples, fast_tier, guard_broker_ports, refuse_in_fast_tier, tiers_of


_node_failures: list[str] = []   # node ids of the failed tests that used the private node
_kept_logs: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator[None, Any, None]:
    outcome = yield
    if outcome.get_result().failed and "rabbit_node" in getattr(item, "fixturenames", ()):
        _node_failures.append(item.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:
    for path in _kept_logs:
        terminalreporter.write_line(f"the tests' RabbitMQ node: logs kept in {path}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the tiers of the fixtures it uses (tests/support/tiers.py); in the
    fast tier, cap the examples of every Hypothesis property."""
    for item in items:
        for mark in tiers_of(getattr(item, "fixturenames", ())):
            item.add_marker(mark)
        if fast_tier():
            cap_examples(getattr(item, "obj", None))


# ---- RabbitMQ ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def rabbit_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    refuse_in_fast_tier("the private RabbitMQ node")
    reason = available()
    if reason:
        pytest.skip(reason)
    node = RabbitNode(tmp_path_factory.mktemp("rabbitmq"))
    try:
        node.start()
    except BaseException:
        node.close(keep_logs=True)
        _kept_logs.append(str(node.base))
        raise
    yield node
    node.close(keep_logs=bool(_node_failures))
    if _node_failures:
        _kept_logs.append(str(node.base))


@pytest.fixture(scope="session")
def rabbitmq(rabbit_node: RabbitNode) -> str:
    return rabbit_node.url


@pytest.fixture
def private_rabbitmq(rabbit_node: RabbitNode) -> Iterator[RabbitNode]:
    """The session's node, for a test that breaks it; running and unalarmed again afterwards."""
    _heal(rabbit_node)
    yield rabbit_node
    _heal(rabbit_node)
    rabbit_node.ctl("set_vm_memory_high_watermark", "0.4")


def _heal(node: RabbitNode) -> None:
    try:
        node.heal()
    except ClusterError as e:
        pytest.fail(f"the tests' RabbitMQ node could not be brought back: {e}")


@pytest.fixture(scope="session")
def system_rabbitmq() -> str:
    """The machine's broker, only for a test that says why it needs that one."""
    refuse_in_fast_tier("the machine's RabbitMQ")
    if not port_open(SYSTEM_AMQP_HOST, SYSTEM_AMQP_PORT):
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672 (make rabbitmq starts it)")
    return SYSTEM_AMQP_URL


@pytest.fixture
def pvsim_config(tmp_path: Path, rabbitmq: str) -> Iterator[PvsimConfig]:
    cfg = PvsimConfig(tmp_path, url=rabbitmq)
    yield cfg
    cfg.cleanup()


@pytest.fixture
def private_config(tmp_path: Path, private_rabbitmq: RabbitNode) -> Iterator[PvsimConfig]:
    """Like pvsim_config, for a test that breaks the node (`private_rabbitmq`)."""
    cfg = PvsimConfig(tmp_path, url=private_rabbitmq.url)
    yield cfg
    cfg.cleanup()


@pytest.fixture
def amqp_proxy(rabbit_node: RabbitNode) -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", rabbit_node.port))
    yield proxy
    proxy.down()


# ---- processes and disks ----------------------------------------------------------------------

@pytest.fixture
def daemons() -> Iterator[Daemons]:
    ds = Daemons()
    yield ds
    ds.cleanup()


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[TinyFs]:
    """A 256 KiB tmpfs under tmp_path (root only: mounting needs it; skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for a real full disk needs root")
    path = tmp_path / "tinyfs"
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield TinyFs(path, 256)
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ---- the fast tier's guard --------------------------------------------------------------------

@pytest.fixture(autouse=fast_tier())
def _no_broker_in_fast_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the fast tier, a connection from the test process to a broker's port fails the test."""
    guard_broker_ports(monkeypatch)
