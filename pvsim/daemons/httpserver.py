"""The daemons' HTTP endpoint: /metrics, /healthz, and an optional JSON app for everything else.

A standard-library ThreadingHTTPServer in a thread of its own:
- GET /metrics: the daemon's own Prometheus registry in the text exposition format;
- GET /healthz: 200 {"status": "ok", "detail": ...} while healthy, 503 {"status": "unavailable",
  ...} otherwise (what "healthy" means is the daemon's `health()` callable);
- anything else goes to `app(method, path, query, body) -> (status, json_body)` (pvsim-pv's JOI
  Energy API), or gets 404 with a problem body {"title", "status", "detail"} without an app.
A failing app is logged and answered 500 with a problem body; the server itself never dies of a
request. Request bodies over `max_body` bytes get 413. Per-request lines go to the logger at
DEBUG, not to stderr.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from pvsim.api.problem import CONTENT_TYPE as PROBLEM_TYPE, problem

log = logging.getLogger(__name__)

App = Callable[[str, str, dict[str, list[str]], bytes], tuple[int, object]]
Health = Callable[[], tuple[bool, str]]
MAX_BODY = 10 * 1024 * 1024


class HttpServer:
    """Serves one daemon's endpoints from a background thread; `port` is the bound port."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health,
                 app: App | None = None, *, max_body: int = MAX_BODY, name: str = "pvsim") -> None:
        self.registry, self.health, self.app, self.max_body = registry, health, app, max_body
        self.name = name
        server_class = _Server6 if ":" in host else _Server
        # Raises OSError (address in use, cannot assign address): the caller reports it.
        self.server = server_class((host, port), _handler_for(self))
        self.host, self.port = host, self.server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "HttpServer":
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name=f"{self.name}-http", daemon=True)
        self._thread.start()
        log.info("serving /metrics and /healthz on %s", self.url)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class _Server6(_Server):
    address_family = socket.AF_INET6


def _handler_for(owner: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        server_owner = owner
    return Handler


class _Handler(BaseHTTPRequestHandler):
    server_owner: HttpServer
    protocol_version = "HTTP/1.1"
    server_version = "pvsim"
    sys_version = ""
    timeout = 30  # a client that stops sending does not hold a thread forever

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        try:
            self._route(method)
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.debug("client went away: %s", exc)
            self.close_connection = True
        except Exception:
            log.exception("internal error answering %s %s", method, self.path)
            try:
                self._json(500, problem(500, "internal error; see the daemon's log"))
            except OSError:
                self.close_connection = True

    def _route(self, method: str) -> None:
        owner = self.server_owner
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path or "/"
        body = self._read_body()
        if body is None:
            return  # already answered (413, 411, 400)
        if path == "/metrics" and method in ("GET", "HEAD"):
            payload = generate_latest(owner.registry)
            self._send(200, payload, CONTENT_TYPE_LATEST)
            return
        if path == "/healthz" and method in ("GET", "HEAD"):
            healthy, detail = owner.health()
            self._json(200 if healthy else 503,
                       {"status": "ok" if healthy else "unavailable", "detail": detail})
            return
        if owner.app is None:
            self._json(404, problem(404, f"no resource at {path}; try /metrics or /healthz"))
            return
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        try:
            status, result = owner.app(method, path, query, body)
        except Exception:
            log.exception("the API failed on %s %s", method, path)
            self._json(500, problem(500, "internal error; see the daemon's log"))
            return
        self._json(status, result)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._json(411, problem(411, "send a Content-Length, not a chunked body"))
            return None
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._json(400, problem(400, f"invalid Content-Length {length_text[:40]!r}"))
            return None
        if length > self.server_owner.max_body:
            self.close_connection = True  # do not read the rest
            self._json(413, problem(413, f"request body of {length} bytes; the limit is "
                                         f"{self.server_owner.max_body} bytes"))
            return None
        return self.rfile.read(length)

    def _json(self, status: int, body: object) -> None:
        if status == 204 or body is None:
            self._send(status, b"", None)
            return
        payload = (json.dumps(body, ensure_ascii=False, allow_nan=False) + "\n").encode()
        is_problem = status >= 400 and isinstance(body, dict) and "title" in body
        self._send(status, payload, PROBLEM_TYPE if is_problem else "application/json")

    def _send(self, status: int, payload: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if status != 204:
            self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        log.debug("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)
