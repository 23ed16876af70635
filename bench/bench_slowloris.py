"""Issue 18's starvation, at full scale: trickling clients against the HTTP endpoint.

    PYTHONPATH=. /usr/bin/python3 bench/bench_slowloris.py [--connections 1100] [--addresses 20]
                                                           [--every 5] [--seconds 20]

Starts the daemons' HTTP endpoint (HttpServer with its default limits and a trivial app) on
127.0.0.1, opens --connections connections from --addresses source addresses (127.0.0.2 ...),
each sending an unfinished request header and then one more header line every --every seconds
(each restarts waitress's idle timer), and for --seconds measures how long GET /healthz, GET
/metrics and an API GET take from a new client (127.0.0.1), once a second. Prints the latencies
(median, worst) and how many of the attacking connections the server still holds open. Loopback
only; the connections, the rounds and the time are bounded.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry  # noqa: E402

from pvsim.daemons.httpserver import HttpServer  # noqa: E402


def timed_get(port: int, path: str, timeout: float = 10.0) -> float | None:
    """Seconds for a whole GET on a new connection; None when it failed or timed out."""
    began = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := c.recv(65536):
                answer += chunk
        if not answer.startswith(b"HTTP/1.1 200"):
            return None
    except OSError:
        return None
    return time.monotonic() - began


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=1100)
    p.add_argument("--addresses", type=int, default=20)
    p.add_argument("--every", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * args.connections + 200  # both ends of each connection live in this process
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    server = HttpServer("127.0.0.1", 0, CollectorRegistry(), lambda: (True, "fine"),
                        lambda *a: (200, {"ok": True})).start()
    socks: list[socket.socket] = []
    try:
        for i in range(args.connections):
            try:
                c = socket.create_connection(("127.0.0.1", server.port), timeout=5,
                                             source_address=(f"127.0.0.{2 + i % args.addresses}", 0))
                c.setblocking(False)
                c.send(b"GET /readings/read/m HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                socks.append(c)
            except OSError:
                pass  # refused at once (the per-address limit): as intended
        stop = threading.Event()

        def trickle() -> None:
            n = 0
            while not stop.wait(args.every) and n < 1000:
                n += 1
                for c in list(socks):
                    try:
                        c.send(f"X-Slow-{n}: a\r\n".encode())
                    except OSError:
                        socks.remove(c)
                        c.close()

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        times: dict[str, list[float | None]] = {"/healthz": [], "/metrics": [], "/readings/read/m": []}
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            for path, seen in times.items():
                seen.append(timed_get(server.port, path))
            time.sleep(1.0)
        stop.set()
        thread.join(args.every + 5)
        print(f"{args.connections} trickling connections from {args.addresses} addresses, a header "
              f"line every {args.every:g} s, for {args.seconds:g} s; still open from the client's "
              f"side at the end: {len(socks)}")
        for path, seen in times.items():
            ok = [t for t in seen if t is not None]
            print(f"  GET {path:18} {len(ok)}/{len(seen)} answered; "
                  + (f"median {statistics.median(ok) * 1000:.1f} ms, worst {max(ok) * 1000:.1f} ms"
                     if ok else "never")
                  + f" (each, ms: {' '.join('-' if t is None else f'{t * 1000:.0f}' for t in seen)})")
        return 0 if all(None not in seen for seen in times.values()) else 1
    finally:
        for c in socks:
            c.close()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
