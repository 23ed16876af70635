"""The daemons' HTTP endpoint: /metrics, /healthz, the app hook, limits and failures."""

from __future__ import annotations

import http.client
import json
import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from pvsim.daemons.httpserver import PROBE_THREADS, THREADS, Access, HttpServer


def request(server: HttpServer, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.fixture
def make_server():
    servers = []

    def make(health=lambda: (True, "fine"), app=None, **kw) -> HttpServer:
        reg = CollectorRegistry()
        Counter("pvsim_test_things_total", "Things", registry=reg).inc(3)
        s = HttpServer("127.0.0.1", 0, reg, health, app, **kw).start()
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.stop()


def test_metrics_exposes_the_registry(make_server):
    s = make_server()
    status, headers, body = request(s, "GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"pvsim_test_things_total 3.0" in body


def test_healthz_follows_health(make_server):
    state = {"ok": True}
    s = make_server(health=lambda: (state["ok"], "detail here"))
    status, headers, body = request(s, "GET", "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok", "detail": "detail here"})
    state["ok"] = False
    status, _, body = request(s, "GET", "/healthz")
    assert status == 503 and json.loads(body)["status"] == "unavailable"
    status, _, body = request(s, "HEAD", "/healthz")
    assert status == 503 and body == b""


def test_unknown_path_without_app_is_a_404_problem(make_server):
    s = make_server()
    status, headers, body = request(s, "GET", "/nope")
    assert status == 404
    assert headers["Content-Type"] == "application/problem+json"
    doc = json.loads(body)
    assert doc["status"] == 404 and doc["title"] == "Not Found" and "/nope" in doc["detail"]


def test_other_requests_go_to_the_app(make_server):
    seen = []

    def app(method, path, query, body):
        seen.append((method, path, query, body))
        return 201, {"ok": True}
    s = make_server(app=app)
    status, headers, body = request(s, "POST", "/readings/store?a=1&a=2&b=", body=b'{"x":1}',
                                    headers={"Content-Type": "application/json"})
    assert status == 201 and json.loads(body) == {"ok": True}
    assert headers["Content-Type"] == "application/json"
    assert seen == [("POST", "/readings/store", {"a": ["1", "2"], "b": [""]}, b'{"x":1}')]
    # /metrics and /healthz stay the server's own
    assert request(s, "GET", "/healthz")[0] == 200 and len(seen) == 1


def test_a_failing_app_gets_a_500_problem_and_a_log_line(make_server, caplog):
    def app(method, path, query, body):
        raise RuntimeError("bug")
    s = make_server(app=app)
    with caplog.at_level(logging.ERROR, logger="pvsim.daemons.httpserver"):
        status, _, body = request(s, "GET", "/x")
    assert status == 500 and json.loads(body)["status"] == 500
    assert any("the API failed" in r.getMessage() for r in caplog.records)
    assert request(s, "GET", "/healthz")[0] == 200  # still serving


def test_unserialisable_app_result_is_an_internal_error(make_server):
    s = make_server(app=lambda *a: (200, {"x": object()}))
    status, _, body = request(s, "GET", "/x")
    assert status == 500 and json.loads(body)["title"] == "Internal Server Error"


def test_oversized_body_is_refused_with_413(make_server):
    calls = []
    s = make_server(app=lambda *a: calls.append(a) or (200, {}), max_body=1000)
    json_type = {"Content-Type": "application/json"}
    status, _, body = request(s, "POST", "/readings/store", body=b"x" * 1001, headers=json_type)
    assert status == 413 and json.loads(body)["status"] == 413 and not calls
    assert request(s, "POST", "/readings/store", body=b"x" * 1000, headers=json_type)[0] == 200


def test_bad_content_length_is_400(make_server):
    s = make_server(app=lambda *a: (200, {}))
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    conn.putrequest("POST", "/x")
    conn.putheader("Content-Length", "abc")
    conn.endheaders()
    assert conn.getresponse().status == 400
    conn.close()


def test_no_request_lines_on_stderr(make_server, capfd):
    s = make_server()
    request(s, "GET", "/metrics")
    assert capfd.readouterr().err == ""


def test_keep_alive_serves_several_requests_on_one_connection(make_server):
    s = make_server()
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    conn.close()


# --- slow and idle clients ---------------------------------------------------------------------

def test_500_idle_or_trickling_connections_hold_no_thread_and_block_nothing(make_server):
    """waitress hands a request to one of its few threads only once it has fully arrived: 250
    idle connections and 250 that trickle a request header byte by byte hold sockets, not
    threads, and /metrics and /healthz still answer at once."""
    import socket
    import threading
    import time

    s = make_server()
    before = threading.active_count()
    clients = []
    try:
        for i in range(500):  # from 10 addresses: one may hold PER_ADDRESS_LIMIT connections
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5,
                                         source_address=(f"127.0.0.{2 + i % 10}", 0))
            if i % 2:
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
            clients.append(c)
        for c in clients[1::2]:
            c.sendall(b"a")  # still trickling
        for path in ("/metrics", "/healthz"):
            began = time.monotonic()
            status, _, _ = request(s, "GET", path)
            took = time.monotonic() - began
            print(f"{path} with 500 slow clients open: {took * 1000:.0f} ms")
            assert status == 200
        assert threading.active_count() - before <= THREADS + PROBE_THREADS + 1  # the pools at most
    finally:
        for c in clients:
            c.close()


