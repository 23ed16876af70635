"""Fuzz a running pvsim-pv over HTTP: generated requests, raw bytes, then what must hold.

    PYTHONPATH=. /usr/bin/python3 bench/fuzz_http.py [--requests 20000] [--seconds 1200]
                                                     [--workers 8] [--seed 18]

Starts a real pvsim-pv (`python3 -m pvsim.daemons.pv`) on 127.0.0.1 with a private exchange and
queues on the RabbitMQ at 127.0.0.1:5672 and a temporary output directory (retention off, so
that nothing accepted is removed behind the check), then sends --requests requests, each on a
connection of its own as raw bytes, from --workers threads, for at most --seconds:

- valid JOI POSTs and GETs, and JSON-level mutations of them (fields replaced by wrong types,
  4,300+-digit and 400-digit numbers, lone surrogates in keys and values, deep nesting, ...);
- queries with odd `from`, `to`, `limit`, `withPv`, `details`;
- byte-level mutations of a valid request (cut, insert, flip, repeat), malformed request lines,
  bare CR/LF, folded and invalid headers, chunked bodies (valid and broken), Transfer-Encoding
  gzip, huge, negative, duplicated and wrong Content-Length, odd versions, unicode, pipelining;
- random bytes.

Then checks, and exits 1 on any failure: no 5xx but a storage 503; every error a problem body
(application/problem+json with title, status and detail); no traceback in any answer or in the
daemon's log; the daemon alive and /healthz 200; and the readings in the CSVs (and answered by
GET /readings/read) are exactly those of the 200 answers to POST /readings/store (taken from
their echo), each once. Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import collections
import copy
import concurrent.futures
import csv
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pika

from tests.support.net import free_port
from tests.support.paths import PYTHON, ROOT
from tests.support.rabbit import SYSTEM_AMQP_URL as URL

HOST = "127.0.0.1"
METERS = [f"fuzz-{i:02d}" for i in range(12)] + ["smart-meter-0"]
NOW = int(time.time())
NASTY_TEXT = ["\ud800", "x\udfff", "\ud83d\ude00", "\x00", "-m", "9" * 5000, "0" * 4400 + "7",
              "1e999", "NaN", "Infinity", "2020-11-29", "2020-11-29T08:00:00+01:00", "9999-12-31",
              "0001-01-01", "1969-12-31", " 12 ", "\u0663\u0663", "true", "%ff", "%", "+1", "-0",
              "-1", "99999999999999999999", "", " ", "a" * 300, "\u202e", "\r\n", "é"]
NASTY_JSON = [None, True, False, 0, -1, 1.5, 10 ** 400, -(10 ** 400), 1e308, 32_503_680_001,
              [], {}, [[[]]], {"time": NOW, "reading": 1}, "\ud800", "9" * 5000]


class Rig:
    """pvsim-pv on a temporary config with private broker names."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pvsim-fuzz-"))
        tag = uuid.uuid4().hex[:10]
        self.names = {"exchange": f"fuzz.{tag}", "queue": f"fuzz.{tag}.readings",
                      "dead_letter_exchange": f"fuzz.{tag}.dead",
                      "dead_letter_queue": f"fuzz.{tag}.readings.dead"}
        self.port = free_port()
        self.out = self.dir / "out"
        cfg = {
            "timezone": "Europe/Madrid", "log_level": "INFO",
            "broker": {"url": URL, **self.names, "retry_initial_seconds": 0.2,
                       "retry_max_seconds": 2},
            "meter": {"id": ["smart-meter-0"], "listen": f"{HOST}:{free_port()}",
                      "state_file": str(self.dir / "meter.state")},
            "pv": {"listen": f"{HOST}:{self.port}"},
            "output": {"directory": str(self.out), "retention_days": 0},
        }
        self.config = self.dir / "pvsim.yaml"
        self.config.write_text(json.dumps(cfg))  # JSON is YAML
        self.log = self.dir / "pv.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "pvsim.daemons.pv", "--config", str(self.config)], cwd=ROOT,
                env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if exchange(self.port, get("/healthz"))[0][0] == 200:
                    return
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"pvsim-pv did not become healthy; see {self.log}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def cleanup(self, keep: bool) -> None:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(URL))
            channel = conn.channel()
            for queue in (self.names["queue"], self.names["dead_letter_queue"]):
                channel.queue_delete(queue)
            for name in (self.names["exchange"], self.names["dead_letter_exchange"]):
                channel.exchange_delete(name)
            conn.close()
        except Exception as exc:  # a campaign leaves at worst a few idle names behind
            print(f"cleanup: {exc}", file=sys.stderr)
        if keep:
            print(f"kept {self.dir} (the daemon's log is pv.log)")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- the wire ---------------------------------------------------------------------------------

