"""A RabbitMQ cluster of N nodes (3 by default) on this host, for tests: no containers, no root needed.

Use it from pytest through the `cluster` fixture (tests/cluster/conftest.py), or its one-node
form, the tests' private RabbitMQ (`rabbitmq` in tests/conftest.py, tests/support/rabbit.py), from
Python as `with Cluster(directory) as c: ...`, or by hand (the command line is tests/cluster/rig.py):

    /usr/bin/python3 -m tests.cluster.rig up [DIR] [--nodes N]   # prints the AMQP URLs
    /usr/bin/python3 -m tests.cluster.rig status [DIR]
    /usr/bin/python3 -m tests.cluster.rig ctl [DIR] NODE -- list_queues name leader
    /usr/bin/python3 -m tests.cluster.rig kill|stop|start [DIR] NODE
    /usr/bin/python3 -m tests.cluster.rig down [DIR] [--keep-logs]

(from /work/main; DIR defaults to /tmp/pvsim-rig; `--plugins management,prometheus` on `up`
gives every node its own management and Prometheus ports). Tests that need the cluster (issue 12's
fleet tests) belong in tests/cluster/, where the fixture is (tests/conftest.py marks them `cluster`).

Why one module of about 800 lines: it is one concept, the life of a set of RabbitMQ nodes (ports,
files, processes, boot, clustering, failures), whose parts share the `Node` states and the rules
below; about 100 of its lines are this docstring's findings, which belong next to the code they
explain. The command line, a separate concern, lives in tests/cluster/rig.py.

Layout
------
- **Servers.** Debian's `/usr/lib/rabbitmq/bin/rabbitmq-server` in the foreground, run as the
  current user (root in CI is fine, any user who can write DIR is too). Not `/usr/sbin/
  rabbitmq-server`: that wrapper switches to the `rabbitmq` user, which could not write a private
  directory under the tests' tmp dir nor read a private cookie. Each server runs in a session
  (process group) of its own, under `setpriv --pdeathsig TERM`: when the Python process that
  started it dies, even by SIGKILL, the node gets SIGTERM and shuts down (the script's trap
  forwards it to the VM). Servers are started from one long-lived thread, because the kernel
  sends that signal when the *thread* that forked the child ends. If the owner never calls
  `close()`, it runs at exit (`atexit`, keeping the logs).
- **Ports.** A block of 100 ports at `port_base` (the first free block from 27000 upwards in steps
  of 100, below Linux' ephemeral range and away from the system node's 5672, 15672, 15692, 25672
  and 35672-35682), reserved with a lock file `/tmp/pvsim-rig-ports-<base>.lock` for as long as
  the Cluster object lives. Node i (0-based) listens for AMQP on base+1+i and for Erlang
  distribution on base+21+i; with plugins enabled, management on base+41+i and Prometheus on
  base+61+i; `rabbitmqctl` gets base+80..base+99 for its own distribution ports (the default
  35672-35682 is shared with every other rabbitmqctl on the host). All on 127.0.0.1 only.
- **Names.** `pvsim-rig-<base>-<i>@localhost`, so that two rigs never collide in the shared epmd.
- **Directories.** `DIR/rig.json` (what the CLI needs to find the nodes again), `DIR/home/.erlang.
  cookie` (HOME of every node and every rabbitmqctl), `DIR/enabled_plugins`, and per node
  `DIR/node<i>/`: `rabbitmq.conf`, `mnesia/` (RABBITMQ_MNESIA_BASE: Mnesia, quorum queue Raft
  logs, message stores), `log/<node>.log` (RABBITMQ_LOG_BASE), `server.out` (stdout/stderr of
  the server script) and `pid` (RABBITMQ_PID_FILE, the VM's pid).
- **Environment.** Nodes and rabbitmqctl run with a clean environment: PATH, LANG, HOME and the
  RABBITMQ_* variables of the node, and RABBITMQ_CONF_ENV_FILE pointing to an empty file, because
  the system's /etc/rabbitmq/rabbitmq-env.conf sets NODENAME=rabbit@localhost (it would make every
  rig node try to be the system node) and ERL_FLAGS.
- **Cookie.** A random cookie per rig, in `DIR/home/.erlang.cookie` (mode 0400) with HOME=DIR/home
  for the servers and for rabbitmqctl. The cookie of the system node (/var/lib/rabbitmq) is never
  read: the rig's nodes and the system node cannot talk to each other, even by mistake.
- **epmd** is shared with the system node (port 4369). If none runs, the first node starts one
  (listening on 127.0.0.1 only); it outlives the rig, as epmd always does.
- **Clustering.** All nodes boot in parallel as independent nodes; then nodes 1..N-1 in turn do
  `stop_app`, `reset`, `join_cluster <node 0>`, `start_app`; the start ends when every node's
  `cluster_status` lists every node as running.
- **close()** stops every node (SIGTERM, then SIGKILL of its process group after a deadline) and
  removes DIR; with `keep_logs=True` it keeps the logs and configs and removes only the data.

What was surprising on RabbitMQ 3.10.8 (Debian 12, Erlang 25)
--------------------------------------------------------------
- `rabbitmqctl await_startup` does not wait for a node that has not registered with epmd yet: it
  fails at once ("node not running at all"). The rig first waits for the AMQP port to accept
  connections, then calls `await_startup` to confirm.
- Every rabbitmqctl call starts an Erlang VM: 0.6 to 2 s each on this host (2 CPUs). The rig
  keeps the number of calls low and runs independent ones in parallel. One node alone boots in
  about 3 s, three booting together take 8 to 10 s; the 3-node cluster is up, joined and checked
  in about 20 s. A killed node takes about 8 s to boot back into the cluster.
- rabbitmqctl must have the node's cookie (here via HOME); it also needs a free port in its
  distribution range, which is why the rig gives it one of its own.
- Feature flags: fresh 3.10.8 nodes enable every stable flag, `quorum_queue` included, so quorum
  queues and single active consumer on them need nothing more. A node that joins is reset first,
  so the flags always match.
- A quorum queue declared on a 3-node cluster gets a member on every node (the default initial
  group size is the cluster size); `rabbitmqctl list_queues name type leader members` reports the
  leader by node name. After `kill -9` of the leader, the other two elect a new leader within a few
  seconds; the old node comes back as a follower when restarted (`start(i)`), without any
  rabbitmqctl command: its Mnesia directory remembers the cluster.
- After `kill -9`, the other nodes see the node down at once (the distribution connection breaks);
  a `stop_app`ped node stays connected to the cluster but is no longer in `running_nodes`.
- Right after a failover, `list_queues ... messages` may report 0 for a quorum queue that still
  holds messages (the count comes from stale statistics): test for messages by consuming them.
- Single active consumer on a quorum queue (3.10.8): `list_consumers ... activity_status` shows
  `single_active` for one consumer and `waiting` for the others; when the active consumer's
  connection dies, its unacknowledged messages go, flagged redelivered, to the next consumer,
  which becomes `single_active`. (Classic queues with SAC have a takeover bug fixed only in
  3.10.13, see issue 12: the rig's tests use quorum queues only.)
- A node whose boot fails (e.g. a syntax error in rabbitmq.conf) writes the reason at the *start*
  of its stdout, followed by a long crash report and an `erl_crash.dump` in its working directory
  (the node's directory); its log file may not exist yet. ClusterError shows both ends of it.
- The cluster name defaults to `<node 0's name>@<real hostname>`, not `@localhost`.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import fcntl
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RABBITMQ_BIN = Path(os.environ.get("PVSIM_RIG_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
SERVER = RABBITMQ_BIN / "rabbitmq-server"
CTL = RABBITMQ_BIN / "rabbitmqctl"
QUEUES = RABBITMQ_BIN / "rabbitmq-queues"
SETPRIV = shutil.which("setpriv") or ""
DEFAULT_DIR = Path(tempfile.gettempdir()) / "pvsim-rig"
FIRST_BASE, LAST_BASE, BLOCK = 27000, 32600, 100
MAX_NODES = 20
RIG_FILES = ("rig.json", "rig.json.tmp", "rabbitmq-env.conf", "enabled_plugins")
PLUGINS = {"management": "rabbitmq_management", "prometheus": "rabbitmq_prometheus"}


class ClusterError(RuntimeError):
    """The rig could not do what was asked; the message says which node and shows its log."""


def available() -> str | None:
    """None when the rig can run here, else why not (for pytest.skip)."""
    for path in (SERVER, CTL):
        if not os.access(path, os.X_OK):
            return f"needs Debian's rabbitmq-server package ({path} is missing)"
    if shutil.which("erl") is None:
        return "needs Erlang (erl is not on PATH)"
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as RabbitMQ does: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _reserve_ports(nodes: int, plugins: bool, base: int | None) -> tuple[int, int | None]:
    """A free block of ports and the fd of its lock file (held while the rig lives)."""
    bases = [base] if base is not None else range(FIRST_BASE, LAST_BASE + 1, BLOCK)
    for b in bases:
        lock = os.path.join(tempfile.gettempdir(), f"pvsim-rig-ports-{b}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        ports = [b + 1 + i for i in range(nodes)] + [b + 21 + i for i in range(nodes)]
        ports += list(range(b + 80, b + 100))
        if plugins:
            ports += [b + 41 + i for i in range(nodes)] + [b + 61 + i for i in range(nodes)]
        if all(_port_free(p) for p in ports):
            return b, fd
        os.close(fd)
    raise ClusterError(f"no free block of {BLOCK} ports for the rig in "
                       f"{bases[0]}..{bases[-1] + BLOCK - 1} on 127.0.0.1")


class _Spawner:
    """One long-lived thread that starts every server, so that `setpriv --pdeathsig` (which the
    kernel ties to the forking *thread*) fires only when the whole process goes away."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, name="pvsim-rig-spawner", daemon=True).start()

    def _run(self) -> None:
        while True:
            args, kwargs, result = self._jobs.get()
            try:
                result.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as e:  # handed back to the caller
                result.set_exception(e)

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        result: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((args, kwargs, result))
        return result.result(timeout=60)


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _spawn(*args, **kwargs) -> subprocess.Popen:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.popen(*args, **kwargs)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} is missing)"
    return "\n".join(text[-lines:]) or f"({path} is empty)"


