"""The daemons' HTTP endpoint: /metrics, /healthz, the app hook, limits and failures."""

from __future__ import annotations

import http.client
import json
import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from pvsim.daemons.httpserver import HttpServer


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
    status, _, body = request(s, "POST", "/readings/store", body=b"x" * 1001)
    assert status == 413 and json.loads(body)["status"] == 413 and not calls
    assert request(s, "POST", "/readings/store", body=b"x" * 1000)[0] == 200


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
