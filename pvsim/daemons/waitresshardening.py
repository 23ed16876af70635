"""waitress 2.1 hardened against clients that would starve the daemons' HTTP endpoint.

waitress gives bounded resources: a fixed pool of worker threads, a request is handed to one only
once it has fully arrived (a slow or idle client holds a socket, never a thread), idle connections
are closed after adj.channel_timeout seconds, and bodies over adj.max_request_body_size are
refused. waitress alone can still be starved (each trickled byte restarts its idle timer, and at
its connection limit it stops accepting, probes included), so `HardenedServer` and its channel
add:

- a deadline for a whole request: header and body must arrive within `request_deadline` seconds
  of the request's first byte, else the client gets 408 and the connection is closed;
- at most `per_address_limit` connections from one address (more are refused at once with 429);
- at adj.connection_limit, a new connection closes an idle or unfinished one (of the address that
  holds the most) instead of waiting in the backlog: the accept path is never starved;
- a priority lane for the probes: GET/HEAD /healthz and /metrics run on threads of their own
  (PROBE_THREADS), never queued behind API work. One port, not a second listener: the units, the
  monitoring and Prometheus scrape the daemon's `listen` address, and a probe port would need
  the same protections as the main one anyway.

waitress's own refusals of a malformed request are problem bodies too (`_ProblemTask`: 400, 413,
431; an unsupported Transfer-Encoding is 400, not waitress's 501), and a Content-Length too long
for int() is a 400 rather than a dropped connection (`_Parser`).

The classes here override waitress 2.1 internals (HTTPChannel.received, ErrorTask.execute,
HTTPRequestParser.parse_header, BaseWSGIServer.readable/handle_accept/maintenance/add_task):
tests/daemons/test_httpserver.py pins their source, so that an upgrade that changes them fails
a test instead of the endpoint.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from collections.abc import Callable

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import Error as WaitressError, ServerNotImplemented

from pvsim.api.problem import CONTENT_TYPE as PROBLEM_TYPE, problem
from pvsim.api.problem import reason
from pvsim.daemons.httpanswer import json_bytes, raw_problem

log = logging.getLogger(__name__)

PROBE_THREADS = 2             # threads for /healthz and /metrics only
PROBE_PATHS = frozenset({"/healthz", "/metrics"})
ACCEPT_BATCH = 256            # connections accepted per turn of the loop


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
        body = json_bytes(problem(status, detail))
        self.status = f"{status} {reason(status)}"
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

    def __init__(self, server: "HardenedServer", sock: socket.socket, addr: tuple,
                 adj: Adjustments, map: dict | None = None) -> None:
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
        after adj.channel_timeout when the client does not read)."""
        answer = raw_problem(408, f"the request did not arrive within {deadline:g} s of its "
                                  "first byte")
        with self.outbuf_lock:
            self.outbufs[-1].append(answer)
            self.current_outbuf_count += len(answer)
            self.total_outbufs_len += len(answer)
        self.request = None
        self.close_when_flushed = True


class HardenedServer(TcpWSGIServer):
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
        super().maintenance(now)  # idle past adj.channel_timeout
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
        conn.send(raw_problem(status, detail))
    except OSError:
        pass
    finally:
        conn.close()
