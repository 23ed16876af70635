"""The daemons' HTTP endpoint: waitress serving one WSGI app, closed to strangers.

- GET /metrics: the daemon's own Prometheus registry (prometheus_client's WSGI app);
- GET /healthz: 200 {"status": "ok", "detail": ...} while healthy, 503 {"status": "unavailable",
  ...} otherwise (what "healthy" means is the daemon's `health()` callable);
- anything else goes to `app(method, path, query, body) -> (status, json_body)` (pvsim-pv's JOI
  Energy API), or gets 404 with a problem body without an app.

Before any of that, the endpoint decides who is answered (`httpaccess.Access`: the Host header,
421 otherwise; a POST must say Content-Type: application/json, 415 otherwise, so that a page
cannot send one without a CORS preflight, which this server never grants; the token for writes,
401 otherwise). waitress serves it with the protections of `waitresshardening` (a deadline for a
whole request, a per-address limit, an accept path never starved, a lane of its own for the
probes); the limits are this module's constants.

Every error is a problem body (application/problem+json, `httpanswer`), waitress's own refusals
of a malformed request included; a failing app is logged and answered 500, and the server itself
never dies of a request. Requests are not logged (waitress does not).
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, make_wsgi_app
from waitress import wasyncore
from waitress.adjustments import Adjustments

from pvsim.api.problem import problem
from pvsim.daemons.httpaccess import Access
from pvsim.daemons.httpanswer import respond
from pvsim.daemons.waitresshardening import HardenedServer

log = logging.getLogger(__name__)

App = Callable[[str, str, dict[str, list[str]], bytes], tuple[int, object]]
Health = Callable[[], tuple[bool, str]]
MAX_BODY = 10 * 1024 * 1024   # a POST of 100,000 readings is about 4 MB
THREADS = 4                   # requests served at once; the rest wait their turn
CONNECTION_LIMIT = 1000       # open connections at once (idle ones cost a socket, not a thread)
CHANNEL_TIMEOUT = 30          # seconds an idle connection is kept
REQUEST_DEADLINE = 30.0       # seconds from a request's first byte to its last (4 MB at 1 Mbit/s)
PER_ADDRESS_LIMIT = 64        # connections from one address (a proxy in front counts as one)
LOOP_TIMEOUT = 0.5            # seconds one poll of the loop waits at most (stop() wakes it sooner)
STOP_TIMEOUT = 5.0            # seconds stop() waits for the loop thread (and requests being served)
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


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
            return respond(start_response, 500, problem(500, "internal error; see the daemon's log"))

    def _route(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        path = environ.get("PATH_INFO") or "/"
        host = environ.get("HTTP_HOST", "")
        if not self.access.host_allowed(host):
            return respond(start_response, 421, problem(
                421, f"this server does not answer for host {host[:100]!r}; add the name to "
                     "api.allowed_hosts, or use an IP address"))
        if path == "/metrics" and method in ("GET", "HEAD"):
            return self.metrics(environ, start_response)
        if path == "/healthz" and method in ("GET", "HEAD"):
            healthy, detail = self.health()
            return respond(start_response, 200 if healthy else 503,
                           {"status": "ok" if healthy else "unavailable", "detail": detail})
        if self.app is None:
            return respond(start_response, 404, problem(
                404, f"no resource at {path}; try /metrics or /healthz"))
        if method in WRITE_METHODS:
            refusal = self._refuse_write(environ)
            if refusal is not None:
                return respond(start_response, *refusal)
        body = self._body(environ)
        if body is None:
            return respond(start_response, 413, problem(
                413, f"request body over {self.max_body} bytes"))
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        try:
            status, result = self.app(method, path, query, body)
        except Exception:
            log.exception("the API failed on %s %s", method, path)
            return respond(start_response, 500, problem(500, "internal error; see the daemon's log"))
        return respond(start_response, status, result)

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


class HttpServer:
    """Serves one daemon's endpoint from a background thread; `port` is the bound port.

    Binding happens in the constructor: OSError (address in use, cannot assign address) is the
    caller's to report."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health,
                 app: App | None = None, *, access: Access | None = None,
                 max_body: int = MAX_BODY, name: str = "pvsim",
                 connection_limit: int | None = None, request_deadline: float | None = None,
                 per_address_limit: int | None = None) -> None:
        """The three limits default to the module's CONNECTION_LIMIT, REQUEST_DEADLINE and
        PER_ADDRESS_LIMIT."""
        self.endpoint = Endpoint(registry, health, app, access or Access(), max_body)
        self.name = name
        # waitress refuses bodies far over the limit itself (a 413 problem) before reading
        # them; the endpoint answers those just over it.
        adj = Adjustments(
            host=host, port=port, threads=THREADS, ident="pvsim",
            connection_limit=connection_limit or CONNECTION_LIMIT, channel_timeout=CHANNEL_TIMEOUT,
            cleanup_interval=1, backlog=1024, max_request_body_size=2 * max_body,
            expose_tracebacks=False, clear_untrusted_proxy_headers=True,
            # poll(), not select(): select() fails on a descriptor numbered 1024 or more, which
            # a process near connection_limit (or holding many files) reaches.
            asyncore_use_poll=True)
        self.server = HardenedServer(self.endpoint, adj,
                                     request_deadline=request_deadline or REQUEST_DEADLINE,
                                     per_address_limit=per_address_limit or PER_ADDRESS_LIMIT)
        self.host, self.port = host, int(self.server.effective_port)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # held while the loop's sockets are closed and while stop() pulls waitress's trigger: a
        # pull after the close would write to a descriptor number the process may have reused
        self._sockets_lock = threading.Lock()
        self._closed = False

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
                wasyncore.loop(timeout=LOOP_TIMEOUT, map=self.server._map,
                               use_poll=adj.asyncore_use_poll, count=1)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, at once rather than at the loop's next LOOP_TIMEOUT: the loop thread is
        woken through waitress's trigger (a pipe it polls). It then finishes as it always did:
        requests being served get up to STOP_TIMEOUT seconds (waitress's dispatcher shutdown),
        queued ones are cancelled, and the sockets are closed."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is None:  # never started (or stopped already): nothing polls the sockets
            self._close()
            return
        self._wake()
        thread.join(timeout=STOP_TIMEOUT)

    def _wake(self) -> None:
        with self._sockets_lock:
            if self._closed:
                return
            try:
                self.server.pull_trigger()
            except OSError as exc:  # the loop wakes at its next LOOP_TIMEOUT anyway
                log.debug("could not wake the HTTP loop: %s", exc)

    def _close(self) -> None:
        self.server.task_dispatcher.shutdown(timeout=STOP_TIMEOUT)
        self.server.probe_dispatcher.shutdown(timeout=STOP_TIMEOUT)
        with self._sockets_lock:
            if not self._closed:
                self._closed = True
                wasyncore.close_all(self.server._map)