# --- who is answered ---------------------------------------------------------------------------

@pytest.mark.parametrize("host,allowed", [
    ("127.0.0.1:9762", True), ("localhost:9762", True), ("[::1]:9762", True), ("10.1.2.3", True),
    ("LOCALHOST", True), ("pvsim.example.org:9762", True), ("pvsim.example.org.", True),
    ("evil.example:9762", False), ("127.0.0.1.evil.example", False), ("", False),
    ("localhost.evil.example:9762", False),
])
def test_only_addresses_localhost_and_listed_names_are_answered(make_server, host, allowed):
    """DNS rebinding: a page of evil.example whose name resolves to 127.0.0.1 sends Host:
    evil.example; an address or a listed name cannot be the attacker's."""
    s = make_server(app=lambda *a: (200, {"ok": True}),
                    access=Access(frozenset({"localhost", "pvsim.example.org"})))
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    conn.putrequest("GET", "/healthz", skip_host=True)
    conn.putheader("Host", host)
    conn.endheaders()
    r = conn.getresponse()
    body = json.loads(r.read())
    conn.close()
    if allowed:
        assert r.status == 200, body
    else:
        assert r.status == 421 and body["status"] == 421 and "api.allowed_hosts" in body["detail"]


def test_a_post_must_say_it_is_json(make_server):
    """A browser page can POST text/plain across origins without a preflight: refuse it."""
    calls = []
    s = make_server(app=lambda *a: calls.append(a) or (200, {}))
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        status, h, body = request(s, "POST", "/readings/store", body=b"{}", headers=headers)
        assert status == 415 and h["Content-Type"] == "application/problem+json", (headers, body)
    assert not calls
    ok = request(s, "POST", "/readings/store", body=b"{}",
                 headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok[0] == 200 and len(calls) == 1


def test_with_a_token_writes_need_it_and_reads_do_not(make_server):
    calls = []
    s = make_server(app=lambda *a: calls.append(a) or (200, {}),
                    access=Access(token="s3cret-token-value"))
    json_type = {"Content-Type": "application/json"}
    for auth in (None, "Bearer wrong", "Basic czNjcmV0", "Bearer s3cret-token-valu"):
        headers = dict(json_type, **({"Authorization": auth} if auth else {}))
        status, h, body = request(s, "POST", "/readings/store", body=b"{}", headers=headers)
        assert status == 401 and {k.lower(): v for k, v in h.items()}["www-authenticate"].startswith("Bearer"), (auth, body)
        assert b"s3cret" not in body
    assert not calls
    good = dict(json_type, Authorization="Bearer s3cret-token-value")
    assert request(s, "POST", "/readings/store", body=b"{}", headers=good)[0] == 200
    assert request(s, "GET", "/readings/read/m")[0] == 200  # reading needs no token


def test_the_token_file_must_be_readable_one_token_and_not_for_others(tmp_path):
    from pvsim import config as configmod
    token = tmp_path / "token"

    def access(**api):
        return Access.from_config(configmod.parse(json.dumps({"api": api}), "pvsim.yaml"))

    with pytest.raises(configmod.ConfigError, match="api.token_file: cannot read"):
        access(token_file=str(token))
    token.write_text("two words\n")
    token.chmod(0o640)
    with pytest.raises(configmod.ConfigError, match="one token"):
        access(token_file=str(token))
    token.write_text("abc123\n")
    token.chmod(0o644)
    with pytest.raises(configmod.ConfigError, match="readable by others: chmod 0640"):
        access(token_file=str(token))
    token.chmod(0o640)
    assert access(token_file=str(token)).token == "abc123"
    assert access(allowed_hosts=["Pvsim.Example.org."]).host_allowed("pvsim.example.org:80")


def test_a_process_with_over_1024_descriptors_is_still_served(make_server):
    """select() cannot watch a descriptor numbered 1024 or more (it raised in the HTTP thread,
    which then died); the server polls instead. Found when the suite's shared RabbitMQ cluster
    left the test process holding many sockets."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        s = make_server()  # its listening socket and every client's are numbered above 1024
        assert s.server.socket.fileno() >= 1024
        for path in ("/metrics", "/healthz"):
            assert request(s, "GET", path)[0] == 200
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
