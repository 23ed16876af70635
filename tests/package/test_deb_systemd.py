"""The .deb, proven under a real systemd: build it, install it into a booted Debian 12 container
(systemd-nspawn, private network, its own RabbitMQ), and check what issue #4 promises an
administrator: both units active, enabled and running as `pvsim`; one CSV row per second under
/var/lib/pvsim; /metrics answering; no gap and no duplicate across a RabbitMQ restart; a clean stop;
a config edit that survives a reinstall with mode 0640 root:pvsim; `pvsim-run` for an ordinary
user; an upgrade to the next version with the units running (restarted on the new code, config
edit kept, no second lost or doubled); plain remove keeping config, state and user; purge
leaving nothing of pvsim but its system user, as is Debian practice.

The container machinery is tests/package/systemd/rig.sh; its debootstrapped root is cached under
/var/cache/pvsim-test-rig, so only the first run pays the ~1 minute of debootstrap.
Needs root (CI runs as root); skipped otherwise.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.waiting import wait_for

RIG = ROOT / "tests" / "package" / "systemd" / "rig.sh"
UNITS = ("pvsim-meter.service", "pvsim-pv.service")
CONFIG = "/etc/pvsim/pvsim.yaml"
HEADER = ["timestamp", "meter_id", "meter_w", "meter_kw", "pv_kw", "net_kw"]
DEB_IN_CONTAINER = "/root/pvsim-test"
NO_LOOPBACK = 3  # rig.sh up: the container has no working loopback interface
CANNOT_CONTAIN = 4  # rig.sh probe: systemd-nspawn cannot start a container on this host

pytestmark = [
    pytest.mark.slow,
    pytest.mark.container,   # its RabbitMQ is the container's own: the host's is never touched
    pytest.mark.skipif(os.geteuid() != 0, reason="boots a systemd-nspawn container: needs root"),
]

_timings: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def host_can_start_containers() -> None:
    """Before building anything: a host that cannot start a container at all (a CI runner that
    is itself a container) skips the test, saying why, as a host without loopback does."""
    proc = subprocess.run([str(RIG), "probe"], capture_output=True, text=True, timeout=120)
    if proc.returncode == CANNOT_CONTAIN:
        pytest.skip(f"this host cannot run the container test: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"rig.sh probe exited {proc.returncode}: {proc.stderr[-3000:]}"


class Timer:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self):
        self.began = time.monotonic()

    def __exit__(self, *exc):
        _timings[self.name] = round(time.monotonic() - self.began, 1)


# ----------------------------------------------------------------------------------------------
# The package and the container


UPGRADE_ENTRY = """pvsim ({version}) unstable; urgency=medium

  * Upgrade test build: the same code under a newer version.

 -- pvsim developers <pvsim@example.org>  Sun, 22 Nov 2026 12:00:00 +0000

