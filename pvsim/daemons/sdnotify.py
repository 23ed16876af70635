"""systemd's notification protocol (sd_notify(3)), in a few lines and without libsystemd.

Under a `Type=notify` unit systemd sets NOTIFY_SOCKET; the daemon sends datagrams such as
"READY=1", "STATUS=connected, 1234 rows written", "WATCHDOG=1" and "STOPPING=1" to it. A leading
'@' names a socket in the abstract namespace. Without NOTIFY_SOCKET every call is a no-op, so the
daemons behave the same from a terminal. With WatchdogSec= systemd also sets WATCHDOG_USEC (and
WATCHDOG_PID): the daemon pings at half that interval while healthy, and a hung one is restarted.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]  # abstract namespace
        elif address.startswith("/"):
            self.address = address
        self.watchdog_seconds = _watchdog_seconds(env)
        self._socket: socket.socket | None = None
        self._failed = False

    @property
    def ping_interval(self) -> float | None:
        """How often to send WATCHDOG=1: half of WatchdogSec=, or None without a watchdog."""
        return self.watchdog_seconds / 2 if self.watchdog_seconds else None

    def notify(self, *assignments: str) -> bool:
        """Send "KEY=value" lines in one datagram; False when not under systemd or on error."""
        if self.address is None:
            return False
        message = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:  # say it once, not once a second
                log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (e.g. our parent)
    return int(usec) / 1e6
