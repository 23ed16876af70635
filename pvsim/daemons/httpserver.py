"""The daemons' HTTP endpoint: waitress serving one WSGI app, closed to strangers.

- GET /metrics: the daemon's own Prometheus registry (prometheus_client's WSGI app);
- GET /healthz: 200 {"status": "ok", "detail": ...} while healthy, 503 {"status": "unavailable",
  ...} otherwise (what "healthy" means is the daemon's `health()` callable);
- anything else goes to `app(method, path, query, body) -> (status, json_body)` (pvsim-pv's JOI
  Energy API), or gets 404 with a problem body without an app.

waitress gives bounded resources: a fixed pool of worker threads, a request is handed to one only
once it has fully arrived (a slow or idle client holds a socket, never a thread), idle connections
are closed after CHANNEL_TIMEOUT seconds, at most CONNECTION_LIMIT are open at once, and bodies
over `max_body` bytes are refused. On top of that, `Access` decides who is answered:

- the Host header must be an IP address, localhost, or a name in api.allowed_hosts (421
  otherwise): a web page in a browser on this host cannot reach the endpoint by DNS rebinding,
  which needs a name of the attacker's;
- a POST must say Content-Type: application/json (415 otherwise), so a page cannot send one
  without a CORS preflight, which this server never grants;
- with api.token_file, a POST must carry "Authorization: Bearer TOKEN" (401 otherwise).

Every error is a problem body (application/problem+json); a failing app is logged and answered
500, and the server itself never dies of a request. Requests are not logged (waitress does not).
"""

from __future__ import annotations

import hmac
import http
import ipaddress
import json
import logging
import stat
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import waitress
from prometheus_client import CollectorRegistry, make_wsgi_app
from waitress import wasyncore

from pvsim import config as configmod
from pvsim.api.problem import CONTENT_TYPE as PROBLEM_TYPE, problem

log = logging.getLogger(__name__)

App = Callable[[str, str, dict[str, list[str]], bytes], tuple[int, object]]
Health = Callable[[], tuple[bool, str]]
MAX_BODY = 10 * 1024 * 1024   # a POST of 100,000 readings is about 4 MB
THREADS = 4                   # requests served at once; the rest wait their turn
CONNECTION_LIMIT = 1000       # open connections at once (idle ones cost a socket, not a thread)
CHANNEL_TIMEOUT = 30          # seconds an idle connection is kept
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Access:
    """Who the endpoint answers: the host names it accepts and the token writes must carry."""

    names: frozenset[str] = frozenset({"localhost"})
    token: str | None = None

    @classmethod
    def from_config(cls, cfg: configmod.Config) -> "Access":
        """From api.allowed_hosts and api.token_file; ConfigError when the token file is
        unreadable, empty, or readable by others."""
        names = {"localhost", *(n.lower().rstrip(".") for n in cfg.api.allowed_hosts)}
        token = _read_token(cfg) if cfg.api.token_file else None
        return cls(frozenset(names), token)

    def host_allowed(self, host: str) -> bool:
        name = _host_name(host)
        if not name:
            return False
        try:
            ipaddress.ip_address(name)
            return True  # an address, not a name: DNS rebinding needs a name
        except ValueError:
            return name.lower().rstrip(".") in self.names

    def write_allowed(self, authorization: str) -> bool:
        if self.token is None:
            return True
        scheme, _, given = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                 self.token.encode())


def _host_name(host: str) -> str:
    """The name part of a Host header: 'example.org:9762' -> 'example.org', '[::1]:9762' -> '::1'."""
    host = host.strip()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _read_token(cfg: configmod.Config) -> str:
    path, key = Path(cfg.api.token_file), "api.token_file"
    try:
        mode = path.stat().st_mode
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise configmod.ConfigError(cfg.source, key, f"cannot read {path}: "
                                    f"{getattr(exc, 'strerror', None) or exc}") from None
    if mode & stat.S_IRWXO:
        raise configmod.ConfigError(cfg.source, key, f"{path} is readable by others: "
                                    f"chmod 0640 {path} (owner root, group pvsim)")
    if not token or any(c.isspace() for c in token):
        raise configmod.ConfigError(cfg.source, key, f"{path} must hold one token, "
                                    "without white space")
    return token


