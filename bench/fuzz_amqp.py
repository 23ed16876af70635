"""Fuzz campaign: generated AMQP bodies against a running pvsim-pv (issue 18, section 1).

    PYTHONPATH=. /usr/bin/python3 bench/fuzz_amqp.py [--bodies 100000] [--seed 18]
                                                    [--max-seconds 900] [--keep]

Starts the real pvsim-pv (`python3 -m pvsim.daemons.pv`) against the RabbitMQ on 127.0.0.1:5672
(loopback only), on a private exchange and queues (deleted afterwards), writing CSVs to a
temporary directory, its dead-letter queue unbounded for the count. Publishes --bodies bodies
from a seeded generator (the same seed, the same bodies), unconfirmed for speed (the daemon's
count of messages consumed must then equal the count published):

  valid       version 1 and 2 messages of a few readings (some repeating earlier ones)
  bytes       random bytes
  hostile     JSON built to hurt: nesting up to 200,000 deep, numbers of up to 6,000 digits,
              lone surrogates, every JSON type in every field, `v` as 1.0, "1" or true,
              timestamps of year 1, 1969, 9999 and odd offsets, `seq` off its `ts`, missing and
              extra fields, 10,001 readings, bodies over 1 MiB
  mutated     valid messages with bytes flipped, inserted, deleted or cut off
and one body in 50 carries a header pika cannot decode or encode again as it came (a timestamp
of 2**63, an array nested 3,000 deep, a negative 64-bit integer).

The oracle is the decoder itself, run here on each body (its totality is the hypothesis tests'
business): a body it accepts must become rows, one per distinct (meter, instant), and one it
refuses must reach the dead-letter queue with the same reason. At the end the script checks that
the daemon is the same process and alive, every valid reading is in the CSV exactly once and
nothing else is, every invalid body is dead-lettered with its reason (bodies compared by digest;
an oversized one cut to 64 KiB), and the metrics say the same; it prints its figures and exits
1 on any mismatch. Bounded: --bodies, and --max-seconds for the whole run.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import json
import random
import signal
import struct
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pika
import pika.data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_daemons import ROOT, URL, Rig, http_get  # noqa: E402

sys.path.insert(0, str(ROOT))
from pvsim.pipeline.broker.deadletter import TRUNCATED_BYTES  # noqa: E402
from pvsim.pipeline.csvformat import all_day_files  # noqa: E402
from pvsim.pipeline.messages import (MAX_BODY_BYTES, InvalidMessage, Reason,  # noqa: E402
                                     decode_values)

TZS = [ZoneInfo("Europe/Madrid"), ZoneInfo("UTC"), ZoneInfo("Pacific/Kiritimati"),
       ZoneInfo("America/St_Johns")]
METERS = [f"fz-{i:02d}" for i in range(20)]
START = int(time.time()) - 3 * 86400  # valid readings in the last three days


class Generator:
    """Seeded bodies, each labelled with the kind that made it."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.sent: list[bytes] = []  # valid bodies, to repeat and to mutate

    # --- valid ------------------------------------------------------------------------------

    def instant(self) -> int:
        return START + self.r.randrange(3 * 86400)

    def v1_doc(self, n: int | None = None) -> dict:
        r = self.r
        readings = []
        for _ in range(n or r.randint(1, 5)):
            t, tz = self.instant(), r.choice(TZS)
            readings.append({"meter_id": r.choice(METERS), "seq": t,
                             "ts": dt.datetime.fromtimestamp(t, tz).isoformat(),
                             "power_w": r.choice([0, 1234.5, r.uniform(0, 9000), 10_000_000])})
        return {"v": 1, "readings": readings}

    def v2_doc(self) -> dict:
        r = self.r
        ids = r.sample(METERS, r.randint(1, 3))
        first = self.instant()
        seq = sorted({first + r.randrange(60) for _ in range(r.randint(1, 4))})
        return {"v": 2, "meter_ids": ids, "seq": seq,
                "power_w": [[round(r.uniform(0, 9000), 1) for _ in seq] for _ in ids]}

    def valid(self) -> bytes:
        if self.sent and self.r.random() < 0.1:
            return self.r.choice(self.sent)  # a repeat: its readings are duplicates
        doc = self.v1_doc() if self.r.random() < 0.6 else self.v2_doc()
        body = json.dumps(doc).encode()
        self.sent.append(body)
        del self.sent[:-1000]
        return body

    # --- hostile ----------------------------------------------------------------------------

    def value(self, depth: int = 0) -> str:
        """A JSON value as text, possibly one json.dumps cannot write."""
        r = self.r
        kind = r.randrange(14 if depth < 3 else 9)
        if kind == 0:
            return r.choice(["null", "true", "false"])
        if kind == 1:
            return str(r.randint(-10 ** 20, 10 ** 20))
        if kind == 2:
            return r.choice(["-", ""]) + "9" * r.choice([20, 300, 4300, 4301, 6000])
        if kind == 3:
            return r.choice(["1e400", "-1e400", "1E-400", "-0", "0.0", "1.0", "2.0", "NaN",
                             "Infinity", "-Infinity", "4.9e-324", "1e999999999"])
        if kind == 4:
            return repr(r.uniform(-1e12, 1e12))
        if kind == 5:
            return json.dumps(self.text())
        if kind == 6:
            return r.choice(['"\\ud800"', '"\\udfff\\ud800"', '"a\\u0000b"', '""'])
        if kind == 7:
            n = r.choice([100, 990, 1000, 1100, 5000]) if r.random() > 0.01 else 200_000
            return "[" * n + "]" * n if r.random() < 0.5 else '{"a":' * n + "0" + "}" * n
        if kind == 8:
            return json.dumps(self.timestamp())
        if kind < 11:
            return "[" + ",".join(self.value(depth + 1) for _ in range(r.randint(0, 4))) + "]"
        return "{" + ",".join(f"{json.dumps(self.text())}:{self.value(depth + 1)}"
                              for _ in range(r.randint(0, 4))) + "}"

    def text(self) -> str:
        r = self.r
        alphabet = "abcz09-_.:,é€\U0001F600\ud800\udc00\x00\n\"\\"
        return "".join(r.choice(alphabet) for _ in range(r.randint(0, 12)))

    def timestamp(self) -> str:
        r = self.r
        return r.choice([
            "0001-01-01T00:00:00+00:00", "0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59+00:00",
            "1970-01-01T00:00:00+00:00", "9999-12-31T23:59:59-23:59", "9999-12-30T00:00:01+00:00",
            "2026-06-21T14:10:00+02:00:00.5", "2026-06-21T14:10:00+23:59:59.999999",
            "2026-W25-1T10:00Z", "20260621T1410+0200", "2026-06-21T14:10:00",
            "2026-06-21T14:10:00.000001+02:00", "yesterday", "2026-13-01T00:00:00+00:00",
            dt.datetime.fromtimestamp(self.instant(), r.choice(TZS)).isoformat()])

    def hostile(self) -> bytes:
        r = self.r
        shape = r.randrange(10)
        if shape == 0:  # a field anywhere replaced by anything
            doc = self.v1_doc(3) if r.random() < 0.6 else self.v2_doc()
            return replaced(doc, self.place(doc), self.value())
        if shape == 1:  # the version
            doc = self.v1_doc() if r.random() < 0.5 else self.v2_doc()
            versions = ["1.0", '"1"', "true", "3", "-1", "2.0", "0", "null", "1e0", "[1]"]
            return replaced(doc, ("v",), r.choice(versions))
        if shape == 2:  # a reading at or past the edges, its seq right or wrong
            doc = self.v1_doc(3)
            ts = self.timestamp()
            reading = doc["readings"][r.randrange(3)]
            reading["ts"] = ts
            try:
                reading["seq"] = int(dt.datetime.fromisoformat(ts).timestamp())
            except (ValueError, OverflowError, TypeError):
                reading["seq"] = 0
            reading["seq"] += r.choice([0, 0, 1, -1])
            return json.dumps(doc).encode()
        if shape == 3:  # the bomb, and its relatives
            n = r.choice([1000, 2000, 5000, 20_000]) if r.random() > 0.01 else 200_000
            inner = "[" * n + "]" * n
            return ('{"v": 1, "readings": ' + inner + "}").encode()
        if shape == 4:  # missing or extra fields
            doc = self.v1_doc(2)
            reading = doc["readings"][0]
            if r.random() < 0.5:
                del reading[r.choice(list(reading))]
            else:
                reading[self.text() or "x"] = 1
            return json.dumps(doc, ensure_ascii=r.random() < 0.5).encode("utf-8", "surrogatepass")
        if shape == 5 and r.random() < 0.02:  # too many readings (a few: near 1 MiB each)
            if r.random() < 0.5:
                doc = {"v": 1, "readings": [{"meter_id": "a", "seq": 0, "power_w": 0,
                                             "ts": "1970-01-01T00:00:00+00:00"}] * 10_001}
            else:
                doc = {"v": 2, "meter_ids": ["a", "b"], "seq": list(range(START, START + 5001)),
                       "power_w": [[1.0] * 5001] * 2}
            return json.dumps(doc).encode()
        if shape == 6 and r.random() < 0.005:  # over the 1 MiB a body may have (a few)
            return b" " * (MAX_BODY_BYTES + r.randint(1, 2 << 20)) + b"{}"
        if shape == 7:  # any JSON at all
            return self.value().encode("utf-8", "surrogatepass")
        if shape == 8:  # strings with surrogates or NULs where text goes
            doc = self.v1_doc(2)
            key = r.choice(["meter_id", "ts"])
            texts = ['"\\ud800"', '"m\\u0000"', '"\\udc00x"']
            return replaced(doc, ("readings", 1, key), r.choice(texts))
        return json.dumps(self.v1_doc()).encode()[: r.randint(0, 60)]  # cut short

    def place(self, doc: dict) -> tuple:
        r = self.r
        if doc["v"] == 1:
            i = r.randrange(len(doc["readings"]))
            return r.choice([("readings",), ("readings", i),
                             ("readings", i, r.choice(["meter_id", "seq", "ts", "power_w",
                                                       "extra"])), (self.text() or "x",)])
        return r.choice([("meter_ids",), ("meter_ids", 0), ("seq",), ("seq", 0), ("power_w",),
                         ("power_w", 0), ("power_w", 0, 0), ("extra",)])

    def mutated(self) -> bytes:
        r = self.r
        body = bytearray(self.valid() if not self.sent or r.random() < 0.5
                         else r.choice(self.sent))
        for _ in range(r.randint(1, 6)):
            if not body:
                break
            i = r.randrange(len(body))
            op = r.randrange(6)
            if op == 0:
                body[i] ^= 1 << r.randrange(8)
            elif op == 1:
                body[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 6)))
            elif op == 2:
                del body[i:i + r.randint(1, 6)]
            elif op == 3:
                del body[i:]
            elif op == 4:
                body[i:i] = b"9" * r.choice([1, 10, 5000])
            else:
                body[i:i] = r.choice([b"[" * 2000, b'"\\ud800"', b"1.0", b"{", b",", b"-"])
        return bytes(body)

    def next(self) -> tuple[str, bytes]:
        roll = self.r.random()
        if roll < 0.25:
            return "valid", self.valid()
        if roll < 0.35:
            return "bytes", self.r.randbytes(self.r.randint(0, 3000))
        if roll < 0.75:
            return "hostile", self.hostile()
        return "mutated", self.mutated()