"""


def build_deb(work: Path, bump_to: str | None = None) -> Path:
    """Build the .deb with scripts/build-deb (lintian errors or warnings fail it) from a copy of
    the work tree, so that dpkg-buildpackage's output in '..' lands in a temporary directory;
    with `bump_to`, the copy gets that version (changelog entry and __version__) first."""
    src = work / "pvsim"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "dist", ".pybuild", "__pycache__", ".pytest_cache", "*.egg-info", "out", "build"))
    if bump_to:
        init = src / "pvsim" / "__init__.py"
        init.write_text(re.sub(r'__version__ = ".*"', f'__version__ = "{bump_to}"', init.read_text()))
        changelog = src / "debian" / "changelog"
        changelog.write_text(UPGRADE_ENTRY.format(version=bump_to) + changelog.read_text())
    dist = work / "dist"
    proc = subprocess.run([str(src / "scripts" / "build-deb")], cwd=src,
                          env=dict(os.environ, PVSIM_DIST=str(dist)),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"scripts/build-deb failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    debs = sorted(dist.glob("pvsim_*_all.deb"))
    assert len(debs) == 1, debs
    return debs[0]


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> tuple[Path, Path]:
    """The .deb of this tree, and the same code as the next version (for the upgrade)."""
    version = re.search(r'__version__ = "(.*)"', (ROOT / "pvsim" / "__init__.py").read_text()).group(1)
    with Timer("build + lintian"):
        current = build_deb(tmp_path_factory.mktemp("build"))
    assert current.name == f"pvsim_{version}_all.deb"
    upgrade_version = f"{version}+upgrade1"
    with Timer("build the upgrade"):
        upgrade = build_deb(tmp_path_factory.mktemp("build-upgrade"), bump_to=upgrade_version)
    assert upgrade.name == f"pvsim_{upgrade_version}_all.deb"
    return current, upgrade


class Container:
    def __init__(self, rundir: Path) -> None:
        self.rundir = rundir

    @property
    def root(self) -> Path:
        """The container's file system, as seen from the host."""
        return Path(f"/proc/{(self.rundir / 'leader').read_text().strip()}/root")

    def run(self, *cmd: str, check: bool = True, timeout: float = 120, user: str | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        if user is not None:
            cmd = ("runuser", "-u", user, "--", "env", f"HOME=/home/{user}", f"USER={user}", *cmd)
        proc = subprocess.run([str(RIG), "exec", str(self.rundir), *cmd], capture_output=True, text=True,
                              timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, (f"{' '.join(cmd)} exited {proc.returncode}\n"
                                          f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def out(self, *cmd: str, **kw) -> str:
        return self.run(*cmd, **kw).stdout.strip()

    def show(self, unit: str, *props: str) -> dict[str, str]:
        text = self.out("systemctl", "show", unit, *(f"--property={p}" for p in props))
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def journal(self, *units: str, lines: int = 60) -> str:
        args = [a for u in units for a in ("-u", u)]
        return self.run("journalctl", "--no-pager", "-o", "short-monotonic", "-n", str(lines), *args,
                        check=False).stdout

    def python(self, code: str, **kw) -> str:
        return self.out("python3", "-c", code, **kw)


@pytest.fixture(scope="module")
def container() -> Container:
    with Timer("prepare cached root"):
        proc = subprocess.run([str(RIG), "prepare"], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rundir = Path(tempfile.mkdtemp(prefix="pvsim-rig-", dir="/var/tmp"))
    try:
        with Timer("boot"):
            proc = subprocess.run([str(RIG), "up", str(rundir)], capture_output=True, text=True, timeout=180)
        if proc.returncode == NO_LOOPBACK:
            pytest.skip(f"this host cannot run the container test: {proc.stderr.strip().splitlines()[-1]}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield Container(rundir)
    finally:
        with Timer("shutdown"):
            subprocess.run([str(RIG), "down", str(rundir)], capture_output=True, text=True, timeout=120)
        assert not rundir.exists(), f"rig.sh down left {rundir} behind"
        print("\ntimings (s):", ", ".join(f"{k} {v}" for k, v in _timings.items()))


# ----------------------------------------------------------------------------------------------
# Helpers


def read_rows(c: Container, directory: str) -> list[dict[str, str]]:
    """Every row of every daily CSV file (a run can span local midnight), checking each header."""
    rows = []
    for path in sorted((c.root / directory.lstrip("/")).glob("pvsim-*.csv")):
        text = path.read_text()
        # The last line may be in the middle of being written: keep complete lines only.
        text = text[: text.rfind("\n") + 1]
        if not text:
            continue  # just created: not even the header is complete yet
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        assert header == HEADER, f"{path.name}: header {header}"
        rows += [dict(zip(HEADER, r)) for r in reader]
    return rows


def series(rows: list[dict[str, str]]) -> dict[str, list[dt.datetime]]:
    by_meter: dict[str, list[dt.datetime]] = {}
    for row in rows:
        ts = dt.datetime.fromisoformat(row["timestamp"])
        assert ts.utcoffset() is not None, f"timestamp without offset: {row['timestamp']}"
        by_meter.setdefault(row["meter_id"], []).append(ts)
    return by_meter


def assert_no_gap_no_duplicate(rows: list[dict[str, str]]) -> None:
    for meter, stamps in series(rows).items():
        dups = sorted({t for t in stamps if stamps.count(t) > 1})
        assert not dups, f"{meter}: duplicated rows at {[t.isoformat() for t in dups[:5]]}"
        ordered = sorted(stamps)
        gaps = [(a.isoformat(), b.isoformat()) for a, b in zip(ordered, ordered[1:])
                if (b - a) != dt.timedelta(seconds=1)]
        assert not gaps, f"{meter}: gaps in the CSV between {gaps[:5]}"


def last_instant(rows: list[dict[str, str]]) -> dt.datetime | None:
    stamps = [t for ts in series(rows).values() for t in ts]
    return max(stamps) if stamps else None


def http_get(c: Container, address: str, path: str) -> tuple[int, str, str]:
    code = (
        "import sys, urllib.request, urllib.error\n"
        f"url = 'http://{address}{path}'\n"
        "try:\n"
        "    r = urllib.request.urlopen(url, timeout=5)\n"
        "    status, ctype, body = r.status, r.headers.get('Content-Type', ''), r.read().decode()\n"
        "except urllib.error.HTTPError as e:\n"
        "    status, ctype, body = e.code, e.headers.get('Content-Type', ''), e.read().decode()\n"
        "print(status); print(ctype); sys.stdout.write(body)\n"
    )
    out = c.run("python3", "-c", code).stdout
    status, ctype, body = out.split("\n", 2)
    return int(status), ctype, body


def both_active(c: Container) -> bool:
    return all(c.run("systemctl", "is-active", "--quiet", u, check=False).returncode == 0 for u in UNITS)


# ----------------------------------------------------------------------------------------------
# The scenario: one administrator's day with the package, in order


def test_deb_under_real_systemd(debs: tuple[Path, Path], container: Container) -> None:
    c = container
    c.run("mkdir", "-p", DEB_IN_CONTAINER)
    for deb in debs:
        shutil.copy(deb, c.root / DEB_IN_CONTAINER.lstrip("/"))
    deb_inside, upgrade_inside = (f"{DEB_IN_CONTAINER}/{deb.name}" for deb in debs)
    assert c.out("systemctl", "is-active", "rabbitmq-server") == "active"
    # Anything named pvsim before the package arrives (the .deb just copied in) is not its leftover.
    baseline = set(c.out("find", "/", "/run", "/tmp", "-xdev", "-iname", "*pvsim*").splitlines())

    # --- apt install ./pvsim_*.deb: the maintainer scripts enable and start both units.
    with Timer("install"):
        c.run("apt-get", "install", "-y", "-q", deb_inside, timeout=300)
    assert c.out("dpkg-query", "-W", "-f=${Status}", "pvsim") == "install ok installed"
    for shipped in ("/usr/share/pvsim/prometheus/pvsim-rules.yml",
                    "/usr/share/pvsim/grafana/pvsim-dashboard.json"):
        assert c.run("test", "-s", shipped, check=False).returncode == 0, f"{shipped} not installed"
    for unit in UNITS:
        assert c.run("systemctl", "is-enabled", unit, check=False).stdout.strip() == "enabled", unit
    wait_for(lambda: both_active(c), timeout=60, message="both units active", interval=0.5,
             detail=lambda: c.journal(*UNITS))
    passwd = c.out("getent", "passwd", "pvsim").split(":")
    assert int(passwd[2]) < 1000, f"pvsim is not a system user: {passwd}"
    assert passwd[6] in ("/usr/sbin/nologin", "/sbin/nologin"), passwd
    pvsim_uid = passwd[2]
    for unit in UNITS:
        props = c.show(unit, "ActiveState", "SubState", "MainPID", "User", "Type", "WatchdogUSec",
                       "NRestarts")
        assert props["ActiveState"] == "active" and props["SubState"] == "running", (props, c.journal(unit))
        assert props["User"] == "pvsim" and props["Type"] == "notify", props
        assert props["WatchdogUSec"] not in ("0", "infinity"), props
        status = (c.root / "proc" / props["MainPID"] / "status").read_text()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
        assert set(uids) == {pvsim_uid}, f"{unit} runs as uid {uids}, pvsim is {pvsim_uid}"
        assert re.search(r"^CapEff:\s+0+$", status, re.M), f"{unit} has capabilities:\n{status}"
    # sd_notify beyond READY=1: a STATUS= text, and WATCHDOG=1 pings that keep coming.
    pings = {u: c.show(u, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"] for u in UNITS}

    # Where the installed daemons listen and write, according to the installed config.
    listen_meter, listen_pv, outdir = c.python(
        "from pvsim import config; c = config.load(); "
        "print(c.meter.listen); print(c.pv.listen); print(c.output.directory)").split("\n")
    assert outdir == "/var/lib/pvsim", outdir
    st = c.out("stat", "-c", "%U:%G %a", outdir)
    assert st == "pvsim:pvsim 750", st

    # --- CSV rows appear under /var/lib/pvsim, one per second and meter, in real time.
    with Timer("first rows"):
        wait_for(lambda: len(read_rows(c, outdir)) >= 3, timeout=45, message="CSV rows under /var/lib/pvsim",
                 interval=0.5, detail=lambda: c.journal(*UNITS))
    for path in (c.root / "var/lib/pvsim").glob("pvsim-*.csv"):
        owner = c.out("stat", "-c", "%U:%G", f"/var/lib/pvsim/{path.name}")
        assert owner == "pvsim:pvsim", (path.name, owner)
        assert re.fullmatch(r"pvsim-\d{4}-\d{2}-\d{2}\.csv", path.name), path.name
    before = series(read_rows(c, outdir))
    time.sleep(5)
    after = series(read_rows(c, outdir))
    for unit in UNITS:
        assert c.show(unit, "StatusText")["StatusText"], f"{unit} sent no STATUS="
    assert set(after) == set(before) and after, after.keys()
    for meter in after:
        grown = len(after[meter]) - len(before[meter])
        assert 3 <= grown <= 7, f"{meter}: {grown} rows in 5 s, expected about 5"
    newest = last_instant(read_rows(c, outdir))
    lag = dt.datetime.now(dt.timezone.utc) - newest
    assert dt.timedelta(0) <= lag < dt.timedelta(seconds=10), f"newest row {newest} lags {lag}"
    assert_no_gap_no_duplicate(read_rows(c, outdir))

    # --- Both /metrics answer (Prometheus text format), and /healthz says healthy.
    for unit, address in zip(UNITS, (listen_meter, listen_pv)):
        status, ctype, body = http_get(c, address, "/metrics")
        assert status == 200 and ctype.startswith("text/plain"), (unit, status, ctype)
        assert re.search(r"^# TYPE pvsim_\w+ ", body, re.M), f"{unit}: no pvsim_ metric in\n{body[:2000]}"
        # The process_* metrics need /proc/stat: a unit hardened with ProcSubset=pid loses them.
        assert re.search(r"^process_resident_memory_bytes \d", body, re.M), f"{unit}: no process metrics"
        status, _, body = http_get(c, address, "/healthz")
        assert status == 200, (unit, status, body)

    # --- Restart RabbitMQ: the daemons ride it out, and the CSV has no gap and no duplicate.
    with Timer("rabbitmq restart"):
        restart_began = dt.datetime.now(dt.timezone.utc)
        c.run("systemctl", "restart", "rabbitmq-server", timeout=180)
        restart_ended = dt.datetime.now(dt.timezone.utc)
        wait_for(lambda: ((last_instant(read_rows(c, outdir)) or restart_began)
                          > restart_ended + dt.timedelta(seconds=3)),
                 timeout=90, message="rows written after the broker restart", interval=0.5,
                 detail=lambda: c.journal(*UNITS, "rabbitmq-server.service"))
    rows = read_rows(c, outdir)
    first = min(t for ts in series(rows).values() for t in ts)
    assert first < restart_began, "the CSV does not reach back before the restart"
    assert_no_gap_no_duplicate(rows)
    for unit in UNITS:
        props = c.show(unit, "ActiveState", "NRestarts")
        assert props == {"ActiveState": "active", "NRestarts": "0"}, (unit, props, c.journal(unit))
    for unit, address in zip(UNITS, (listen_meter, listen_pv)):
        wait_for(lambda: http_get(c, address, "/healthz")[0] == 200, timeout=30,
                 message=f"{unit} healthy again", interval=0.5)
        # The restart really cut the daemons' connections, and they reconnected by themselves.
        reconnects = re.search(r"^pvsim_broker_reconnects_total (\S+)$", http_get(c, address, "/metrics")[2],
                               re.M)
        assert reconnects and float(reconnects.group(1)) >= 1, f"{unit}: {reconnects and reconnects.group(0)}"

    # --- pvsim-run works for an ordinary user, into a directory of their choice.
    c.run("useradd", "--create-home", "--shell", "/bin/sh", "alice")
    with Timer("pvsim-run as a user"):
        proc = c.run("pvsim-run", "--accelerated", "--broker", "none", "--date", "2026-06-21", "--step", "60",
                     "--json", "--output", "/home/alice/sim", user="alice", check=False)
    assert proc.returncode == 0, f"pvsim-run as alice exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    user_files = c.out("find", "/home/alice/sim", "-type", "f", "-printf", "%u %f\n").splitlines()
    assert user_files and all(re.fullmatch(r"alice pvsim-\d{4}-\d{2}-\d{2}\.csv", f)
                              for f in user_files), user_files
    user_rows = read_rows(c, "/home/alice/sim")
    assert len(user_rows) >= 24 * 60 - 60, len(user_rows)  # a day at one reading a minute (DST aside)
    # The BDEW table ships with the package: a household's standard profile for a week.
    c.run("sh", "-c", "printf 'meter: {model: slp, profile: H0, annual_kwh: 3650}\\n' > /home/alice/slp.yaml",
          user="alice")
    proc = c.run("pvsim-run", "--accelerated", "--broker", "none", "--date", "2026-01-05", "--days", "7",
                 "--step", "900", "--json", "--config", "/home/alice/slp.yaml", "--output", "/home/alice/slp",
                 user="alice", check=False)
    assert proc.returncode == 0, f"pvsim-run with slp exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    week_kwh = json.loads(proc.stdout)["meters"]["smart-meter-0"]["consumed_kwh"]
    assert 50 < week_kwh < 120, week_kwh  # 3650 kWh a year is 70 a week; H0 uses more in January
    c.run("userdel", "--remove", "alice")

    # The watchdog pings kept coming (the daemons ping at half of WatchdogSec=30).
    for unit in UNITS:
        wait_for(lambda: int(c.show(unit, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])
                 > int(pings[unit]), timeout=20, message=f"a WATCHDOG=1 from {unit} after the first",
                 interval=0.5)

    # --- Upgrade to the next version with both units running: dpkg restarts them on the new
    # code, an administrator's config edit is kept, and no second is lost or doubled.
    pids = {u: c.show(u, "MainPID")["MainPID"] for u in UNITS}
    edit = f"# edited before the upgrade {uuid.uuid4()}"
    with open(c.root / CONFIG.lstrip("/"), "a") as fh:
        fh.write(f"\n{edit}\n")
    new_version = upgrade_inside.rsplit("_", 2)[1]
    with Timer("upgrade"):
        c.run("apt-get", "install", "-y", "-q", upgrade_inside, timeout=300)
        upgraded = dt.datetime.now(dt.timezone.utc)
    assert c.out("dpkg-query", "-W", "-f=${Version}", "pvsim") == new_version
    wait_for(lambda: both_active(c), timeout=60, message="both units active after the upgrade",
             interval=0.5, detail=lambda: c.journal(*UNITS))
    for unit, address in zip(UNITS, (listen_meter, listen_pv)):
        assert c.show(unit, "MainPID")["MainPID"] != pids[unit], f"{unit} was not restarted"
        assert c.out(unit.split(".")[0], "--version") == f"{unit.split('.')[0]} {new_version}"
        wait_for(lambda: f'version="{new_version}"' in
                 http_get(c, address, "/metrics")[2], timeout=30, message=f"{unit} serving the new version",
                 interval=0.5)
    assert edit in (c.root / CONFIG.lstrip("/")).read_text(), "the config edit was lost on upgrade"
    assert c.out("stat", "-c", "%U:%G %a", CONFIG) == "root:pvsim 640"
    wait_for(lambda: (last_instant(read_rows(c, outdir))
             or upgraded) > upgraded + dt.timedelta(seconds=3), timeout=60,
             message="rows written after the upgrade", interval=0.5, detail=lambda: c.journal(*UNITS))
    assert_no_gap_no_duplicate(read_rows(c, outdir))

    # --- Stop both: a clean exit 0 on SIGTERM, no SIGKILL, within TimeoutStopSec.
    with Timer("stop"):
        c.run("systemctl", "stop", *UNITS, timeout=60)
    for unit in UNITS:
        props = c.show(unit, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
        # ExecMainCode 1 is CLD_EXITED: the daemon exited by itself (not killed by a signal).
        assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainCode": "1",
                         "ExecMainStatus": "0"}, (unit, props, c.journal(unit))
        log = c.journal(unit, lines=200)
        # What systemd logs when a stop needs SIGKILL or the main process dies of a signal.
        assert not re.search(r"stop-sigterm' timed out|with signal SIGKILL|code=killed|code=dumped", log), log
    # Everything received before the stop was written: still no gap and no duplicate.
    assert_no_gap_no_duplicate(read_rows(c, outdir))

    # --- An administrator's config edit survives a reinstall; the file stays 0640 root:pvsim.
    assert c.out("stat", "-c", "%U:%G %a", CONFIG) == "root:pvsim 640"
    token = f"# local edit {uuid.uuid4()}"
    with open(c.root / CONFIG.lstrip("/"), "a") as fh:
        fh.write(f"\n{token}\n")
    with Timer("reinstall"):
        c.run("apt-get", "install", "--reinstall", "-y", "-q", upgrade_inside, timeout=300)
    assert token in (c.root / CONFIG.lstrip("/")).read_text(), "the config edit was lost on reinstall"
    assert c.out("stat", "-c", "%U:%G %a", CONFIG) == "root:pvsim 640"
    assert c.out("dpkg-statoverride", "--list", CONFIG) == f"root pvsim 640 {CONFIG}"
    # The reinstall restarted the (enabled) units, with the edited config.
    wait_for(lambda: both_active(c), timeout=60, message="both units active after the reinstall",
             interval=0.5, detail=lambda: c.journal(*UNITS))

    # --- Plain remove: the units stop; config, state and the user stay.
    with Timer("remove"):
        c.run("apt-get", "remove", "-y", "-q", "pvsim", timeout=300)
    for unit in UNITS:
        assert c.run("systemctl", "is-active", "--quiet", unit, check=False).returncode != 0, \
            f"{unit} still active"
    assert c.run("pgrep", "-u", "pvsim", check=False).returncode == 1, "processes of pvsim left running"
    assert c.out("dpkg-query", "-W", "-f=${Status}", "pvsim") == "deinstall ok config-files"
    assert token in (c.root / CONFIG.lstrip("/")).read_text()
    assert read_rows(c, outdir), "remove deleted the CSV files"
    assert c.run("getent", "passwd", "pvsim", check=False).returncode == 0, "remove deleted the user"
    assert c.run("test", "-e", "/usr/bin/pvsim-meter", check=False).returncode != 0

    # --- Install with RabbitMQ down (a broker that is late at boot): the units are ready at once,
    # stay up without a restart for longer than TimeoutStartSec, say what is missing, and when
    # the broker comes the meter's buffered seconds are written: no gap, no duplicate.
    # Masked, because the units' Wants=rabbitmq-server.service would start it right back.
    c.run("systemctl", "stop", "rabbitmq-server", timeout=120)
    c.run("systemctl", "mask", "rabbitmq-server")
    with Timer("install, broker down"):
        c.run("apt-get", "install", "-y", "-q", upgrade_inside, timeout=300)
    wait_for(lambda: both_active(c), timeout=30, message="both units active with the broker down",
             interval=0.5, detail=lambda: c.journal(*UNITS))
    for unit, address in zip(UNITS, (listen_meter, listen_pv)):
        assert "unreachable" in c.show(unit, "StatusText")["StatusText"], unit
        status, _, body = http_get(c, address, "/healthz")
        assert status == 503 and "not connected to RabbitMQ" in body, (unit, status, body)
    timeout_start = max(int(c.show(u, "TimeoutStartUSec")["TimeoutStartUSec"].rstrip("s") or 0)
                        for u in UNITS)
    watch_until = time.monotonic() + max(60, timeout_start + 10)  # the broker comes a minute late
    while time.monotonic() < watch_until:  # the failure this guards against: a restart every ~32 s
        for unit in UNITS:
            props = c.show(unit, "ActiveState", "NRestarts")
            assert props == {"ActiveState": "active", "NRestarts": "0"}, (unit, props, c.journal(unit))
        time.sleep(2)
    broker_back = dt.datetime.now(dt.timezone.utc)
    c.run("systemctl", "unmask", "rabbitmq-server")
    c.run("systemctl", "start", "rabbitmq-server", timeout=180)
    wait_for(lambda: (last_instant(read_rows(c, outdir))
             or broker_back) > broker_back + dt.timedelta(seconds=3), timeout=90,
             message="rows written after the broker came", interval=0.5,
             detail=lambda: c.journal(*UNITS, "rabbitmq-server.service"))
    assert_no_gap_no_duplicate(read_rows(c, outdir))

    # --- Purge: nothing of pvsim is left.
    with Timer("purge"):
        c.run("apt-get", "purge", "-y", "-q", "pvsim", timeout=300)
    assert c.run("dpkg-query", "-W", "pvsim", check=False).returncode != 0, "dpkg still knows pvsim"
    # The system user and group stay, as is Debian practice: files with their ids may remain
    # elsewhere (backups, a moved CSV directory), and a reused id would own them.
    assert c.run("getent", "passwd", "pvsim", check=False).returncode == 0, "purge removed user pvsim"
    assert c.run("getent", "group", "pvsim", check=False).returncode == 0, "purge removed group pvsim"
    assert "pvsim" not in c.out("dpkg-statoverride", "--list"), "statoverride left"
    left = set(c.out("find", "/", "/run", "/tmp", "-xdev", "-iname", "*pvsim*").splitlines()) - baseline
    assert not left, "left after purge:\n" + "\n".join(sorted(left))
    for unit in UNITS:
        assert c.show(unit, "LoadState")["LoadState"] == "not-found", unit


# ----------------------------------------------------------------------------------------------
# make check's test tools leave no service behind


def offline_apt(c: Container, packages: list[str]) -> None:
    """Let apt inside the container (private network: no mirror) install `packages`: the host's
    package lists (the container's sources name the same mirror), and every .deb apt would fetch
    put in the container's archive cache, from the host's cache or downloaded here."""
    lists = [p for p in Path("/var/lib/apt/lists").glob("*_dists_*") if p.is_file()]
    if not lists:
        pytest.skip("the host has no apt package lists to give the container")
    for path in lists:
        shutil.copy(path, c.root / "var/lib/apt/lists" / path.name)
    proc = c.run("apt-get", "install", "--print-uris", "-qq", "--no-install-recommends", *packages,
                 check=False)
    if proc.returncode != 0:
        pytest.skip(f"the host's package lists do not give apt {packages}: {proc.stderr.strip()[-300:]}")
    archives = c.root / "var/cache/apt/archives"
    for line in proc.stdout.splitlines():
        uri, name = line.split()[:2]
        uri = uri.strip("'")
        cached = Path("/var/cache/apt/archives") / name
        if cached.is_file():
            shutil.copy(cached, archives / name)
            continue
        try:
            with urllib.request.urlopen(uri, timeout=120) as r, open(archives / name, "wb") as out:
                shutil.copyfileobj(r, out)
        except OSError as e:
            pytest.skip(f"cannot download {uri} for the container: {e}")


def test_test_tools_are_installed_with_no_service_left_running_or_enabled(container: Container) -> None:
    """`make test-deps` installs prometheus for promtool and for a prometheus the tests run as
    their own process; Debian's package enables and starts a system-wide prometheus.service. Run
    make's own command for it on a pristine Debian 12 under systemd: the programs are there, and
    nothing of the package runs now or would at the next boot."""
    c = container
    plan = subprocess.run(["make", "-s", "-n", "test-deps"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert plan.returncode == 0, plan.stderr
    tools_line = [line for line in plan.stdout.splitlines() if "--no-services" in line]
    assert len(tools_line) == 1, f"make test-deps installs no test tools with --no-services:\n{plan.stdout}"
    words = tools_line[0].split()
    assert words[0] == "scripts/ensure-packages", words
    tools = words[2:]
    assert "prometheus" in tools, tools
    offline_apt(c, tools)
    c.run("mkdir", "-p", DEB_IN_CONTAINER)
    shutil.copy(ROOT / "scripts" / "ensure-packages", c.root / DEB_IN_CONTAINER.lstrip("/"))
    with Timer("ensure-packages --no-services"):
        proc = c.run(f"{DEB_IN_CONTAINER}/ensure-packages", *words[1:], timeout=600, check=False)
    assert proc.returncode == 0, f"ensure-packages exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    for tool in tools:
        assert c.out("dpkg-query", "-W", "-f=${Status}", tool) == "install ok installed", tool
    assert c.run("promtool", "--version", check=False).returncode == 0, "promtool does not run"
    units = [Path(f).name for tool in tools for f in c.out("dpkg-query", "-L", tool).splitlines()
             if re.fullmatch(r"/(usr/)?lib/systemd/system/[^/@]+\.(service|socket|timer|path)", f)]
    assert "prometheus.service" in units, units
    for unit in units:
        assert c.run("systemctl", "is-active", "--quiet", unit, check=False).returncode != 0, \
            f"{unit} is running:\n{c.journal(unit)}"
        assert c.run("systemctl", "is-enabled", unit, check=False).stdout.strip() == "disabled", unit
    assert c.run("pgrep", "-x", "prometheus", check=False).returncode == 1, "a prometheus process is running"
    boot_links = [p.name for p in c.root.glob("etc/rc[2-5].d/S*") if p.name[3:] in tools]
    assert not boot_links, f"SysV links would start them at boot: {boot_links}"
