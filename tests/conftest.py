"""Shared fixtures: a running RabbitMQ, private broker names per test, daemon processes.

- `rabbitmq` (session): makes sure RabbitMQ answers on 127.0.0.1:5672, starting it if needed;
  skips the test when it cannot.
- `pvsim_config`: a config file in tmp_path with a fresh exchange/queue/dead-letter names, free
  HTTP ports, output directory and meter state file of its own; the names are deleted afterwards.
  `.write(section={...})` changes keys, `.channel()` gives a pika channel for the test's own use.
- `daemons`: starts `python3 -m pvsim.daemons.<name> --config FILE` as a subprocess
  (`daemons.start("pv", cfg)`), waits for /healthz, and kills whatever is left at teardown.
- `amqp_proxy`: a TCP proxy in front of RabbitMQ that a test can take down and bring back, to
  simulate an unreachable or vanishing broker without disturbing anything else.
- `private_rabbitmq`: a RabbitMQ node of the test's own (node name, AMQP and distribution ports,
  data and logs under the test's tmp dir), for tests that stop, restart or break the broker
  itself: they never touch the machine's broker that other tests, or the developer, use.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pika
import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
AMQP_URL = f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/%2F"


def broker_reachable(timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_rabbitmq(timeout: float = 90.0) -> bool:
    """Start RabbitMQ if it is down and wait until it serves; True when it does."""
    if broker_reachable():
        return True
    subprocess.run(["rabbitmq-server", "-detached"], capture_output=True, timeout=30)
    subprocess.run(["rabbitmqctl", "await_startup", "--timeout", str(int(timeout))],
                   capture_output=True, timeout=timeout + 10)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker_reachable():
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    if not ensure_rabbitmq():
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672 and could not be started")
    return AMQP_URL


RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


class RabbitNode:
    """A RabbitMQ node of a test's own, run from Debian's /usr/lib/rabbitmq/bin as the current user.

    Everything it has is under `base`: its config (listening on 127.0.0.1:`port` only, no
    plugins), its Mnesia data (so durable queues and persistent messages survive `stop` and
    `start`, as on a real restart), its logs and its Erlang cookie (HOME). Start and stop are
    the real server's; `kill` is a SIGKILL of its whole process group.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.name = f"pvsimtest-{uuid.uuid4().hex[:8]}@localhost"
        self.port, self.dist_port = free_port(), free_port()
        (base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (base / "rabbitmq-env.conf").write_text("")
        (base / "enabled_plugins").write_text("[].\n")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(base), "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.name, "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "pid"), "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.name, *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, timeout: float = 120) -> "RabbitNode":
        with open(self.base / "server.out", "ab") as out:
            self.proc = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env,
                                         stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.ctl("await_startup", "--timeout", "10", timeout=30).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"RabbitMQ node {self.name} did not start:\n"
                                     f"{(self.base / 'server.out').read_text()[-3000:]}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        """The real thing: `rabbitmqctl stop`, and wait for the server to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.ctl("stop")
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def private_rabbitmq(tmp_path_factory):
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        pytest.skip(f"needs the rabbitmq-server package ({RABBITMQ_BIN} is missing)")
    node = RabbitNode(tmp_path_factory.mktemp("rabbitmq")).start()
    yield node
    node.stop()
    node.kill()


class TinyFs:
    """A tmpfs of a few KiB mounted for one test: a real file system that really fills up."""

    def __init__(self, path: Path, size_kib: int) -> None:
        self.path = path
        self.size_kib = size_kib

    def resize(self, size_kib: int) -> None:
        """Give it more (or less) room: a remount, as an administrator freeing space would."""
        subprocess.run(["mount", "-o", f"remount,size={size_kib}k", str(self.path)], check=True,
                       capture_output=True)
        self.size_kib = size_kib

    def fill(self, leave: int = 0) -> None:
        """Take all its free space but `leave` bytes, with a file named .fill."""
        with open(self.path / ".fill", "ab") as f:
            while True:
                free = os.statvfs(self.path).f_bavail * os.statvfs(self.path).f_frsize
                if free <= leave:
                    break
                try:
                    f.write(b"\0" * min(4096, free - leave))
                    f.flush()
                except OSError:
                    break

    def free(self) -> None:
        (self.path / ".fill").unlink(missing_ok=True)