MARK = "\u0000FUZZ\u0000"


class RawField(bytes):
    """A header value sent as exactly these bytes (type octet and value), as another client's
    library may send it; pika's encoder learns it below, for this script's publisher only."""


def _nested_array(depth: int) -> RawField:
    field = b"A" + struct.pack(">I", 0)
    for _ in range(depth):
        field = b"A" + struct.pack(">I", len(field)) + field
    return RawField(field)


ODD_HEADERS = [{"x-t": RawField(b"T" + struct.pack(">Q", 2 ** 63))}, {"x-a": _nested_array(3000)},
               {"x-l": -3_000_000_000}, {"x-b": RawField(b"x" + struct.pack(">I", 3) + b"\xff\x00a")}]
_encode_value = pika.data.encode_value


def _encode_raw(pieces, value):
    if isinstance(value, RawField):
        pieces.append(bytes(value))
        return len(value)
    return _encode_value(pieces, value)


pika.data.encode_value = _encode_raw


def replaced(doc: dict, path: tuple, text: str) -> bytes:
    """The document's JSON with the value at `path` replaced by (or added as) `text`."""
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = MARK
    return json.dumps(doc).replace(json.dumps(MARK), text, 1).encode("utf-8", "surrogatepass")


def metric_by_label(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('"')[1]] = float(value)
    return out


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def csv_rows(directory: Path) -> collections.Counter:
    rows: collections.Counter = collections.Counter()
    for _, _, path in all_day_files(directory):
        for line in path.read_text().splitlines()[1:]:
            ts, meter = line.split(",")[:2]
            rows[(meter, int(dt.datetime.fromisoformat(ts).timestamp()))] += 1
    return rows


