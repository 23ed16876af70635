"""The `cluster` fixture: a 3-node RabbitMQ cluster for the cluster tests (tests/support/rig.py).

- `cluster` (session scope: a boot takes about 20 s): a started `rig.Cluster` of 3 nodes, shared
  by the tests of every module here (each on exchange and queue names of its own);
  before each test that uses it, every node a previous test killed or stopped is brought back
  (`Cluster.heal()`), so each test starts with 3 running nodes.
- Skipped, with the reason, when Debian's rabbitmq-server is not installed.
- At the end of the session every node is stopped and the rig's directory removed, unless a test
  that used it failed: then the logs are kept and their path is printed in the summary. Failures
  of other tests of the session (the package test, say) are not the cluster's: they keep nothing.

Tests here live in the package `cluster` (tests/cluster/__init__.py) so that this conftest is
imported as `cluster.conftest`, beside the suite's top-level conftest. Every test using `cluster`
is marked `broker` and `cluster` by tests/conftest.py.
"""

from __future__ import annotations

import pytest

from tests.support.rig import Cluster, ClusterError, available

_kept_logs: list[str] = []
_cluster_failures: list[str] = []  # node ids of the tests using `cluster` that failed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Count the failures (setup, call or teardown) of the tests that use the cluster: only they
    say anything about it. (This conftest's hooks see only the items under tests/cluster.)"""
    outcome = yield
    if outcome.get_result().failed and "cluster" in getattr(item, "fixturenames", ()):
        _cluster_failures.append(item.nodeid)


@pytest.fixture(scope="session")
def cluster(request, tmp_path_factory):
    reason = available()
    if reason:
        pytest.skip(reason)
    failed_before = len(_cluster_failures)
    rig = Cluster(tmp_path_factory.mktemp("cluster"), nodes=3)
    try:
        rig.start()
    except BaseException:
        rig.close(keep_logs=True)
        _kept_logs.append(str(rig.dir))
        raise
    yield rig
    keep = len(_cluster_failures) > failed_before
    rig.close(keep_logs=keep)
    if keep:
        _kept_logs.append(str(rig.dir))


@pytest.fixture(autouse=True)
def _healthy_cluster(request):
    """Every test that uses `cluster` starts with all its nodes running, and leaves no
    connection of its own open (the cluster lives for the session)."""
    rig = request.getfixturevalue("cluster") if "cluster" in request.fixturenames else None
    if rig is not None:
        try:
            rig.heal()
        except ClusterError as e:
            pytest.fail(f"the shared cluster could not be brought back: {e}")
    yield
    if rig is not None:
        rig.close_connections()


def pytest_terminal_summary(terminalreporter):
    for path in _kept_logs:
        terminalreporter.write_line(f"RabbitMQ cluster logs kept in {path}")
