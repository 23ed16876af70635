"""What pvsim-meter and pvsim-pv share: flags, config, signals, HTTP, sd_notify, exit codes.

A daemon is a `Service` (see the Protocol below) built from the config; `main` does the rest:

- `--config FILE` (default /etc/pvsim/pvsim.yaml); a config problem is one line on stderr and
  exit 78, which the units list in RestartPreventExitStatus;
- logging at `log_level`, one line per event on stderr (the journal under systemd);
- SIGTERM/SIGINT set the stop flag, SIGHUP the reopen flag; handlers only set flags, the worker
  loops act on them;
- the HTTP endpoint (/metrics, /healthz, the service's app) in its own thread;
- the service's worker threads, each guarded: a fatal sink error stops the daemon with exit 73
  (systemd restarts it; nothing unwritten was acknowledged), a queue or exchange that exists on
  RabbitMQ with other arguments with 78 (an operator's error, as a config one), an unexpected
  error with 70;
- the main thread: READY=1 once the daemon itself is set up (config read, state loaded, HTTP
  port bound, workers started), whether or not RabbitMQ is there yet: a broker down at boot must
  not make systemd kill and restart the unit, nor keep `apt install` waiting. The broker link is
  reported in STATUS=, /healthz and pvsim_broker_connected, and the workers keep reconnecting.
  Then WATCHDOG=1 at half of WatchdogSec while the workers are alive, STATUS= lines, and on stop
  STOPPING=1, joins, closes, exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry

from pvsim import __version__, config as configmod, logsetup
from pvsim.daemons.httpaccess import Access
from pvsim.daemons.httpserver import App, HttpServer
from pvsim.daemons.sdnotify import Notifier
from pvsim.pipeline import broker
from pvsim.pipeline.csvsink import SinkError

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 8.0  # the units give 20 s (TimeoutStopSec) before SIGKILL
STALL_SECONDS = 60.0      # a worker silent this long is hung: the watchdog pings stop


class Service(Protocol):
    """What `main` runs: a daemon's registry and app (read once, for the HTTP endpoint), its
    worker loops, its health and its end."""

    @property
    def registry(self) -> CollectorRegistry:
        """The daemon's own metrics, served at /metrics."""

    @property
    def app(self) -> App | None:
        """What the HTTP endpoint serves besides /metrics and /healthz (pvsim-pv: the API)."""

    def threads(self) -> list[tuple[str, Callable[[], None]]]:
        """The worker loops, each run in a thread of its own until the stop flag is set."""

    def health(self) -> tuple[bool, str]:
        """(healthy, detail) for /healthz: connected and making progress."""

    def alive(self) -> bool:
        """False when a worker is hung: the watchdog pings stop and systemd restarts us."""

    def status(self) -> str:
        """One line for systemctl status."""

    def close(self) -> None:
        """Release files and connections after the workers have stopped."""


class Heartbeat:
    """When a worker loop last showed signs of life."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.last


class Lifecycle:
    """The flags signals set and the exit code a failing worker leaves."""

    def __init__(self, prog: str, notifier: Notifier | None = None) -> None:
        self.prog = prog
        self.stop = threading.Event()
        self.reopen = threading.Event()
        self.notifier = notifier or Notifier()
        self.exit_code = 0

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stop.set()  # no I/O here: the main loop logs it

    def _on_hup(self, signum: int, frame: object) -> None:
        self.reopen.set()

    def fail(self, code: int) -> None:
        if not self.exit_code:
            self.exit_code = code
        self.stop.set()

    def guard(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        """Run a worker loop; turn its failure into a stop with the right exit code."""
        def run() -> None:
            try:
                target()
            except SinkError as exc:
                log.error("%s; stopping (exit %d): no unwritten reading was acknowledged",
                          exc, exc.exit_code)
                self.fail(exc.exit_code)
            except broker.DeclarationMismatch as exc:  # an operator's error: not restarted
                log.error("%s; stopping (exit %d)", exc, exc.exit_code)
                self.fail(exc.exit_code)
            except Exception:
                log.exception("unexpected error in the %s thread; stopping (exit %d)",
                              name, os.EX_SOFTWARE)
                self.fail(os.EX_SOFTWARE)
            else:
                if not self.stop.is_set():
                    log.error("the %s thread ended unexpectedly; stopping", name)
                    self.fail(os.EX_SOFTWARE)
        return run


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = configmod.UsageParser(prog=prog, description=description)
    p.add_argument("--config", type=Path, metavar="FILE", default=configmod.DEFAULT_PATH,
                   help=f"YAML configuration (default: {configmod.DEFAULT_PATH})")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(prog: str, description: str, listen_key: str,
         build: Callable[[configmod.Config, Lifecycle], Service],
         argv: Sequence[str] | None = None) -> int:
    """Parse flags, load the config, build the service and run it until stopped."""
    args = build_parser(prog, description).parse_args(argv)
    lifecycle = Lifecycle(prog)
    try:
        cfg = configmod.load(args.config)
        broker.check_url(cfg)
        access = Access.from_config(cfg)
        logsetup.setup(cfg.log_level)  # pika stays quiet below DEBUG: we log each event ourselves
        lifecycle.install_signals()
        service = build(cfg, lifecycle)
    except (configmod.ConfigError, SinkError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code  # 78 or 73
    listen = _listen_value(cfg, listen_key)
    return run(service, lifecycle, listen, listen_key, access)


def _listen_value(cfg: configmod.Config, key: str) -> str:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def run(service: Service, lifecycle: Lifecycle, listen: str, listen_key: str = "listen",
        access: Access | None = None) -> int:
    prog, notifier = lifecycle.prog, lifecycle.notifier
    host, port = configmod.parse_listen(listen, listen_key, listen_key)
    try:
        http = HttpServer(host, port, service.registry, service.health, service.app,
                          access=access, name=prog).start()
    except OSError as exc:
        print(f"{prog}: cannot listen on {listen} ({listen_key}): {exc.strerror or exc}",
              file=sys.stderr)
        service.close()
        return os.EX_UNAVAILABLE
    workers = [threading.Thread(target=lifecycle.guard(name, target), name=f"{prog}-{name}",
                                daemon=True)
               for name, target in service.threads()]
    for worker in workers:
        worker.start()
    log.info("%s %s started (pid %d)", prog, __version__, os.getpid())
    last_status = service.status()
    notifier.ready(last_status)
    interval = notifier.ping_interval
    next_ping, next_status = 0.0, time.monotonic() + 5.0
    while not lifecycle.stop.is_set():
        now = time.monotonic()
        if interval and now >= next_ping and service.alive():
            notifier.watchdog()
            next_ping = now + interval
        if now >= next_status:
            text = service.status()
            if text != last_status:
                notifier.status(text)
                last_status = text
            next_status = now + 5.0
        time.sleep(0.25)
    log.info("stopping%s", f" (exit {lifecycle.exit_code})" if lifecycle.exit_code else "")
    notifier.stopping("stopping")
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.warning("the %s thread did not finish within %.0f s; exiting anyway",
                        worker.name, STOP_GRACE_SECONDS)
    http.stop()
    try:
        service.close()
    except SinkError as exc:
        log.error("%s", exc)
        lifecycle.fail(exc.exit_code)
    notifier.close()
    log.info("stopped")
    return lifecycle.exit_code
