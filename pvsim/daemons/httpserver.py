"""The daemons' HTTP endpoint: waitress serving one WSGI app, closed to strangers.

- GET /metrics: the daemon's own Prometheus registry (prometheus_client's WSGI app);
- GET /healthz: 200 {"status": "ok", "detail": ...} while healthy, 503 {"status": "unavailable",
  ...} otherwise (what "healthy" means is the daemon's `health()` callable);
- anything else goes to `app(method, path, query, body) -> (status, json_body)` (pvsim-pv's JOI
  Energy API), or gets 404 with a problem body without an app.

waitress gives bounded resources: a fixed pool of worker threads, a request is handed to one only
once it has fully arrived (a slow or idle client holds a socket, never a thread), idle connections
are closed after CHANNEL_TIMEOUT seconds, and bodies over `max_body` bytes are refused. waitress
alone can still be starved (each trickled byte restarts its idle timer, and at its connection
limit it stops accepting, probes included), so `_Server` and `_Channel` add:

- a deadline for a whole request: header and body must arrive within REQUEST_DEADLINE seconds of
  the request's first byte, else the client gets 408 and the connection is closed;
- at most PER_ADDRESS_LIMIT connections from one address (more are refused at once with 429);
- at CONNECTION_LIMIT, a new connection closes an idle or unfinished one (of the address that
  holds the most) instead of waiting in the backlog: the accept path is never starved;
- a priority lane for the probes: GET/HEAD /healthz and /metrics run on threads of their own
  (PROBE_THREADS), never queued behind API work. One port, not a second listener: the units, the
  monitoring and Prometheus scrape the daemon's `listen` address, and a probe port would need
  the same protections as the main one anyway.

On top of that, `Access` decides who is answered:

- the Host header must be an IP address, localhost, or a name in api.allowed_hosts (421
  otherwise): a web page in a browser on this host cannot reach the endpoint by DNS rebinding,
  which needs a name of the attacker's;
- a POST must say Content-Type: application/json (415 otherwise), so a page cannot send one
  without a CORS preflight, which this server never grants;
- with api.token_file, a POST must carry "Authorization: Bearer TOKEN" (401 otherwise).

Every error is a problem body (application/problem+json), waitress's own refusals of a
malformed request included (`_ProblemTask`: 400, 413, 431; an unsupported Transfer-Encoding is
400, not waitress's 501); a failing app is logged and answered 500, and the server itself never
dies of a request. Requests are not logged (waitress does not).

The classes here override waitress 2.1 internals (HTTPChannel.received, ErrorTask.execute,
HTTPRequestParser.parse_header, BaseWSGIServer.readable/handle_accept/maintenance/add_task):
tests/daemons/test_httpserver.py pins their source, so that an upgrade that changes them fails
a test instead of the endpoint.
"""

from __future__ import annotations

import hmac
import http
import ipaddress
import json
import logging
import socket
import stat
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, make_wsgi_app
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import Error as WaitressError, ServerNotImplemented

from pvsim import config as configmod
from pvsim.api.problem import CONTENT_TYPE as PROBLEM_TYPE, problem

log = logging.getLogger(__name__)

App = Callable[[str, str, dict[str, list[str]], bytes], tuple[int, object]]
Health = Callable[[], tuple[bool, str]]
MAX_BODY = 10 * 1024 * 1024   # a POST of 100,000 readings is about 4 MB
THREADS = 4                   # requests served at once; the rest wait their turn
CONNECTION_LIMIT = 1000       # open connections at once (idle ones cost a socket, not a thread)
CHANNEL_TIMEOUT = 30          # seconds an idle connection is kept
REQUEST_DEADLINE = 30.0       # seconds from a request's first byte to its last (4 MB at 1 Mbit/s)
PER_ADDRESS_LIMIT = 64        # connections from one address (a proxy in front counts as one)
PROBE_THREADS = 2             # threads for /healthz and /metrics only
PROBE_PATHS = frozenset({"/healthz", "/metrics"})
ACCEPT_BATCH = 256            # connections accepted per turn of the loop
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
    payload = b"" if body is None else _json_bytes(body)
    is_problem = status >= 400 and isinstance(body, dict) and "title" in body
    content_type = PROBLEM_TYPE if is_problem else "application/json"
    reason = _reason(status)
    start_response(f"{status} {reason}", [("Content-Type", content_type),
                                          ("Content-Length", str(len(payload))),
                                          ("Cache-Control", "no-store"), *(headers or [])])
    return [payload]