def exchange(port: int, data: bytes, timeout: float = 15) -> list[tuple[int, dict, bytes]]:
    """Send the bytes on a new connection, half-close, read to the end: the answers."""
    received = b""
    with socket.create_connection((HOST, port), timeout=timeout) as c:
        try:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError:  # refused before everything was read: what it answered counts
            pass
        try:
            while chunk := c.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return split_answers(received)


def split_answers(data: bytes) -> list[tuple[int, dict, bytes]]:
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep or not head.startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP answer: {data[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if length and rest[:length].startswith(b"HTTP/1."):  # a HEAD answer has no body
            length = 0
        answers.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return answers


def request_bytes(method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"",
                  version: str = " HTTP/1.1", length: bool = True) -> bytes:
    lines = [f"{method} {target}{version}", f"Host: {HOST}", *(f"{k}: {v}" for k, v in headers)]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


def get(path: str) -> bytes:
    return request_bytes("GET", path, [("Connection", "close")])


def post(doc: object, ascii_only: bool = True) -> bytes:
    body = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    return request_bytes("POST", "/readings/store", [("Content-Type", "application/json"),
                                                     ("Connection", "close")], body)


# ---- the generator ----------------------------------------------------------------------------

class Generator:
    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)

    def nasty_json(self, depth: int = 0) -> object:
        r = self.rnd
        roll = r.random()
        if roll < 0.5 or depth > 3:
            return copy.deepcopy(r.choice(NASTY_JSON + NASTY_TEXT))  # a mutation must not loop
        if roll < 0.6:
            return "[" * r.randint(1, 3000)  # as text: the JSON nesting is done below
        if roll < 0.8:
            return [self.nasty_json(depth + 1) for _ in range(r.randint(0, 3))]
        return {r.choice(NASTY_TEXT + ["time", "reading"]): self.nasty_json(depth + 1)
                for _ in range(r.randint(0, 3))}

    def valid_doc(self) -> dict:
        r = self.rnd
        meter = r.choice(METERS)
        past = NOW - 3 * 86400
        return {"smartMeterId": meter, "electricityReadings": [
            {"time": r.randint(past, NOW - 10), "reading": round(r.uniform(0, 20), r.randint(0, 6))}
            for _ in range(r.randint(1, 12))]}

    def mutated_doc(self) -> object:
        r = self.rnd
        doc = self.valid_doc()
        for _ in range(r.randint(1, 3)):
            if not isinstance(doc, dict):
                break
            what = r.random()
            readings = doc.get("electricityReadings")
            if what < 0.3:
                doc[r.choice(["smartMeterId", "electricityReadings"] + NASTY_TEXT)] = self.nasty_json()
            elif what < 0.7 and isinstance(readings, list) and readings:
                item = r.choice(readings)
                if isinstance(item, dict):
                    item[r.choice(["time", "reading"] + NASTY_TEXT)] = self.nasty_json()
            elif what < 0.85 and isinstance(readings, list):
                readings.append(self.nasty_json())
            else:
                doc = self.nasty_json()
        return doc

    def query(self) -> str:
        r = self.rnd
        names = r.sample(["from", "to", "limit", "withPv", "details", "x", "\u00e9"], r.randint(0, 3))
        values = [r.choice(NASTY_TEXT + [str(NOW), str(NOW - 86400), "10", "true"]) for _ in names]
        text = "&".join(f"{urllib.parse.quote(n, errors='surrogatepass')}="
                        f"{urllib.parse.quote(v, errors='surrogatepass')}" for n, v in zip(names, values))
        return r.choice([text, text, text.replace("%", ""), text + "&&=&;"])

    def read_request(self) -> bytes:
        r = self.rnd
        meter = r.choice(METERS + NASTY_TEXT)
        path = r.choice(["/readings/read/", "/price-plans/compare-all/", "/price-plans/recommend/"])
        target = path + urllib.parse.quote(meter, errors="surrogatepass") + "?" + self.query()
        return request_bytes(r.choice(["GET", "GET", "HEAD"]), target, [("Connection", "close")])

    def mutate_bytes(self, data: bytes) -> bytes:
        r = self.rnd
        for _ in range(r.randint(1, 4)):
            at = r.randint(0, len(data))
            how = r.random()
            if how < 0.25:
                data = data[:at] + data[at + r.randint(1, 40):]
            elif how < 0.55:
                noise = bytes(r.randrange(256) for _ in range(8))
                data = data[:at] + r.choice([b"\r\n", b"\n", b"\r", b"\x00", b" ", b":", b"\r\n\r\n",
                                             b"\xff\xfe", b"\xed\xa0\x80", noise]) + data[at:]
            elif how < 0.85 and at < len(data):
                data = data[:at] + bytes([data[at] ^ (1 << r.randint(0, 7))]) + data[at + 1:]
            else:
                data = data + data[:at]  # a second, partial request pipelined behind
        return data

    def malformed(self) -> bytes:
        r = self.rnd
        body = json.dumps(self.valid_doc()).encode()
        json_type = ("Content-Type", "application/json")
        cases = [
            lambda: r.choice([b"GET", b"get", b"G\x00T", b"\xff\xfe", b"POST /readings/store"]) + b" "
            + r.choice([b"/", b"/healthz", b"*", b"http://x/healthz", b"//healthz", b"/\xe9\xff",
                        b"/" + b"a" * 70000, b"/readings/read/%ff%00", b""])
            + r.choice([b" HTTP/1.1", b" HTTP/1.0", b" HTTP/9.9", b"", b" HTTP/1.1 extra", b"  HTTP/1.1"])
            + b"\r\nHost: 127.0.0.1\r\n\r\n",
            lambda: request_bytes("POST", "/readings/store", [json_type, ("Transfer-Encoding", r.choice(
                ["chunked", "gzip", "chunked, gzip", "gzip, chunked", "Chunked", "identity", "chunked\x0b",
                 "deflate"]))], self.chunked(body), length=False),
            lambda: request_bytes("POST", "/readings/store", [json_type, ("Content-Length", r.choice(
                ["-1", "abc", "1e3", "9" * 5000, "0" * 5000 + "5", str(len(body) + 5),
                 str(max(0, len(body) - 5)), "0x10", " 10", "10, 10", "\u0663", "99999999999"]))],
                body, length=False),
            lambda: request_bytes("POST", "/readings/store",
                                  [json_type, ("Content-Length", str(len(body))), ("Content-Length", "3")],
                                  body, length=False),
            lambda: request_bytes("GET", "/healthz", [
                (r.choice(["X\x00", "Bad Name", "X-A", " Lead", "A_B", "X\xe9"]),
                 r.choice(["\x01", "v\rv", "a" * 9000, "é", ""]))]),
            lambda: b"GET /healthz HTTP/1.1\r\n Folded: first\r\nHost: 127.0.0.1\r\n\r\n",
            lambda: (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                     + b"a" * r.choice([70000, 300000]) + b"\r\n\r\n"),
            lambda: b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n",
            lambda: b"\r\n" * r.randint(1, 5) + get("/healthz"),
            lambda: request_bytes("POST", "/readings/store", [("Content-Type", r.choice(
                ["text/plain", "application/json; charset=latin-1", "", "application/jsonx",
                 "APPLICATION/JSON"]))], body),
            lambda: request_bytes("POST", "/readings/store", [json_type, ("Expect", "100-continue")], body),
            lambda: request_bytes(r.choice(["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO",
                                            "M" * 300]),
                                  r.choice(["/readings/store", "/healthz", "/metrics", "/"]), [], body),
            lambda: request_bytes("POST", "/readings/store", [json_type], body.replace(b'"', b"'")),
            lambda: request_bytes("POST", "/readings/store", [json_type],
                                  b'{"smartMeterId": "fuzz-00", "electricityReadings": '
                                  + b"[" * 5000 + b"]" * 5000 + b"}"),
            lambda: request_bytes("POST", "/readings/store", [json_type],
                                  json.dumps(self.valid_doc()).encode("utf-16")),
        ]
        return r.choice(cases)()

    def chunked(self, body: bytes) -> bytes:
        r = self.rnd
        cut = r.randint(0, len(body))
        parts = [p for p in (body[:cut], body[cut:]) if p]
        out = b"".join(f"{len(p):x}".encode() + r.choice([b"", b";ext=1", b";bad ext"]) + b"\r\n"
                       + p + b"\r\n" for p in parts)
        return out + r.choice([b"0\r\n\r\n", b"0\r\nTrailer: x\r\n\r\n", b"zz\r\n", b"", b"0\r\n"])

    def next(self) -> tuple[str, bytes]:
        r = self.rnd
        roll = r.random()
        if roll < 0.20:
            return "valid-post", post(self.valid_doc(), ascii_only=r.random() < 0.5)
        if roll < 0.45:
            return "mutated-post", post(self.mutated_doc(), ascii_only=r.random() < 0.5)
        if roll < 0.60:
            return "read", self.read_request()
        if roll < 0.80:
            base = post(self.valid_doc()) if r.random() < 0.6 else self.read_request()
            return "byte-mutation", self.mutate_bytes(base)
        if roll < 0.97:
            return "malformed", self.malformed()
        return "random-bytes", bytes(r.randrange(256) for _ in range(r.randint(1, 300)))


# ---- the campaign -----------------------------------------------------------------------------

class Findings:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.problems: list[str] = []
        self.statuses: collections.Counter = collections.Counter()
        self.kinds: collections.Counter = collections.Counter()
        self.accepted: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        self.accepted_posts = 0
        self.unanswered = 0

    def fail(self, text: str) -> None:
        with self.lock:
            if len(self.problems) < 50:
                self.problems.append(text)


def check(kind: str, data: bytes, answers: list, findings: Findings) -> None:
    with findings.lock:
        findings.kinds[kind] += 1
        findings.unanswered += not answers
        for status, _, _ in answers:
            findings.statuses[status] += 1
    for status, headers, body in answers:
        where = f"{kind} {data[:160]!r} -> {status} {body[:200]!r}"
        if b"Traceback" in body or b'File "' in body:
            findings.fail(f"traceback in the answer: {where}")
        if status >= 500 and not (status == 503 and b"could not be stored" in body):
            findings.fail(f"5xx: {where}")
        if status >= 400:
            try:
                doc = json.loads(body)
                ok = (headers.get("content-type") == "application/problem+json"
                      and doc["status"] == status and doc["title"] and isinstance(doc["detail"], str))
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                findings.fail(f"not a problem body: {where}")
        elif status == 200 and body:
            try:
                doc = json.loads(body)
            except ValueError:
                if not headers.get("content-type", "").startswith("text/plain"):  # /metrics
                    findings.fail(f"200 without JSON: {where}")
                continue
            if isinstance(doc, dict) and "smartMeterId" in doc and "electricityReadings" in doc:
                with findings.lock:  # the echo of a POST that was stored: what was accepted
                    findings.accepted_posts += 1
                    for item in doc["electricityReadings"]:
                        findings.accepted[(doc["smartMeterId"], item["time"])].append(item["reading"])


def stored_rows(out: Path) -> collections.Counter:
    rows: collections.Counter = collections.Counter()
    for path in sorted(out.rglob("pvsim-*.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                instant = int(dt.datetime.fromisoformat(row["timestamp"]).timestamp())
                rows[(row["meter_id"], instant, float(row["meter_kw"]))] += 1
    return rows


def read_back(port: int, meter: str) -> set[int] | None:
    times: set[int] = set()
    start = 0
    for _ in range(100):  # pages of 100,000: bounded
        answers = exchange(port, get(f"/readings/read/{urllib.parse.quote(meter)}?from={start}&limit=100000"))
        status, _, body = answers[0]
        if status == 404:
            return None
        page = json.loads(body)
        times.update(item["time"] for item in page)
        if len(page) < 100000:
            return times
        start = page[-1]["time"] + 1
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=1200.0)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seed", type=int, default=18)
    args = p.parse_args()
    rig = Rig()
    findings = Findings()
    ok = False
    try:
        rig.start()
        gen = Generator(args.seed)
        work = [gen.next() for _ in range(args.requests)]
        began = time.monotonic()
        deadline = began + args.seconds

        def one(item: tuple[str, bytes]) -> None:
            if time.monotonic() > deadline:
                return
            kind, data = item
            try:
                answers = exchange(rig.port, data)
            except (OSError, ValueError) as exc:
                findings.fail(f"{kind} {data[:160]!r}: {exc}")
                return
            check(kind, data, answers, findings)

        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(one, work))
        elapsed = time.monotonic() - began
        sent = sum(findings.kinds.values())

        alive = rig.proc.poll() is None
        health = exchange(rig.port, get("/healthz"))[0][0] if alive else None
        metrics = exchange(rig.port, get("/metrics"))[0][0] if alive else None
        if not alive or health != 200 or metrics != 200:
            findings.fail(f"daemon alive={alive} /healthz={health} /metrics={metrics}")

        # Stored exactly what was accepted: the CSVs, each (meter, time) once, with an accepted value.
        time.sleep(1.0)
        rows = stored_rows(rig.out)
        stored = {(m, t) for (m, t, _) in rows}
        doubled = [k for k, n in rows.items() if n > 1] + [
            k for k, n in collections.Counter((m, t) for (m, t, _) in rows).items() if n > 1]
        if doubled:
            findings.fail(f"{len(doubled)} readings stored twice, e.g. {doubled[:3]}")
        accepted = set(findings.accepted)
        if stored != accepted:
            findings.fail(f"CSV holds {len(stored - accepted)} readings never accepted "
                          f"(e.g. {sorted(stored - accepted)[:3]}) and misses {len(accepted - stored)} "
                          f"accepted (e.g. {sorted(accepted - stored)[:3]})")
        wrong_value = [(m, t, kw) for (m, t, kw) in rows  # kW to 4 places
                       if (m, t) in findings.accepted
                       and not any(abs(kw - v) <= 5.1e-5 for v in findings.accepted[(m, t)])]
        if wrong_value:
            findings.fail(f"{len(wrong_value)} readings stored with a value never accepted: "
                          f"{wrong_value[:3]}")
        for meter in sorted({m for m, _ in accepted} | set(METERS)):
            expected = {t for m, t in accepted if m == meter}
            got = read_back(rig.port, meter)
            if (got or set()) != expected:
                findings.fail(f"GET /readings/read/{meter}: {len(got or ())} readings, "
                              f"{len(expected)} accepted")
        log_text = rig.log.read_text(errors="replace")
        for needle in ("Traceback", "the API failed", "internal error"):
            if needle in log_text:
                findings.fail(f"the daemon's log has {needle!r}")

        print(f"requests: {sent} sent of {args.requests} in {elapsed:.1f} s "
              f"({sent / elapsed:.0f}/s, {args.workers} workers, seed {args.seed})")
        print("by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(findings.kinds.items())))
        print("answers by status: " + ", ".join(f"{s} {n}" for s, n in sorted(findings.statuses.items()))
              + f"; connections closed without an answer (unfinished requests): {findings.unanswered}")
        print(f"accepted: {findings.accepted_posts} POSTs answered 200, {len(accepted)} distinct "
              f"readings of {len({m for m, _ in accepted})} meters; CSV rows: {sum(rows.values())}")
        print(f"daemon: alive={alive}, /healthz {health}, /metrics {metrics}")
        ok = not findings.problems and sent == args.requests
        if sent < args.requests:
            print(f"stopped at --seconds {args.seconds}: {args.requests - sent} requests not sent")
        for problem in findings.problems:
            print("FAIL:", problem)
        print("result:", "nothing found" if ok else "FAILED")
    finally:
        code = rig.stop()
        print(f"pvsim-pv exit code after SIGTERM: {code}")
        rig.cleanup(keep=not ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
