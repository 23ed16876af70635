"""The package test skips, saying why, on a host that cannot start a container (issue 18, section
9): a CI runner that is itself a container, where systemd-nspawn stops at once with "Failed to
create /../payload subcgroup" and `make check` used to exit 2.

That host is made here for real: the command runs in a cgroup namespace whose root lies below the
process's own cgroup, which is what such a runner gives its jobs (/proc/self/cgroup reads "/..").
systemd-nspawn itself then fails as it does there; nothing is faked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.paths import ROOT

RIG = ROOT / "tests" / "package" / "systemd" / "rig.sh"
CANNOT_CONTAIN = 4

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(os.geteuid() != 0, reason="moves processes between cgroups: needs root"),
    pytest.mark.skipif(shutil.which("systemd-nspawn") is None or shutil.which("unshare") is None,
                       reason="needs systemd-nspawn (systemd-container) and unshare (util-linux)"),
]


def own_cgroups() -> list[Path]:
    """This process's cgroup directories in the hierarchies systemd-nspawn uses: the unified one
    (cgroup2) and, on a hybrid host, name=systemd."""
    mounts: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        tail = fields[fields.index("-") + 1:]
        if fields[3] != "/":
            continue  # a mount of part of a hierarchy: paths would not map
        if tail[0] == "cgroup2":
            mounts.setdefault("", fields[4])
        elif tail[0] == "cgroup" and "name=systemd" in tail[2].split(","):
            mounts.setdefault("name=systemd", fields[4])
    dirs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in mounts and not path.startswith("/.."):
            dirs.append(Path(mounts[controllers]) / path.lstrip("/"))
    return dirs


def run_outside_own_cgroup_namespace(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """Run `cmd` in a new cgroup namespace rooted at a child cgroup of ours, with the process then
    moved back to our cgroup, above its namespace's root: a runner-in-a-container's condition.
    The move is done from here, outside the namespace, as a container's host would."""
    outer = own_cgroups()
    if not outer:
        pytest.skip("no cgroup hierarchy of ours found to nest a namespace in")
    inner = [d / f"pvsim-probe-{uuid.uuid4().hex[:8]}" for d in outer]
    try:
        for d in inner:
            d.mkdir()
    except OSError as e:
        for d in inner:
            if d.exists():
                d.rmdir()
        pytest.skip(f"cannot create a cgroup here ({e.strerror})")
    script = ('for d in $PVSIM_INNER_CGROUPS; do echo $$ > "$d/cgroup.procs"; done\n'
              'exec unshare --cgroup -- sh -c \'read go; exec "$@" </dev/null\' sh "$@"')
    env = dict(kw.pop("env", os.environ), PVSIM_INNER_CGROUPS=" ".join(map(str, inner)))
    proc = subprocess.Popen(["sh", "-c", script, "sh", *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)
    try:
        own_ns = os.readlink("/proc/self/ns/cgroup")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{proc.pid}/ns/cgroup") == own_ns:
            assert time.monotonic() < deadline and proc.poll() is None, "unshare --cgroup did not happen"
            time.sleep(0.01)
        for d in outer:
            (d / "cgroup.procs").write_text(str(proc.pid))
        out, err = proc.communicate("go\n", timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for d in inner:
            for sub, _, _ in sorted(os.walk(d), key=lambda w: -len(w[0])):
                os.rmdir(sub)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_probe_passes_where_containers_start():
    """On an ordinary host (this one, as the suite runs here) the probe lets the test go on."""
    proc = subprocess.run([str(RIG), "probe"], capture_output=True, text=True, timeout=120)
    if proc.returncode == CANNOT_CONTAIN:
        pytest.skip(f"this host cannot start containers itself: {proc.stderr.strip()}")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_probe_says_why_a_runner_in_a_container_cannot_start_one():
    proc = run_outside_own_cgroup_namespace([str(RIG), "probe"], timeout=120)
    assert proc.returncode == CANNOT_CONTAIN, (proc.returncode, proc.stderr)
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("rig: systemd-nspawn cannot start a container on this host: "
                           "Failed to create"), line
    assert "payload subcgroup" in line, line


def test_package_test_skips_there_before_building_anything(tmp_path):
    """What `make check` runs, on such a runner: the package test is skipped with nspawn's reason
    (exit 0, not 2), before a .deb is built or a root debootstrapped."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PVSIM_RIG_CACHE=str(tmp_path / "rig-cache"))
    proc = run_outside_own_cgroup_namespace(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "package" / "test_deb_systemd.py")], timeout=900, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Every test of the module skipped, and nothing else happened.
    assert re.search(r"^\d+ skipped in ", proc.stdout, re.M), proc.stdout[-3000:]
    assert "cannot start a container on this host: Failed to create" in proc.stdout, proc.stdout[-3000:]
    assert not (tmp_path / "rig-cache").exists(), "a root was debootstrapped before the probe said no"