def run(bodies: int, seed: int, max_seconds: float, keep: bool) -> int:
    began = time.monotonic()
    deadline = began + max_seconds
    rig = Rig([], log_level="WARNING")
    cfg = json.loads(rig.config.read_text())
    cfg["broker"].update(dead_letter_max_length=0, dead_letter_max_bytes=0)
    cfg["output"]["retention_days"] = 0
    del cfg["meter"]["id"]
    rig.config.write_text(json.dumps(cfg))
    failures: list[str] = []
    try:
        pv = rig.start("pv")
        pid = pv.pid
        gen = Generator(seed)
        kinds: collections.Counter = collections.Counter()
        expected_rows: set[tuple[str, int]] = set()
        readings_valid = 0
        expected_reasons: collections.Counter = collections.Counter()
        expected_dead: collections.Counter = collections.Counter()
        connection = pika.BlockingConnection(pika.URLParameters(URL))
        channel = connection.channel()
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        odd = [pika.BasicProperties(delivery_mode=2, headers=h) for h in ODD_HEADERS]
        headers_odd = 0
        published_bytes = 0
        t_publish = time.monotonic()
        for i in range(bodies):
            if time.monotonic() > deadline:
                failures.append(f"time limit reached after publishing {i} bodies")
                break
            kind, body = gen.next()
            try:
                values = decode_values(body)
            except InvalidMessage as exc:
                expected_reasons[exc.reason.value] += 1
                kept = body[:TRUNCATED_BYTES] if len(body) > MAX_BODY_BYTES else body
                expected_dead[(hashlib.sha256(kept).hexdigest(), exc.reason.value)] += 1
                kinds[kind + " (refused)"] += 1
            else:
                expected_rows.update((m, t) for m, t, _ in values)
                readings_valid += len(values)
                kinds[kind + " (accepted)"] += 1
            if i % 50 == 49:
                headers_odd += 1
            channel.basic_publish(rig.names["exchange"], rig.names["queue"], body,
                                  odd[i // 50 % len(odd)] if i % 50 == 49 else props)
            published_bytes += len(body)
            if i % 5000 == 0 and pv.poll() is not None:
                failures.append(f"pvsim-pv exited ({pv.returncode}) after {i} bodies")
                break
        publish_seconds = time.monotonic() - t_publish
        published = sum(kinds.values())
        connection.close()  # idle for minutes now: a fresh one for the checks
        connection = pika.BlockingConnection(pika.URLParameters(URL))
        channel = connection.channel()
        while time.monotonic() < deadline and pv.poll() is None:
            text = http_get(rig.ports["pv"], "/metrics")[1]
            depth = channel.queue_declare(rig.names["queue"], passive=True).method.message_count
            if metric(text, "pvsim_pv_messages_consumed_total") >= published and depth == 0:
                break
            connection.sleep(0.5)  # heartbeats answered meanwhile
        connection.sleep(1.0)  # the last sync and ack (max_delay 0.2 s)
        drained = time.monotonic() - began
        alive = pv.poll() is None and pv.pid == pid
        if not alive:
            failures.append(f"pvsim-pv is not running (exit {pv.poll()})")
            text = ""
        else:
            text = http_get(rig.ports["pv"], "/metrics")[1]
        # The dead letters.
        dead: collections.Counter = collections.Counter()
        reasons_seen: collections.Counter = collections.Counter()
        while True:
            method, dprops, dbody = channel.basic_get(rig.names["dead_letter_queue"],
                                                      auto_ack=True)
            if method is None:
                break
            reason = (dprops.headers or {}).get("x-pvsim-reason")
            dead[(hashlib.sha256(dbody).hexdigest(), reason)] += 1
            reasons_seen[reason] += 1
        connection.close()
        rows = csv_rows(rig.dir / "out")
        doubled = sum(1 for n in rows.values() if n > 1)
        missing = len(expected_rows - set(rows))
        extra = len(set(rows) - expected_rows)
        if doubled or missing or extra:
            failures.append(f"CSV: {missing} readings missing, {extra} not expected, "
                            f"{doubled} written more than once")
        if dead != expected_dead:
            failures.append(f"dead letters differ: {sum((dead - expected_dead).values())} "
                            f"unexpected, {sum((expected_dead - dead).values())} missing")
        if text:
            rejected = {k: v for k, v in metric_by_label(
                text, "pvsim_pv_messages_rejected_total").items() if v}
            if rejected != dict(expected_reasons):
                failures.append(f"rejected metric {rejected} != expected {dict(expected_reasons)}")
            labels = set(metric_by_label(text, "pvsim_pv_messages_rejected_total"))
            if labels != {r.value for r in Reason}:
                failures.append(f"reason labels {sorted(labels)} are not the enum's")
            checks = {"pvsim_pv_messages_consumed_total": published,
                      "pvsim_pv_readings_written_total": len(expected_rows),
                      "pvsim_pv_readings_consumed_total": readings_valid,
                      "pvsim_pv_duplicates_dropped_total": readings_valid - len(expected_rows)}
            for name, want in checks.items():
                if metric(text, name) != want:
                    failures.append(f"{name} {metric(text, name):.0f} != {want}")
        log_text = (rig.dir / "pv.log").read_text(errors="replace")
        if "Traceback" in log_text:
            failures.append("a traceback in pvsim-pv's log")
        if "lost the connection" in log_text:
            failures.append("pvsim-pv lost its connection to RabbitMQ during the run")
        codes = rig.stop()
        if alive and codes.get("pv") != 0:
            failures.append(f"pvsim-pv stopped with {codes.get('pv')}, not 0")
        total = time.monotonic() - began
        print(f"fuzz_amqp: seed {seed}, {published:,} bodies published "
              f"({published_bytes / 1e6:.1f} MB) in {publish_seconds:.1f} s, all handled "
              f"{drained:.1f} s after the start, {total:.1f} s in all")
        for kind, n in sorted(kinds.items()):
            print(f"  {kind:22s} {n:8,}")
        print(f"  with an odd header     {headers_odd:8,}")
        print(f"  valid readings {readings_valid:,}, distinct {len(expected_rows):,}; "
              f"CSV rows {sum(rows.values()):,} ({len(rows):,} distinct)")
        print(f"  dead letters {sum(dead.values()):,} by reason: "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(reasons_seen.items(), key=str)))
        print(f"  pvsim-pv pid {pid}: {'alive throughout, never restarted' if alive else 'DIED'}"
              f", exit {codes.get('pv')}")
        for failure in failures:
            print(f"FAIL: {failure}")
        print("fuzz_amqp: " + ("FAILED" if failures else "nothing found"))
        return 1 if failures else 0
    finally:
        rig.stop()
        if keep or failures:
            print(f"kept {rig.dir} (config, pv.log, CSVs)")
            rig_dir = rig.dir
            rig.dir = Path("/nonexistent-kept")  # cleanup removes queues, keeps the files
            rig.cleanup()
            rig.dir = rig_dir
        else:
            rig.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bodies", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if not 1 <= args.bodies <= 10_000_000 or not 1 <= args.max_seconds <= 86_400:
        parser.error("--bodies 1..10,000,000, --max-seconds 1..86,400")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return run(args.bodies, args.seed, args.max_seconds, args.keep)


if __name__ == "__main__":
    sys.exit(main())