class Endpoint:
    """The WSGI app: access checks, /metrics, /healthz, then the daemon's app."""

    def __init__(self, registry: CollectorRegistry, health: Health, app: App | None,
                 access: Access, max_body: int) -> None:
        self.metrics = make_wsgi_app(registry)
        self.health, self.app, self.access, self.max_body = health, app, access, max_body

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        try:
            return self._route(environ, start_response)
        except Exception:
            log.exception("internal error answering %s %s", environ.get("REQUEST_METHOD"),
                          environ.get("PATH_INFO"))
            return _respond(start_response, 500, problem(500, "internal error; see the daemon's log"))

    def _route(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        path = environ.get("PATH_INFO") or "/"
        host = environ.get("HTTP_HOST", "")
        if not self.access.host_allowed(host):
            return _respond(start_response, 421, problem(
                421, f"this server does not answer for host {host[:100]!r}; add the name to "
                     "api.allowed_hosts, or use an IP address"))
        if path == "/metrics" and method in ("GET", "HEAD"):
            return self.metrics(environ, start_response)
        if path == "/healthz" and method in ("GET", "HEAD"):
            healthy, detail = self.health()
            return _respond(start_response, 200 if healthy else 503,
                            {"status": "ok" if healthy else "unavailable", "detail": detail})
        if self.app is None:
            return _respond(start_response, 404, problem(
                404, f"no resource at {path}; try /metrics or /healthz"))
        if method in WRITE_METHODS:
            refusal = self._refuse_write(environ)
            if refusal is not None:
                return _respond(start_response, *refusal)
        body = self._body(environ)
        if body is None:
            return _respond(start_response, 413, problem(
                413, f"request body over {self.max_body} bytes"))
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        try:
            status, result = self.app(method, path, query, body)
        except Exception:
            log.exception("the API failed on %s %s", method, path)
            return _respond(start_response, 500, problem(500, "internal error; see the daemon's log"))
        return _respond(start_response, status, result)

    def _refuse_write(self, environ: dict) -> tuple[int, dict, list[tuple[str, str]]] | None:
        media = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if media != "application/json":
            return 415, problem(415, f"send the body as Content-Type: application/json, not "
                                     f"{media[:60] or 'none'!r}"), []
        if not self.access.write_allowed(environ.get("HTTP_AUTHORIZATION", "")):
            return 401, problem(401, "this server takes readings only with its token: send "
                                     "Authorization: Bearer TOKEN (api.token_file)"), \
                [("WWW-Authenticate", 'Bearer realm="pvsim"')]
        return None

    def _body(self, environ: dict) -> bytes | None:
        """The request body; None when it is over the limit."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > self.max_body:
            return None
        return environ["wsgi.input"].read(length) if length > 0 else b""


def _respond(start_response: Callable, status: int, body: object,
             headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    payload = b"" if body is None else (json.dumps(body, ensure_ascii=False, allow_nan=False)
                                        + "\n").encode()
    is_problem = status >= 400 and isinstance(body, dict) and "title" in body
    content_type = PROBLEM_TYPE if is_problem else "application/json"
    reason = _reason(status)
    start_response(f"{status} {reason}", [("Content-Type", content_type),
                                          ("Content-Length", str(len(payload))),
                                          ("Cache-Control", "no-store"), *(headers or [])])
    return [payload]


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class HttpServer:
    """Serves one daemon's endpoint from a background thread; `port` is the bound port.

    Binding happens in the constructor: OSError (address in use, cannot assign address) is the
    caller's to report."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health,
                 app: App | None = None, *, access: Access | None = None,
                 max_body: int = MAX_BODY, name: str = "pvsim") -> None:
        self.endpoint = Endpoint(registry, health, app, access or Access(), max_body)
        self.name = name
        # waitress refuses bodies far over the limit itself (a plain-text 413) before reading
        # them; the endpoint answers those just over it with a problem body.
        self.server = waitress.create_server(
            self.endpoint, host=host, port=port, threads=THREADS, ident="pvsim",
            connection_limit=CONNECTION_LIMIT, channel_timeout=CHANNEL_TIMEOUT,
            cleanup_interval=10, backlog=1024, max_request_body_size=2 * max_body,
            expose_tracebacks=False, clear_untrusted_proxy_headers=True,
            # poll(), not select(): select() fails on a descriptor numbered 1024 or more, which
            # a process near connection_limit (or holding many files) reaches.
            asyncore_use_poll=True)
        self.host, self.port = host, int(self.server.effective_port)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "HttpServer":
        self._thread = threading.Thread(target=self._serve, name=f"{self.name}-http", daemon=True)
        self._thread.start()
        log.info("serving /metrics and /healthz on %s", self.url)
        return self

    def _serve(self) -> None:
        """waitress's loop, one poll at a time until asked to stop; this thread then closes the
        sockets it polls (closing them from another thread breaks its select())."""
        adj = self.server.adj
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=0.5, map=self.server._map, use_poll=adj.asyncore_use_poll,
                               count=1)
        finally:
            self.server.task_dispatcher.shutdown()
            wasyncore.close_all(self.server._map)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        else:  # never started: nothing polls the sockets
            wasyncore.close_all(self.server._map)
