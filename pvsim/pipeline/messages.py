"""The one message schema, with encode, decode and validation in one place.

An AMQP message body is JSON: {"v": 1, "readings": [READING, ...]} with each READING
{"meter_id": str, "seq": int, "ts": "2026-06-21T14:10:00+02:00", "power_w": float}.
`seq` is the reading's instant in epoch seconds: it grows per meter and, unlike a counter, survives
restarts of either daemon, so (meter_id, instant) identifies a reading for deduplication. A batch
of readings travels as one message (the accelerated run sends hundreds at a time; the meter sends
one a second, more when it drains its buffer after an outage); a message is valid or dead-lettered
as a whole, so a reading is never half-processed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence

from pvsim.config import METER_ID, METER_ID_RULE, LimitsConfig
from pvsim.model.reading import Reading

VERSION = 1
MAX_BODY_BYTES = 1 << 20
MAX_READINGS = 10_000
# Power a reading may have unless the caller says otherwise (limits.max_power_w's default).
MAX_POWER_W = LimitsConfig().max_power_w
CONTENT_TYPE = "application/json"
_FIELDS = frozenset(("meter_id", "seq", "ts", "power_w"))


class InvalidMessage(ValueError):
    """A message that cannot be processed; `reason` is a short label for metrics and headers."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def encode(readings: Sequence[Reading], max_power_w: float = MAX_POWER_W) -> bytes:
    """Serialise a batch; the readings are validated so a bad one fails here, at the sender."""
    if not readings:
        raise ValueError("a message carries at least one reading")
    items = []
    for r in readings:
        _check_reading_values(r.meter_id, r.seq, r.power_w, r.timestamp, max_power_w=max_power_w)
        items.append({"meter_id": r.meter_id, "seq": r.seq, "ts": r.timestamp.isoformat(),
                      "power_w": r.power_w})
    return json.dumps({"v": VERSION, "readings": items}, separators=(",", ":"),
                      allow_nan=False).encode()


def encode_batches(readings: Iterable[Reading], size: int, max_bytes: int = MAX_BODY_BYTES,
                   max_power_w: float = MAX_POWER_W) -> Iterator[bytes]:
    """Message bodies of up to `size` readings and `max_bytes` bytes each, in order.

    Every body is one `decode` accepts: a batch whose encoding would exceed the body limit (long
    meter ids, a large broker.batch_size) is split in halves until each part fits."""
    batch: list[Reading] = []
    for reading in readings:
        batch.append(reading)
        if len(batch) >= size:
            yield from _fitting(batch, max_bytes, max_power_w)
            batch = []
    if batch:
        yield from _fitting(batch, max_bytes, max_power_w)


def _fitting(batch: Sequence[Reading], max_bytes: int, max_power_w: float) -> Iterator[bytes]:
    body = encode(batch, max_power_w)
    if len(body) <= max_bytes or len(batch) == 1:  # one reading is a few hundred bytes at most
        yield body
        return
    half = len(batch) // 2
    yield from _fitting(batch[:half], max_bytes, max_power_w)
    yield from _fitting(batch[half:], max_bytes, max_power_w)


def decode(body: bytes, max_power_w: float = MAX_POWER_W) -> list[Reading]:
    """Parse and validate a message body; raise InvalidMessage saying what is wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidMessage("oversized", f"{len(body)} bytes, limit {MAX_BODY_BYTES}")
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidMessage("not_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise InvalidMessage("bad_schema", "the body is not a JSON object")
    version = doc.get("v")
    if version != VERSION or isinstance(version, bool):
        raise InvalidMessage("bad_version", f"unsupported version {version!r}, expected {VERSION}")
    items = doc.get("readings")
    if not isinstance(items, list) or not items:
        raise InvalidMessage("missing_field", "'readings' must be a non-empty list")
    if len(items) > MAX_READINGS:
        raise InvalidMessage("oversized", f"{len(items)} readings, limit {MAX_READINGS}")
    if len(doc) != 2:
        extra = sorted(set(doc) - {"v", "readings"})
        raise InvalidMessage("bad_schema", f"unknown field {extra[0]!r}")
    return [_decode_reading(item, i, max_power_w) for i, item in enumerate(items)]


def _decode_reading(item: object, index: int, max_power_w: float) -> Reading:
    where = f"readings[{index}]"
    if not isinstance(item, dict):
        raise InvalidMessage("bad_type", f"{where} is not an object")
    if item.keys() != _FIELDS:
        missing = sorted(_FIELDS - item.keys())
        if missing:
            raise InvalidMessage("missing_field", f"{where}.{missing[0]} is missing")
        raise InvalidMessage("bad_schema", f"{where} has unknown field {sorted(item.keys() - _FIELDS)[0]!r}")
    meter_id, seq, ts, power = item["meter_id"], item["seq"], item["ts"], item["power_w"]
    if not isinstance(meter_id, str):
        raise InvalidMessage("bad_type", f"{where}.meter_id must be a string")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise InvalidMessage("bad_type", f"{where}.seq must be an integer")
    if not isinstance(power, (int, float)) or isinstance(power, bool):
        raise InvalidMessage("bad_type", f"{where}.power_w must be a number")
    if not isinstance(ts, str):
        raise InvalidMessage("bad_type", f"{where}.ts must be an ISO 8601 string")
    try:
        timestamp = dt.datetime.fromisoformat(ts)
    except ValueError:
        raise InvalidMessage("bad_timestamp", f"{where}.ts {ts[:40]!r} is not ISO 8601") from None
    _check_reading_values(meter_id, seq, power, timestamp, where, max_power_w)
    return Reading(meter_id, seq, timestamp, float(power))


def validate(reading: Reading, where: str = "reading", max_power_w: float = MAX_POWER_W) -> None:
    """Raise InvalidMessage when a reading built elsewhere (the JOI API) breaks the schema."""
    _check_reading_values(reading.meter_id, reading.seq, reading.power_w, reading.timestamp, where,
                          max_power_w)


def _check_reading_values(meter_id: str, seq: int, power_w: float, timestamp: dt.datetime,
                          where: str = "reading", max_power_w: float = MAX_POWER_W) -> None:
    if meter_id not in _valid_ids:
        _check_meter_id(meter_id, where)
    if seq < 0:
        raise InvalidMessage("out_of_range", f"{where}.seq must not be negative")
    if not 0.0 <= power_w <= max_power_w:  # also false for NaN and infinities
        raise InvalidMessage("out_of_range", f"{where}.power_w {power_w!r} is outside "
                                             f"0-{max_power_w:,.0f} W (limits.max_power_w)")
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise InvalidMessage("bad_timestamp", f"{where}.ts has no UTC offset")
    if timestamp.microsecond:
        raise InvalidMessage("bad_timestamp", f"{where}.ts is not on a whole second")


_valid_ids: set[str] = set()  # meter ids already checked: a handful in practice, so bounded below


def _check_meter_id(meter_id: str, where: str) -> None:
    if not METER_ID.fullmatch(meter_id):
        raise InvalidMessage("bad_value", f"{where}.meter_id must be {METER_ID_RULE}")
    if len(_valid_ids) < 10_000:
        _valid_ids.add(meter_id)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")
