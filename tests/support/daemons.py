"""pvsim's daemons as the subprocesses systemd would run, and their HTTP endpoints.

`Daemons().start("pv", config)` runs `python3 -m pvsim.daemons.pv --config FILE`, logging to
FILE's directory, and waits for /healthz; `http_get`, `http_post_json` and `metric_value` are
what a test (or a bench) asks a running daemon.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

from tests.support.paths import PYTHON, ROOT
from tests.support.pvsimconfig import PvsimConfig


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET from a daemon on loopback; (status, body), error statuses included."""
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
    """One daemon subprocess (`meter` or `pv`) on a test's config."""

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
        assert self.proc is not None, "not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                code = self.proc.returncode if self.proc else None
                raise AssertionError(f"{self.name} exited with {code}:\n{self.log()}")
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
        assert self.proc is not None, "not started"
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal and wait; returns the exit status (raises if it does not exit in time)."""
        assert self.proc is not None, "not started"
        if self.running():
            self.proc.send_signal(signum)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.running():
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Daemons:
    """The daemons a test started, all killed at its end (the `daemons` fixture)."""

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