def _json_bytes(body: object) -> bytes:
    """UTF-8 JSON; text UTF-8 cannot hold (a lone surrogate the API let through into an error
    detail) is sent as JSON escapes rather than failing the answer."""
    text = json.dumps(body, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        return text.encode()
    except UnicodeEncodeError:
        return (json.dumps(body, allow_nan=False) + "\n").encode()


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _raw_problem(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 answer with a problem body that closes the connection, for the loop
    thread to send where no task runs (a deadline passed, a connection refused)."""
    body = _json_bytes(problem(status, detail))
    head = (f"HTTP/1.1 {status} {_reason(status)}\r\nContent-Type: {PROBLEM_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n"
            "Server: pvsim\r\n\r\n")
    return head.encode("latin-1") + body


class _ProblemTask(ErrorTask):
    """waitress's own refusals (a malformed request line or header, a header or body too large,
    bad chunked framing, an unsupported Transfer-Encoding) as problem bodies. An unsupported
    Transfer-Encoding is the client's mistake: 400, not waitress's 501."""

    def execute(self) -> None:
        error: WaitressError = self.request.error
        status = 400 if isinstance(error, ServerNotImplemented) else error.code
        if status >= 500:  # an app that failed past the Endpoint's own handler (never expected)
            detail = "internal error; see the daemon's log"
        elif isinstance(error, ServerNotImplemented):
            detail = ("Transfer-Encoding other than chunked is not supported: send the body "
                      "as is, with Content-Length or Transfer-Encoding: chunked")
        else:
            detail = f"{error.reason}: {str(error.body)[:200]}"
        body = _json_bytes(problem(status, detail))
        self.status = f"{status} {_reason(status)}"
        self.response_headers.extend([("Content-Type", PROBLEM_TYPE), ("Cache-Control", "no-store"),
                                      ("Connection", "close")])
        self.close_on_finish = True
        self.content_length = len(body)
        self.write(body)


class _Parser(HTTPRequestParser):
    """waitress's parser, but a Content-Length of more than 4,300 digits is a bad request
    (int() raises ValueError there, which waitress does not catch: the connection was dropped
    without an answer)."""

    def parse_header(self, header_plus: bytes) -> None:
        try:
            super().parse_header(header_plus)
        except ValueError as exc:
            raise ParsingError(f"invalid header: {str(exc)[:100]}") from None


class _Channel(HTTPChannel):
    """One client connection; `began` is when the first byte of the request still arriving
    came (None between requests), for the whole-request deadline; `opened` when it was
    accepted (both time.monotonic())."""

    error_task_class = _ProblemTask
    parser_class = _Parser
    began: float | None = None
    _counted = False

    def __init__(self, server: "_Server", sock: socket.socket, addr: tuple, adj: Adjustments,
                 map: dict | None = None) -> None:
        super().__init__(server, sock, addr, adj, map=map)
        self.opened = time.monotonic()
        server.per_address[addr[0]] += 1
        self._counted = True

    def received(self, data: bytes) -> bool:
        if data and self.began is None:
            self.began = time.monotonic()  # cleared when the request is handed to a thread
        return super().received(data)

    def del_channel(self, map: dict | None = None) -> None:
        if self._counted:
            self._counted = False
            counts = self.server.per_address
            counts[self.addr[0]] -= 1
            if counts[self.addr[0]] <= 0:
                del counts[self.addr[0]]
        super().del_channel(map)

    def idle(self) -> bool:
        """Neither served nor closing: the connection may be closed without losing an answer."""
        return not (self.requests or self.will_close or self.close_when_flushed)

    def time_out(self, deadline: float) -> None:
        """From the loop thread, on an idle channel: answer 408 and close once it is sent (or
        after CHANNEL_TIMEOUT when the client does not read)."""
        answer = _raw_problem(408, f"the request did not arrive within {deadline:g} s of its "
                                   "first byte")
        with self.outbuf_lock:
            self.outbufs[-1].append(answer)
            self.current_outbuf_count += len(answer)
            self.total_outbufs_len += len(answer)
        self.request = None
        self.close_when_flushed = True


class _Server(TcpWSGIServer):
    """waitress's TCP server with the deadline, the per-address limit, a never-starved accept
    path and the probe lane (see the module's docstring)."""

    channel_class = _Channel
    next_channel_cleanup: float  # waitress's: when `maintenance` is next due (time.time())

    def __init__(self, app: Callable, adj: Adjustments, *, request_deadline: float,
                 per_address_limit: int) -> None:
        self.request_deadline, self.per_address_limit = request_deadline, per_address_limit
        self.connection_limit = adj.connection_limit
        self.per_address: Counter[str] = Counter()
        self.probe_dispatcher = ThreadedTaskDispatcher()
        self.probe_dispatcher.set_thread_count(PROBE_THREADS)
        self.evicting = False
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        super().__init__(app, map={}, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0])

    def readable(self) -> bool:
        """Always accepting (waitress stops at its connection limit, and then no probe gets in:
        `handle_accept` makes room instead); maintenance as often as adj.cleanup_interval."""
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return self.accepting

    def handle_accept(self) -> None:
        """Every connection waiting (up to ACCEPT_BATCH), not one per turn of the loop: behind a
        burst of a thousand, a probe's would wait a thousand turns (a poll of every socket each)."""
        for _ in range(ACCEPT_BATCH):
            try:
                accepted = self.accept()
            except OSError:
                return
            if accepted is None:
                return
            self._take(*accepted)

    def _take(self, conn: socket.socket, addr: tuple) -> None:
        if self.per_address[addr[0]] >= self.per_address_limit:
            _refuse(conn, 429, f"more than {self.per_address_limit} connections from {addr[0]}")
            return
        if len(self.active_channels) >= self.connection_limit and not self._evict():
            _refuse(conn, 503, "the server is answering as many requests as it can; try again")
            return
        self.set_socket_options(conn)
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)

    def _evict(self) -> bool:
        """Close one idle or unfinished connection, of the address that holds the most
        connections, its oldest; False when every connection is being answered."""
        victim, worst = None, (-1, 0.0)
        for channel in self.active_channels.values():
            if channel.idle():
                rank = (self.per_address[channel.addr[0]],
                        -(channel.began if channel.began is not None else channel.opened))
                if rank > worst:
                    victim, worst = channel, rank
        if not self.evicting:
            log.warning("%d connections open (the limit): closing idle and unfinished ones "
                        "to accept new ones", len(self.active_channels))
            self.evicting = True
        if victim is None:
            return False
        victim.handle_close()
        return True

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle past CHANNEL_TIMEOUT
        late = time.monotonic() - self.request_deadline
        for channel in list(self.active_channels.values()):
            if channel.began is not None and channel.began < late and channel.idle():
                channel.time_out(self.request_deadline)
        if self.evicting and len(self.active_channels) < self.connection_limit * 0.9:
            self.evicting = False
            log.info("%d connections open: below the limit again", len(self.active_channels))

    def add_task(self, channel: _Channel) -> None:
        """A request has fully arrived (waitress calls this under the channel's requests_lock):
        the probes go to their own threads, everything else queues for the API's."""
        channel.began = None
        request = channel.requests[0]  # one that failed to parse may have no path
        if (request.error is None and request.command in ("GET", "HEAD")
                and "/" + request.path.lstrip("/") in PROBE_PATHS):
            self.probe_dispatcher.add_task(channel)
        else:
            self.task_dispatcher.add_task(channel)


def _refuse(conn: socket.socket, status: int, detail: str) -> None:
    """Answer a connection not taken with a problem body, without waiting, and close it."""
    try:
        conn.setblocking(False)
        conn.send(_raw_problem(status, detail))
    except OSError:
        pass
    finally:
        conn.close()


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
        self.server = _Server(self.endpoint, adj,
                              request_deadline=request_deadline or REQUEST_DEADLINE,
                              per_address_limit=per_address_limit or PER_ADDRESS_LIMIT)
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
            self.server.probe_dispatcher.shutdown()
            wasyncore.close_all(self.server._map)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        else:  # never started: nothing polls the sockets
            self.server.task_dispatcher.shutdown()
            self.server.probe_dispatcher.shutdown()
            wasyncore.close_all(self.server._map)