def _owned(pid: int, node_name: str) -> bool:
    """Whether `pid` is a process of that rig node (its environment names it), not a reused pid."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"RABBITMQ_NODENAME={node_name}".encode() in env


def _group_is_ours(node: "Node") -> bool:
    """Whether node.pgid still names the node's process group (never signal a reused pgid)."""
    if node.pgid is None:
        return False
    if node.proc is not None and node.proc.poll() is None:
        return True
    if _owned(node.pgid, node.name):
        return True
    beam = node.beam_pid()
    try:
        return beam is not None and os.getpgid(beam) == node.pgid
    except OSError:
        return False


@dataclass
class Node:
    index: int
    name: str
    amqp_port: int
    dist_port: int
    dir: Path
    management_port: int | None = None
    prometheus_port: int | None = None
    proc: subprocess.Popen | None = None
    pgid: int | None = None        # the server's session = process group (the Popen's pid)
    state: str = "new"             # new | running | app_stopped | stopped | killed
    env: dict = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def log(self) -> Path:
        return self.dir / "log" / f"{self.name}.log"

    @property
    def server_out(self) -> Path:
        return self.dir / "server.out"

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    def alive(self) -> bool:
        """Whether the server (script and VM) still runs."""
        if self.proc is not None and self.proc.poll() is None:
            return True
        if self.proc is None and self.pgid is not None and _owned(self.pgid, self.name):
            return True
        return self.beam_pid() is not None

    def beam_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _owned(pid, self.name) else None

    def diagnostics(self) -> str:
        """The tail of the node's log, and its server output since it was last started: the head
        of it (where the reason of a failed boot is, e.g. a config syntax error) and its tail."""
        try:
            out = self.server_out.read_text(errors="replace").split("\n==== ")[-1].splitlines()
        except OSError:
            out = [f"({self.server_out} is missing)"]
        if len(out) > 60:
            out = out[:30] + [f"[... {len(out) - 50} lines ...]"] + out[-20:]
        return (f"--- {self.log} (tail) ---\n{_tail(self.log)}\n"
                f"--- {self.server_out} (this start) ---\n" + "\n".join(out))


