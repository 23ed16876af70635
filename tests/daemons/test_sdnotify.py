"""sd_notify with real datagram sockets, and what the daemons send under systemd."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid

import pytest

from tests.support.daemons import http_get
from tests.support.waiting import wait_for
from pvsim.daemons.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(5)
    yield str(path), s
    s.close()


def receive_all(sock: socket.socket, until: str, timeout: float = 20.0) -> list[str]:
    """Datagrams until one contains `until`."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            continue
        if until in got[-1]:
            return got
    raise AssertionError(f"no {until!r} in {got}")


def test_no_socket_means_no_op():
    n = Notifier({})
    assert n.address is None and n.ping_interval is None
    assert n.ready("x") is False and n.watchdog() is False


def test_sends_to_a_path_socket(notify_socket):
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.ready("connected") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=connected"
    n.status("two\nlines")
    assert sock.recv(4096) == b"STATUS=two lines"
    n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_sends_to_an_abstract_socket():
    name = f"pvsim-test-{uuid.uuid4().hex}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.watchdog()
        assert s.recv(100) == b"WATCHDOG=1"
    finally:
        s.close()


def test_a_missing_socket_is_logged_once_not_raised(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.watchdog() is False and n.watchdog() is False
    assert sum("cannot notify systemd" in r.getMessage() for r in caplog.records) == 1


def test_watchdog_interval_is_half_of_watchdog_usec():
    assert Notifier({"WATCHDOG_USEC": "30000000"}).ping_interval == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).ping_interval == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).ping_interval is None
    assert Notifier({"WATCHDOG_USEC": "0"}).ping_interval is None
    assert Notifier({"WATCHDOG_USEC": "junk"}).ping_interval is None


@pytest.mark.parametrize("name", ["pv", "meter"])
def test_daemon_notifies_ready_watchdog_status_and_stopping(name, notify_socket, pvsim_config,
                                                            daemons):
    path, sock = notify_socket
    d = daemons.start(name, pvsim_config, wait=False,
                      env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    got = receive_all(sock, "READY=1")
    ready = got[-1].split("\n")
    assert ready[0] == "READY=1" and ready[1].startswith("STATUS=")
    got = receive_all(sock, "WATCHDOG=1")
    got += receive_all(sock, "WATCHDOG=1")  # keeps pinging at half the interval
    assert d.stop(signal.SIGTERM) == 0
    rest = receive_all(sock, "STOPPING=1")
    assert rest[-1].startswith("STOPPING=1")


@pytest.mark.parametrize("name", ["pv", "meter"])
def test_daemon_is_ready_without_the_broker_and_says_so(name, notify_socket, pvsim_config,
                                                        daemons, amqp_proxy):
    """RabbitMQ down at boot: READY=1 all the same (systemd must not kill and restart the unit,
    apt install must not wait), the link reported in STATUS=, /healthz and the metrics, and the
    daemon connects by itself once the broker is there."""
    pvsim_config.write(broker={"url": amqp_proxy.url})  # the proxy is down: nothing answers
    path, sock = notify_socket
    d = daemons.start(name, pvsim_config, wait=False, env={"NOTIFY_SOCKET": path})
    ready = receive_all(sock, "READY=1")[-1].split("\n")
    assert ready[0] == "READY=1" and "unreachable" in ready[1], ready
    status, body = http_get(d.port, "/healthz")
    assert status == 503 and "not connected to RabbitMQ" in json.loads(body)["detail"]
    assert d.metric("pvsim_broker_connected") == 0
    amqp_proxy.up()
    wait_for(lambda: http_get(d.port, "/healthz")[0] == 200, timeout=30,
             message="healthy once the broker is there")
    assert d.metric("pvsim_broker_connected") == 1
    assert d.stop(signal.SIGTERM) == 0


def test_daemon_without_notify_socket_sends_nothing(pvsim_config, daemons, notify_socket):
    path, sock = notify_socket
    d = daemons.start("pv", pvsim_config, env={"WATCHDOG_USEC": "400000"})
    sock.settimeout(1.0)
    with pytest.raises(socket.timeout):
        sock.recv(100)
    assert d.stop() == 0
