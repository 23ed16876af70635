"""The `cluster` fixture keeps its nodes' logs for the cluster's own failures only (issue 18,
section 9): a session where another test failed (the package test on a host that cannot start a
container, say) while every cluster test passed printed "RabbitMQ cluster logs kept".

Each case is a real pytest session over a real cluster test, with a test that really fails: one
outside tests/cluster, or, through a plugin, the cluster test itself. Two cluster boots in all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

from tests.support.rig import available

pytestmark = [pytest.mark.slow, pytest.mark.cluster,
              pytest.mark.skipif(available() is not None, reason=str(available()))]

CLUSTER_TEST = "tests/cluster/test_rig.py::test_the_nodes_form_one_cluster"
KEPT = "RabbitMQ cluster logs kept in"


def session(tmp_path: Path, *args: str,
            plugin_dir: Path | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    basetemp = tmp_path / "basetemp"
    path = [str(ROOT)] + ([str(plugin_dir)] if plugin_dir else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(ROOT), f"--basetemp={basetemp}", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return proc, basetemp


def rig_dirs(basetemp: Path) -> list[Path]:
    return sorted(p for p in basetemp.glob("cluster[0-9]*") if not p.is_symlink())


def test_another_tests_failure_keeps_no_cluster_logs(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "test_elsewhere.py").write_text("def test_outside_the_cluster_fails():\n    assert False\n")
    proc, basetemp = session(tmp_path, CLUSTER_TEST, str(elsewhere / "test_elsewhere.py"))
    assert proc.returncode == 1 and "1 failed, 1 passed" in proc.stdout, \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    assert KEPT not in proc.stdout, proc.stdout[-3000:]
    assert "nodes kept" not in proc.stderr, proc.stderr[-3000:]
    assert not rig_dirs(basetemp), f"the rig's directory was kept: {rig_dirs(basetemp)}"


def test_a_cluster_tests_failure_keeps_the_logs(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    # After the test has run (trylast: after pytest's own call of it), its call fails.
    (plugins / "fail_cluster_tests.py").write_text(
        "import pytest\n\n\n"
        "@pytest.hookimpl(trylast=True)\n"
        "def pytest_runtest_call(item):\n"
        "    if 'cluster' in item.fixturenames:\n"
        "        raise AssertionError('the cluster test failed (injected)')\n")
    proc, basetemp = session(tmp_path, "-p", "fail_cluster_tests", CLUSTER_TEST, plugin_dir=plugins)
    assert proc.returncode == 1 and "1 failed" in proc.stdout and "injected" in proc.stdout, \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    kept = rig_dirs(basetemp)
    assert len(kept) == 1 and f"{KEPT} {kept[0]}" in proc.stdout, (kept, proc.stdout[-3000:])
    assert sorted(kept[0].glob("*/*.log")) or sorted(kept[0].rglob("*.log")), f"no logs in {kept[0]}"