class Cluster:
    """N RabbitMQ nodes of the test's own, clustered; see the module docstring for the layout.

    Nodes are numbered from 0; `urls()[i]` is node i. Nothing is started before `start()`.
    """

    def __init__(self, directory: str | os.PathLike | None = None, nodes: int = 3, *,
                 port_base: int | None = None, plugins: tuple[str, ...] = (),
                 extra_config: str = "", die_with_parent: bool = True,
                 boot_timeout: float = 120.0) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"nodes must be 1..{MAX_NODES}")
        unknown = set(plugins) - set(PLUGINS)
        if unknown:
            raise ValueError(f"unknown plugins {sorted(unknown)}; known: {sorted(PLUGINS)}")
        self.dir = Path(directory or tempfile.mkdtemp(prefix="pvsim-rig-")).resolve()
        self.plugins = tuple(plugins)
        self.extra_config = extra_config
        self.die_with_parent = die_with_parent and bool(SETPRIV)
        self.boot_timeout = boot_timeout
        self._lock_fd: int | None = None
        self._closed = False
        self._connections: list = []
        self.base, self._lock_fd = _reserve_ports(nodes, bool(plugins), port_base)
        self.nodes = [self._node(i) for i in range(nodes)]
        atexit.register(self._atexit)

    # ---- layout -------------------------------------------------------------------------------

    def _node(self, i: int) -> Node:
        b = self.base
        node = Node(index=i, name=f"pvsim-rig-{b}-{i}@localhost", amqp_port=b + 1 + i,
                    dist_port=b + 21 + i, dir=self.dir / f"node{i}")
        if "management" in self.plugins:
            node.management_port = b + 41 + i
        if "prometheus" in self.plugins:
            node.prometheus_port = b + 61 + i
        node.env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "HOME": str(self.dir / "home"),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CTL_DIST_PORT_MIN": str(b + 80),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(b + 99),
            "RABBITMQ_CONFIG_FILE": str(node.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.dir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.dir / "log"),
            "RABBITMQ_PID_FILE": str(node.pid_file),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        return node

    def _write_files(self) -> None:
        home = self.dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        (self.dir / "rabbitmq-env.conf").write_text("# empty: keeps /etc/rabbitmq/rabbitmq-env.conf out\n")
        enabled = ",".join(PLUGINS[p] for p in self.plugins)
        (self.dir / "enabled_plugins").write_text(f"[{enabled}].\n")
        for node in self.nodes:
            (node.dir / "log").mkdir(parents=True, exist_ok=True)
            conf = [f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}",
                    "loopback_users.guest = true",
                    "log.console = false", "log.file.level = info"]
            if node.management_port:
                conf += ["management.tcp.ip = 127.0.0.1",
                         f"management.tcp.port = {node.management_port}"]
            if node.prometheus_port:
                conf += ["prometheus.tcp.ip = 127.0.0.1",
                         f"prometheus.tcp.port = {node.prometheus_port}"]
            (node.dir / "rabbitmq.conf").write_text("\n".join(conf) + "\n" + self.extra_config + "\n")
            (node.dir / "advanced.config").write_text("[].\n")
        self._save_state()

    def _save_state(self) -> None:
        state = {"base": self.base, "plugins": list(self.plugins),
                 "nodes": [{"name": n.name, "url": n.url, "pgid": n.pgid, "state": n.state,
                            "management_port": n.management_port,
                            "prometheus_port": n.prometheus_port} for n in self.nodes]}
        tmp = self.dir / "rig.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.dir / "rig.json")

    @classmethod
    def attach(cls, directory: str | os.PathLike) -> "Cluster":
        """The rig that `up` started in `directory` (for `status`, `ctl`, `down`)."""
        directory = Path(directory).resolve()
        try:
            state = json.loads((directory / "rig.json").read_text())
        except OSError:
            raise ClusterError(f"no rig in {directory} ({directory / 'rig.json'} is missing)")
        self = cls.__new__(cls)
        self.dir = directory
        self.plugins, self.extra_config = tuple(state["plugins"]), ""
        self.die_with_parent, self.boot_timeout = False, 120.0
        self._lock_fd, self._closed, self._connections = None, False, []
        self.base = state["base"]
        self.nodes = []
        for i, saved in enumerate(state["nodes"]):
            node = self._node(i)
            node.pgid = saved["pgid"]
            node.state = saved["state"] if node.alive() else "stopped"
            self.nodes.append(node)
        return self

    # ---- rabbitmqctl ----------------------------------------------------------------------------

    def ctl(self, i: int, *args: str, timeout: float = 60, tool: Path = CTL,
            check: bool = False) -> subprocess.CompletedProcess:
        """`rabbitmqctl -n <node i> ARGS` with the rig's cookie; never waits more than `timeout`."""
        node = self.nodes[i]
        cmd = [str(tool), "-n", node.name, *args]
        try:
            proc = subprocess.run(cmd, env=node.env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"`{' '.join(cmd[1:])}` took more than {timeout:.0f} s\n"
                               f"{node.diagnostics()}") from e
        if check and proc.returncode != 0:
            raise ClusterError(f"`{' '.join(cmd[1:])}` failed ({proc.returncode}):\n"
                               f"{proc.stdout}{proc.stderr}\n{node.diagnostics()}")
        return proc

    def ctl_json(self, i: int, *args: str, timeout: float = 60, tool: Path = CTL):
        proc = self.ctl(i, *args, "--formatter", "json", timeout=timeout, tool=tool, check=True)
        try:
            return json.loads(proc.stdout)
        except ValueError as e:
            raise ClusterError(f"rabbitmqctl {' '.join(args)} on {self.nodes[i].name} gave no JSON:"
                               f"\n{proc.stdout}{proc.stderr}") from e

    def running_nodes(self, i: int) -> set[str]:
        """Names of the nodes that node i's `cluster_status` reports running."""
        return set(self.ctl_json(i, "cluster_status", timeout=30)["running_nodes"])

    # ---- lifecycle ------------------------------------------------------------------------------

    def _start_rig(self) -> "Cluster":
        """Boot every node, cluster them around node 0, and wait until all are running together."""
        if any(n.state != "new" for n in self.nodes):
            raise ClusterError("start() is for a new rig; use start(i) per node afterwards")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_files()
        try:
            for node in self.nodes:
                self._launch(node)
            self._parallel(self._await_boot, self.nodes)
            others = self.nodes[1:]

            def reset(n: Node) -> None:
                self.ctl(n.index, "stop_app", check=True)
                self.ctl(n.index, "reset", check=True)

            def start_app(n: Node) -> None:
                self.ctl(n.index, "start_app", check=True, timeout=self.boot_timeout)
                self._await_boot(n, confirm=False)

            self._parallel(reset, others)
            for node in others:
                self.ctl(node.index, "join_cluster", self.nodes[0].name, check=True)
            self._parallel(start_app, others)
            for node in self.nodes:
                node.state = "running"
            self.wait_until_clustered()
        finally:
            self._save_state()
        return self

    def __enter__(self) -> "Cluster":
        if all(n.state == "new" for n in self.nodes):
            try:
                self.start()
            except BaseException:
                self.close(keep_logs=True)
                raise
        return self

    def __exit__(self, *exc) -> None:
        self.close(keep_logs=exc[0] is not None)

    def _parallel(self, fn, nodes) -> list:
        nodes = list(nodes)
        if len(nodes) <= 1:
            return [fn(n) for n in nodes]
        with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
            return [f.result() for f in [pool.submit(fn, n) for n in nodes]]

    def _launch(self, node: Node) -> None:
        node.pid_file.unlink(missing_ok=True)
        cmd = [str(SERVER)]
        if self.die_with_parent:
            cmd = [SETPRIV, "--pdeathsig", "TERM", "--", *cmd]
        with open(node.server_out, "ab") as out:
            out.write(f"\n==== {time.strftime('%F %T')} starting {node.name}\n".encode())
            out.flush()
            node.proc = _spawn(cmd, env=node.env, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True, cwd=node.dir)
        node.pgid = node.proc.pid
        node.state = "booting"

    def _await_boot(self, node: Node, confirm: bool = True) -> None:
        """Wait until node's broker serves AMQP and (with `confirm`) `await_startup` confirms it;
        fail fast, with its log, when the server exits or the deadline passes."""
        deadline = time.monotonic() + self.boot_timeout
        while True:
            if not node.alive():
                raise ClusterError(f"RabbitMQ node {node.name} exited while starting "
                                   f"(logs in {node.dir}):\n{node.diagnostics()}")
            if _port_open(node.amqp_port):
                if not confirm:
                    return
                left = max(5, int(deadline - time.monotonic()))
                if self.ctl(node.index, "await_startup", "--timeout", str(left),
                            timeout=left + 15).returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise ClusterError(f"RabbitMQ node {node.name} did not start in "
                                   f"{self.boot_timeout:.0f} s (logs in {node.dir}):\n"
                                   f"{node.diagnostics()}")
            time.sleep(0.3)

    def wait_until_clustered(self, timeout: float = 60) -> None:
        """Wait until every running node reports every running node (per the rig) as running."""
        want = {n.name for n in self.nodes if n.state == "running"}
        deadline = time.monotonic() + timeout
        seen: dict = {}
        while True:
            seen = dict(zip([n.name for n in self.nodes if n.state == "running"],
                            self._parallel(lambda n: self.running_nodes(n.index),
                                           [n for n in self.nodes if n.state == "running"])))
            if all(s == want for s in seen.values()):
                return
            if time.monotonic() > deadline:
                detail = "\n".join(f"  {k}: {sorted(v)}" for k, v in seen.items())
                raise ClusterError(f"the nodes do not agree on the cluster after {timeout:.0f} s; "
                                   f"expected {sorted(want)} running, got:\n{detail}\n"
                                   f"(logs in {self.dir})")
            time.sleep(0.5)

    def _peer(self, i: int) -> int | None:
        return next((n.index for n in self.nodes if n.index != i and n.state == "running"), None)

    def _running_node(self) -> int:
        """The index of a running node, to ask about the cluster (ClusterError when none runs)."""
        i = self._peer(-1)
        if i is None:
            raise ClusterError("no node is running")
        return i

    def _wait_seen_down(self, i: int, timeout: float = 60) -> None:
        peer = self._peer(i)
        deadline = time.monotonic() + timeout
        while peer is not None and self.nodes[i].name in self.running_nodes(peer):
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.nodes[peer].name} still lists {self.nodes[i].name} as "
                                   f"running {timeout:.0f} s after it went down")
            time.sleep(0.3)

    def stop_node(self, i: int, how: str = "stop") -> None:
        """Take node i down: "stop" (clean, the VM exits), "stop_app" (the VM stays in the
        cluster, the broker stops) or "kill" (SIGKILL). `start(i)` brings it back in every case."""
        ways: dict[str, Callable[[int], None]] = {"stop": self.stop, "stop_app": self.stop_app,
                                                  "kill": self.kill}
        ways[how](i)

    def stop_app(self, i: int) -> None:
        """`rabbitmqctl stop_app`: the VM stays up and in the cluster, the broker does not serve."""
        self.ctl(i, "stop_app", check=True, timeout=120)
        self.nodes[i].state = "app_stopped"
        self._wait_seen_down(i)
        self._save_state()

    def start_app(self, i: int) -> None:
        """`rabbitmqctl start_app`, and wait until the node serves and is running in the cluster."""
        self.ctl(i, "start_app", check=True, timeout=self.boot_timeout)   # returns once booted
        self._await_boot(self.nodes[i], confirm=False)
        self.nodes[i].state = "running"
        self._save_state()
        self.wait_until_clustered()

    def stop(self, i: int, timeout: float = 60) -> None:
        """A clean full stop of node i (`rabbitmqctl stop`: the VM exits)."""
        node = self.nodes[i]
        if node.alive():
            self.ctl(i, "stop", timeout=timeout)
            self._wait_exit(node, timeout)
        node.state = "stopped"
        self._wait_seen_down(i)
        self._save_state()

    def kill(self, i: int, wait: bool = True) -> None:
        """`kill -9` of node i: SIGKILL to the VM and everything in its process group, at once.
        With `wait`, returns once another running node no longer lists it as running."""
        node = self.nodes[i]
        self._signal(node, signal.SIGKILL)
        self._wait_exit(node, 30)
        node.state = "killed"
        self._save_state()
        if wait:
            self._wait_seen_down(i)

    def start(self, i: int | None = None) -> "Cluster":
        """start(): boot every node, cluster them around node 0, and wait until all run together.
        start(i): bring node i back, whether killed, stopped or app-stopped, and wait until it
        runs in the cluster again."""
        if i is None:
            return self._start_rig()
        node = self.nodes[i]
        if node.state == "running":
            return self
        if node.state == "app_stopped" and node.alive():
            self.start_app(i)
            return self
        if node.alive():
            raise ClusterError(f"{node.name} is in state {node.state} but its server still runs")
        self._launch(node)
        self._await_boot(node)
        node.state = "running"
        self._save_state()
        self.wait_until_clustered(timeout=self.boot_timeout)
        return self

    def heal(self) -> None:
        """Bring every node that is not running back (for fixtures shared between tests)."""
        for node in self.nodes:
            if node.state != "running" or not node.alive():
                if node.state == "running":
                    node.state = "killed"   # died under us
                self.start(node.index)

    def _signal(self, node: Node, sig: int) -> None:
        """SIGKILL: the node's whole process group (script, VM, erl_child_setup, ...) and the VM.
        Other signals: only the server script (whose trap stops the VM cleanly) and the VM, not
        the VM's helper processes, whose death the VM would take as a crash."""
        targets: list[tuple[str, int]] = []
        if _group_is_ours(node) and node.pgid is not None:
            targets.append(("group" if sig == signal.SIGKILL else "pid", node.pgid))
        beam = node.beam_pid()
        if beam is not None:
            targets.append(("pid", beam))
        for kind, pid in targets:
            try:
                (os.killpg if kind == "group" else os.kill)(pid, sig)
            except ProcessLookupError:
                pass
            except PermissionError as e:
                raise ClusterError(f"cannot signal {node.name} ({kind} {pid}): {e}") from e

    def _wait_exit(self, node: Node, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
            beam = node.beam_pid()
            if not node.alive() and (beam is None or not _pid_exists(beam)):
                return True
            time.sleep(0.2)
        return False

    def close_connections(self) -> None:
        """Close the connections `connection()` opened (a test's, when it ends)."""
        for conn in self._connections:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:
                pass
        self._connections.clear()

    def close(self, keep_logs: bool = False, timeout: float = 30) -> None:
        """Stop every node (SIGTERM, SIGKILL after `timeout`), then remove the rig's directory;
        with `keep_logs`, remove only the data and print where the logs are."""
        if self._closed:
            return
        self._closed = True
        self.close_connections()
        live = [n for n in self.nodes if n.alive() or n.beam_pid() is not None]
        for node in live:
            # SIGTERM to the server script: its trap stops the VM cleanly; to the VM as well, in
            # case the script is gone (attached rig)
            self._signal(node, signal.SIGTERM)
        for node in live:
            if not self._wait_exit(node, timeout):
                self._signal(node, signal.SIGKILL)
                self._wait_exit(node, 10)
        for node in self.nodes:
            self._signal(node, signal.SIGKILL)   # mop up helpers left in the group, if any
            node.state = "stopped"
        if self.dir.exists():
            # only what the rig made: DIR may be a directory of the caller's with other things in it
            if keep_logs:
                for node in self.nodes:
                    shutil.rmtree(node.dir / "mnesia", ignore_errors=True)
                shutil.rmtree(self.dir / "home", ignore_errors=True)
                print(f"pvsim rig: logs of {len(self.nodes)} RabbitMQ nodes kept in {self.dir}",
                      file=sys.stderr)
            else:
                for node in self.nodes:
                    shutil.rmtree(node.dir, ignore_errors=True)
                shutil.rmtree(self.dir / "home", ignore_errors=True)
                for name in RIG_FILES:
                    (self.dir / name).unlink(missing_ok=True)
                try:
                    self.dir.rmdir()
                except OSError:
                    pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _atexit(self) -> None:
        if not self._closed:
            self.close(keep_logs=True)

    # ---- what tests ask -------------------------------------------------------------------------

    def urls(self) -> list[str]:
        """amqp:// URLs (guest/guest, vhost /) of every node, node 0 first."""
        return [n.url for n in self.nodes]

    def url(self, i: int) -> str:
        return self.nodes[i].url

    def index_of(self, node_name: str) -> int:
        for node in self.nodes:
            if node.name == node_name:
                return node.index
        raise KeyError(node_name)

    def connection(self, i: int, **params):
        """A pika BlockingConnection to node i, closed by `close()` if the test did not."""
        import pika
        p = pika.URLParameters(self.url(i))
        for key, value in params.items():
            setattr(p, key, value)
        conn = pika.BlockingConnection(p)
        self._connections.append(conn)
        return conn

    def queues(self, vhost: str = "/", via: int | None = None) -> dict[str, dict]:
        """name -> {type, leader, members, messages, consumers} as a running node reports them."""
        via = self._running_node() if via is None else via
        rows = self.ctl_json(via, "list_queues", "-p", vhost, "name", "type", "leader", "members",
                             "messages", "consumers", "--timeout", "30", timeout=45)
        return {r["name"]: r for r in rows}

    def quorum_leader(self, queue: str, vhost: str = "/", timeout: float = 60) -> int:
        """Index of the node that leads quorum queue `queue`. Asks a running node, and waits (up to
        `timeout`) until the leader it reports is a node that runs: right after its leader died,
        a queue reports the dead leader until the others have elected a new one."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = self.queues(vhost).get(queue)
            if last is not None:
                if last.get("type") != "quorum":
                    raise ClusterError(f"{queue} is a {last.get('type')} queue, not a quorum queue")
                try:
                    i = self.index_of(last.get("leader") or "")
                except KeyError:
                    i = None
                if i is not None and self.nodes[i].state == "running":
                    return i
            if time.monotonic() > deadline:
                raise ClusterError(f"no running leader for quorum queue {queue!r} in vhost {vhost!r}"
                                   f" after {timeout:.0f} s; last seen: {last}")
            time.sleep(0.5)

    def quorum_status(self, queue: str, vhost: str = "/", via: int | None = None) -> dict[int, str]:
        """Raft state of each member of quorum queue `queue`: node index -> "leader", "follower",
        ... (`rabbitmq-queues quorum_status`; a member that does not answer shows as such)."""
        via = self._running_node() if via is None else via
        rows = self.ctl_json(via, "quorum_status", "-p", vhost, queue, tool=QUEUES, timeout=45)
        return {self.index_of(r["Node Name"]): r["Raft State"] if isinstance(r.get("Raft State"), str)
                else f"unavailable {r.get('Raft State')}" for r in rows}

    def consumers(self, vhost: str = "/", via: int | None = None) -> list[dict]:
        """`list_consumers`: queue_name, consumer_tag, active, activity_status, ... per consumer."""
        via = self._running_node() if via is None else via
        return self.ctl_json(via, "list_consumers", "-p", vhost, "queue_name", "consumer_tag",
                             "active", "activity_status", "--timeout", "30", timeout=45)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