@pytest.fixture
def tiny_fs(tmp_path: Path):
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _merge(base: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class PvsimConfig:
    """A config file of the test's own; `data` is what was written."""

    def __init__(self, directory: Path, url: str = AMQP_URL) -> None:
        self.dir = directory
        self.url = url
        tag = f"test.{uuid.uuid4().hex[:12]}"
        self.names = {"exchange": tag, "queue": f"{tag}.readings",
                      "dead_letter_exchange": f"{tag}.dead",
                      "dead_letter_queue": f"{tag}.readings.dead"}
        self.meter_port, self.pv_port = free_port(), free_port()
        self.output = directory / "out"
        self.state_file = directory / "meter.state"
        self.path = directory / "pvsim.yaml"
        self._connections: list = []
        self.data = {
            "timezone": "Europe/Madrid",
            "log_level": "INFO",
            "broker": {"url": url, **self.names, "retry_initial_seconds": 0.1,
                       "retry_max_seconds": 1.0, "heartbeat_seconds": 10},
            "meter": {"id": ["smart-meter-0"], "listen": f"127.0.0.1:{self.meter_port}",
                      "state_file": str(self.state_file)},
            "pv": {"listen": f"127.0.0.1:{self.pv_port}"},
            "output": {"directory": str(self.output)},
        }
        self.write()

    def write(self, **changes: object) -> Path:
        self.data = _merge(copy.deepcopy(self.data), changes)
        self.path.write_text(json.dumps(self.data, indent=1))  # JSON is YAML
        return self.path

    def load(self):
        from pvsim import config
        return config.load(self.path)

    @property
    def output_dir(self) -> Path:
        return Path(self.data["output"]["directory"])

    @property
    def queue(self) -> str:
        return self.names["queue"]

    @property
    def exchange(self) -> str:
        return self.names["exchange"]

    @property
    def topology(self):
        """The daemons' topology (their shard queues too, when the config has a fleet), with an
        unbounded dead-letter queue, as pvsim 0.1 declared it."""
        import dataclasses

        from pvsim.pipeline.broker import Topology
        return dataclasses.replace(Topology.from_config(self.load()), dead_letter_max_length=0)

    def channel(self):
        """A channel on a connection of its own (closed at teardown), topology declared."""
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        self._connections.append(conn)
        ch = conn.channel()
        self.topology.declare(ch)
        return ch

    def cleanup(self) -> None:
        for conn in self._connections:
            if conn.is_open:
                try:
                    conn.close()
                except Exception:
                    pass
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
            delete_topology(conn.channel(), self.topology)
            conn.close()
        except Exception:
            pass


def delete_topology(channel, topology) -> None:
    """Remove a test's queues and exchanges (the daemons never delete theirs)."""
    for queue in (*topology.queues, topology.members_queue, topology.dead_letter_queue):
        if queue:
            channel.queue_delete(queue)
    for exchange in (topology.exchange, topology.dead_letter_exchange):
        channel.exchange_delete(exchange)


@pytest.fixture
def pvsim_config(tmp_path: Path, rabbitmq: str):
    cfg = PvsimConfig(tmp_path)
    yield cfg
    cfg.cleanup()


@pytest.fixture
def private_config(tmp_path: Path, private_rabbitmq: RabbitNode):
    """Like pvsim_config, on the test's own RabbitMQ node (`private_rabbitmq`)."""
    cfg = PvsimConfig(tmp_path, url=private_rabbitmq.url)
    yield cfg
    cfg.cleanup()


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def http_post_json(port: int, path: str, body: object, timeout: float = 30.0) -> tuple[int, dict]:
    """POST `body` as JSON to a daemon on loopback; (status, the decoded JSON answer)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line[len(name)] not in " {":
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class DaemonProcess:
    def __init__(self, name: str, config: PvsimConfig, env: dict | None = None) -> None:
        self.name, self.config = name, config
        self.port = config.meter_port if name == "meter" else config.pv_port
        self.log_path = config.dir / f"{name}.log"
        inherited = {k: v for k, v in os.environ.items()
                     if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        self.env = dict(inherited, PYTHONPATH=str(ROOT), **(env or {}))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "DaemonProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", f"pvsim.daemons.{self.name}", "--config", str(self.config.path)],
            cwd=ROOT, env=self.env, stdout=log, stderr=log)
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if http_get(self.port, "/healthz", 2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not healthy after {timeout} s:\n{self.log()}")

    def metrics(self) -> str:
        return http_get(self.port, "/metrics")[1]

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal and wait; returns the exit status (raises if it does not exit in time)."""
        if self.running():
            self.proc.send_signal(signum)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Daemons:
    def __init__(self) -> None:
        self.started: list[DaemonProcess] = []

    def start(self, name: str, config: PvsimConfig, *, wait: bool = True,
              env: dict | None = None) -> DaemonProcess:
        d = DaemonProcess(name, config, env).start()
        self.started.append(d)
        if wait:
            d.wait_healthy()
        return d

    def cleanup(self) -> None:
        for d in self.started:
            d.kill()


@pytest.fixture
def daemons():
    ds = Daemons()
    yield ds
    ds.cleanup()


def csv_instants(directory: Path) -> dict[str, list[int]]:
    """Per meter, the instant of every complete row in a directory's daily CSVs."""
    from pvsim.pipeline.csvsink import all_day_files
    out: dict[str, list[int]] = {}
    for _, _, path in all_day_files(directory):
        text = path.read_text()
        for line in text[: text.rfind("\n") + 1].splitlines()[1:]:
            ts, meter = line.split(",")[:2]
            out.setdefault(meter, []).append(int(dt.datetime.fromisoformat(ts).timestamp()))
    return out


def drain_and_check_every_second_once(pv: "DaemonProcess", meter: "DaemonProcess",
                                      config: "PvsimConfig", meters: list[str],
                                      first: int | None = None) -> dict[str, list[int]]:
    """Stop the meter cleanly (it records what RabbitMQ confirmed), let pvsim-pv write all of it,
    stop pvsim-pv, and check that every second of every meter, from `first` (default: the
    meter's first row) to its last confirmed reading, is in the CSV exactly once."""
    assert meter.stop(signal.SIGTERM) == 0
    last = json.loads(config.state_file.read_text())["last_confirmed"]
    wait_for(lambda: all(max(csv_instants(config.output_dir).get(m, [0])) >= last[m] for m in meters),
             timeout=60, message="every confirmed reading written")
    assert pv.stop(signal.SIGTERM) == 0
    rows = csv_instants(config.output_dir)
    assert sorted(rows) == sorted(meters)
    for m in meters:
        got = rows[m]
        assert len(got) == len(set(got)), f"{m}: duplicate rows"
        expected = set(range(min(got) if first is None else first, last[m] + 1))
        missing = sorted(expected - set(got))
        assert not missing, f"{m}: {len(missing)} seconds missing, first {missing[:5]}"
        assert set(got) == expected, f"{m}: rows outside the expected seconds"
    return rows


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, message: str = "",
             ignoring: tuple[type[BaseException], ...] = ()) -> None:
    """Until `predicate()` holds; an error in `ignoring` (a daemon or a node between two
    states) counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except ignoring:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}")


class TcpProxy:
    """Forwards a local port to RabbitMQ; `down()` closes the listener and every connection."""

    def __init__(self, target: tuple[str, int] = (AMQP_HOST, AMQP_PORT)) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            if self._listener is not None:
                try:
                    self._listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._listener.close()
                self._listener = None
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._socks.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks += [client, upstream]
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def amqp_proxy(rabbitmq: str):
    proxy = TcpProxy()
    yield proxy
    proxy.down()


def written(row, instant: int) -> tuple:
    """A CSV Row as the PV service's batch listeners get it (pvservice.Written)."""
    return (row.timestamp.date(), row.meter_id, instant, row.meter_w, row.meter_kw, row.pv_kw)
