"""The message schema, in its two versions, with encode, decode and validation in one place.

Version 1, one object per reading, is what pvsim-meter sends:
    {"v": 1, "readings": [READING, ...]} with each READING
    {"meter_id": str, "seq": int, "ts": "2026-06-21T14:10:00+02:00", "power_w": float}.
Version 2, columns, is what pvsim-run sends: the readings of some meters at the same instants,
    {"v": 2, "meter_ids": [str, ...], "seq": [int, ...], "power_w": [[float, ...], ...]}
where power_w[j][i] is meter_ids[j]'s reading at instant seq[i], the readings taken instant by
instant and, at each, meter by meter. It has no timestamp text: the receiver places each instant
in its own time zone, as it does with a version 1 `ts`. A run sends 31.5 million readings a year
at 1-second steps; as columns they are a tenth of the bytes, and JSON's C code does nearly all of
the encoding and decoding, where version 1 costs a Python dict and a timestamp text per reading.
It is over 350 lines because it is one concept, the wire format: both versions share the
validation and the rejection reasons, and splitting them would scatter one schema across files.
Every receiver (pvsim-pv, pvsim-run) takes both; pvsim-meter keeps sending version 1, so that a
pvsim-pv of an older release, during an upgrade, never meets a message it cannot read.

`seq` is the reading's instant in epoch seconds: it grows per meter and, unlike a counter, survives
restarts of either daemon, so (meter_id, instant) identifies a reading for deduplication (in
version 1 the instant is the one `ts` names). A batch of readings travels as one message (the
accelerated run sends hundreds at a time; the meter sends one a second, more when it drains its
buffer after an outage); a message is valid or dead-lettered as a whole, so a reading is never
half-processed: every reading of a message is validated (types, meter id, power range, an
instant from 1970 to 9999, `seq` equal to that instant) before the first of its rows is written.

The decoder is total: whatever the bytes (nested 100,000 deep, 4,000-digit numbers, lone
surrogates, every JSON type in every field), `decode` and `decode_values` either return readings
the PV service can write or raise InvalidMessage, whose `reason` is one of `Reason`; nothing
else leaves them (a hypothesis test and bench/fuzz_amqp.py hold them to it).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from itertools import repeat

from pvsim.config import METER_ID, METER_ID_RULE, LimitsConfig
from pvsim.model.reading import Reading

VERSION = 1   # one object per reading: pvsim-meter
COLUMNS = 2   # columns: pvsim-run
MAX_BODY_BYTES = 1 << 20
MAX_READINGS = 10_000
# Power a reading may have unless the caller says otherwise (limits.max_power_w's default).
MAX_POWER_W = LimitsConfig().max_power_w
CONTENT_TYPE = "application/json"
_FIELDS = frozenset(("meter_id", "seq", "ts", "power_w"))
_COLUMN_FIELDS = frozenset(("v", "meter_ids", "seq", "power_w"))
# The last instant a version 2 `seq` may name: any zone's local time of it is a valid datetime.
MAX_INSTANT = int(dt.datetime(9999, 12, 30, tzinfo=dt.timezone.utc).timestamp())
MAX_DETAIL = 500  # characters of an InvalidMessage's detail (a log line, a header)
# Arrays and objects nested deeper than this are refused before parsing; no message of either
# version is deeper than 3.
MAX_DEPTH = 32
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_ONE_KIND = bytes.maketrans(b"{}", b"[]")  # a level is a level, array or object
_EPOCH = dt.datetime(1970, 1, 1)


class Reason(StrEnum):
    """Why a message was dead-lettered: its x-pvsim-reason header and its label of
    pvsim_pv_messages_rejected_total, every one of which is registered at start. The one list:
    InvalidMessage takes no other."""

    NOT_JSON = "not_json"
    BAD_SCHEMA = "bad_schema"
    BAD_VERSION = "bad_version"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    BAD_VALUE = "bad_value"
    BAD_TIMESTAMP = "bad_timestamp"
    OUT_OF_RANGE = "out_of_range"
    OVERSIZED = "oversized"
    WRONG_SHARD = "wrong_shard"  # a fleet's meter sent to another shard's queue (pvservice)
    PROCESSING_ERROR = "processing_error"  # valid, yet handling it failed, or crashed the process


class InvalidMessage(ValueError):
    """A message that cannot be processed; `reason` (a Reason) is a short label for metrics
    and headers. `detail` is cut to MAX_DETAIL characters and holds no lone surrogate (a body
    may carry "\\ud800"; a header or a log line must still encode as UTF-8)."""

    def __init__(self, reason: Reason | str, detail: str) -> None:
        self.reason = Reason(reason)  # ValueError for a reason outside the enum: a bug
        self.detail = _printable(detail, MAX_DETAIL)
        super().__init__(f"{self.reason}: {self.detail}")


def _printable(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, lone surrogates escaped."""
    text = text[:limit]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(value: object) -> str:
    """A received value for an error message, short whatever it is (never the repr of a deep
    or wide structure, which could recurse or run to megabytes)."""
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'} of {len(value)} items"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value[:41] if isinstance(value, str) else value)
    return text if len(text) <= 42 else text[:40] + "..."


def encode(readings: Sequence[Reading], max_power_w: float = MAX_POWER_W) -> bytes:
    """Serialise a batch; the readings are validated so a bad one fails here, at the sender."""
    if not readings:
        raise ValueError("a message carries at least one reading")
    items = []
    for r in readings:
        validate(r, max_power_w=max_power_w)
        items.append({"meter_id": r.meter_id, "seq": r.instant, "ts": r.timestamp.isoformat(),
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


def encode_columns(meter_ids: Sequence[str], instants: Sequence[int],
                   powers: Sequence[Sequence[float]], max_bytes: int = MAX_BODY_BYTES,
                   max_power_w: float = MAX_POWER_W) -> Iterator[bytes]:
    """Version 2 bodies of the readings of `meter_ids` at `instants` (`powers[j][i]`: meter j at
    instant i), validated here, at the sender: one body, or several, split by instants (by
    meters for a single instant), when one would exceed `max_bytes` or MAX_READINGS."""
    ids, seq, columns = list(meter_ids), list(instants), [list(c) for c in powers]
    _check_columns(ids, seq, columns, max_power_w)
    yield from _fitting_columns(ids, seq, columns, max_bytes)


def _fitting_columns(ids: list[str], seq: list[int], columns: list[list[float]],
                     max_bytes: int) -> Iterator[bytes]:
    try:
        body = json.dumps({"v": COLUMNS, "meter_ids": ids, "seq": seq, "power_w": columns},
                          separators=(",", ":"), allow_nan=False).encode()
    except ValueError:  # NaN: min and max may not see it, json.dumps does
        raise InvalidMessage(Reason.OUT_OF_RANGE,
                             "power_w holds a value that is not a number") from None
    if (len(body) <= max_bytes and len(seq) * len(ids) <= MAX_READINGS) or len(seq) * len(ids) == 1:
        yield body
    elif len(seq) > 1:
        half = len(seq) // 2
        yield from _fitting_columns(ids, seq[:half], [c[:half] for c in columns], max_bytes)
        yield from _fitting_columns(ids, seq[half:], [c[half:] for c in columns], max_bytes)
    else:
        half = len(ids) // 2
        yield from _fitting_columns(ids[:half], seq, columns[:half], max_bytes)
        yield from _fitting_columns(ids[half:], seq, columns[half:], max_bytes)


def decode(body: bytes, max_power_w: float = MAX_POWER_W) -> list[Reading]:
    """Parse and validate a message body; raise InvalidMessage saying what is wrong. A version 1
    reading is told in its `ts`'s UTC offset, a version 2 one in UTC."""
    doc = _parse(body)
    if doc["v"] == COLUMNS:
        return [Reading(meter_id, instant, power)
                for meter_id, instant, power in _column_values(doc, max_power_w)]
    return [Reading(meter_id, instant, power, timestamp.tzinfo or dt.timezone.utc)
            for meter_id, instant, timestamp, power in _readings(doc, max_power_w)]


def decode_values(body: bytes, max_power_w: float = MAX_POWER_W) -> list[tuple[str, int, float]]:
    """(meter id, instant, power in W) of each reading of a valid body, in order: all the PV
    service needs, without building Readings. Validates exactly as `decode` does."""
    doc = _parse(body)
    if doc["v"] == COLUMNS:
        return _column_values(doc, max_power_w)
    return [(meter_id, instant, power)
            for meter_id, instant, _, power in _readings(doc, max_power_w)]


def _parse(body: bytes) -> dict:
    """The body's JSON object, of a version this module reads. JSON nested more than MAX_DEPTH
    deep is refused before it is parsed (the parser's own RecursionError comes at a depth that
    depends on the caller's stack, and a reason must not); so is a number of more than 4,300
    digits (Python's int-string limit, a ValueError)."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidMessage(Reason.OVERSIZED, f"{len(body)} bytes, limit {MAX_BODY_BYTES}")
    try:
        encoding = json.detect_encoding(body)
        text = body.decode(encoding, "surrogatepass")  # as json.loads does
        if _too_deep(body if encoding == "utf-8" else text.encode("utf-8", "surrogatepass")):
            raise InvalidMessage(Reason.NOT_JSON, f"nested more than {MAX_DEPTH} deep")
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # not reached after _too_deep: kept so that nothing else leaves
        raise InvalidMessage(Reason.NOT_JSON, "nested too deeply to parse") from None
    except MemoryError:
        raise InvalidMessage(Reason.OVERSIZED, "too large to parse in the memory left") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidMessage(Reason.NOT_JSON, str(exc)[:200]) from None
    if type(doc) is not dict:
        raise InvalidMessage(Reason.BAD_SCHEMA, "the body is not a JSON object")
    version = doc.get("v")
    if type(version) is not int or version not in (VERSION, COLUMNS):  # not True, not 1.0
        raise InvalidMessage(Reason.BAD_VERSION, f"unsupported version {_shown(version)}, "
                                                 f"expected the integer {VERSION} or {COLUMNS}")
    return doc


def _too_deep(utf8: bytes) -> bool:
    """Whether JSON text (UTF-8) nests arrays and objects more than MAX_DEPTH deep. Its escaped
    backslashes and quotes removed (left to right, as the parser reads them), then all but
    brackets (of one kind) and quotes, then the strings, innermost pairs are removed, a level a
    pass.
    Exact for valid JSON; text that is not is left to the parser, which refuses it. A few
    milliseconds for a megabyte of readings (C string operations), at most MAX_DEPTH passes."""
    if utf8.count(b"[") + utf8.count(b"{") <= MAX_DEPTH:
        return False
    unescaped = utf8.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Two quotes in a row go first (they leave every bracket inside or outside a string as it
    # was): in a message, nearly all the strings; then what is inside the strings left.
    structure = unescaped.translate(_ONE_KIND, _NOT_STRUCTURE).replace(b'""', b"")
    brackets = b"".join(structure.split(b'"')[::2])
    for _ in range(MAX_DEPTH):
        shorter = brackets.replace(b"[]", b"")
        if shorter == brackets:
            return False  # balanced and shallow, or not JSON at all
        brackets = shorter
    return b"[]" in brackets


def _readings(doc: dict, max_power_w: float) -> list[tuple[str, int, dt.datetime, float]]:
    """(meter id, instant, timestamp, W) of each reading of a version 1 body, every one
    validated before any is returned."""
    items = doc.get("readings")
    if type(items) is not list or not items:
        raise InvalidMessage(Reason.MISSING_FIELD, "'readings' must be a non-empty list")
    if len(items) > MAX_READINGS:
        raise InvalidMessage(Reason.OVERSIZED, f"{len(items)} readings, limit {MAX_READINGS}")
    if len(doc) != 2:
        extra = sorted(set(doc) - {"v", "readings"})
        raise InvalidMessage(Reason.BAD_SCHEMA, f"unknown field {_shown(extra[0])}")
    return [_decode_reading(item, i, max_power_w) for i, item in enumerate(items)]


def _column_values(doc: dict, max_power_w: float) -> list[tuple[str, int, float]]:
    """(meter id, instant, W) of each reading of a version 2 body, in order."""
    if doc.keys() != _COLUMN_FIELDS:
        missing = sorted(_COLUMN_FIELDS - doc.keys())
        if missing:
            raise InvalidMessage(Reason.MISSING_FIELD, f"{missing[0]!r} is missing")
        extra = sorted(doc.keys() - _COLUMN_FIELDS)
        raise InvalidMessage(Reason.BAD_SCHEMA, f"unknown field {_shown(extra[0])}")
    ids, seq, columns = doc["meter_ids"], doc["seq"], doc["power_w"]
    _check_columns(ids, seq, columns, max_power_w)
    if len(seq) * len(ids) > MAX_READINGS:
        raise InvalidMessage(Reason.OVERSIZED,
                             f"{len(seq) * len(ids)} readings, limit {MAX_READINGS}")
    if len(ids) == 1:
        return list(zip(repeat(ids[0]), seq, map(float, columns[0])))
    return [(meter_id, instant, float(power)) for instant, powers in zip(seq, zip(*columns))
            for meter_id, power in zip(ids, powers)]


def _check_columns(ids: object, seq: object, columns: object, max_power_w: float) -> None:
    """Version 2's rules: what `_check_reading_values` asks of each reading of version 1, here
    asked of whole columns at once (set, min and max run in C)."""
    if type(ids) is not list or not ids:
        raise InvalidMessage(Reason.MISSING_FIELD, "'meter_ids' must be a non-empty list")
    if type(seq) is not list or not seq:
        raise InvalidMessage(Reason.MISSING_FIELD, "'seq' must be a non-empty list")
    for j, meter_id in enumerate(ids):
        if type(meter_id) is not str:
            raise InvalidMessage(Reason.BAD_TYPE, f"meter_ids[{j}] must be a string")
        if meter_id not in _valid_ids:
            _check_meter_id(meter_id, f"meter_ids[{j}]")
    if len(set(ids)) != len(ids):
        raise InvalidMessage(Reason.BAD_VALUE, "meter_ids names a meter twice")
    if not set(map(type, seq)) <= {int}:
        raise InvalidMessage(Reason.BAD_TYPE, "seq must hold integers")
    if min(seq) < 0 or max(seq) > MAX_INSTANT:
        raise InvalidMessage(Reason.OUT_OF_RANGE, "seq must hold instants from 1970 to 9999")
    if type(columns) is not list or len(columns) != len(ids):
        raise InvalidMessage(Reason.BAD_SCHEMA,
                             f"power_w must be a list of {len(ids)} lists, one per meter id")
    for j, column in enumerate(columns):
        if type(column) is not list or len(column) != len(seq):
            raise InvalidMessage(Reason.BAD_SCHEMA, f"power_w[{j}] must be a list of {len(seq)} "
                                                    "numbers, one per seq")
        if not set(map(type, column)) <= {int, float}:
            raise InvalidMessage(Reason.BAD_TYPE, f"power_w[{j}] must hold numbers")
        if not (0.0 <= min(column) and max(column) <= max_power_w):
            i, bad = next((i, p) for i, p in enumerate(column) if not 0.0 <= p <= max_power_w)
            raise InvalidMessage(Reason.OUT_OF_RANGE,
                                 f"power_w[{j}][{i}] {_shown(bad)} is outside "
                                 f"0-{max_power_w:,.0f} W (limits.max_power_w)")


def _decode_reading(item: object, index: int, max_power_w: float) -> tuple[str, int, dt.datetime, float]:
    where = f"readings[{index}]"
    if not isinstance(item, dict):
        raise InvalidMessage(Reason.BAD_TYPE, f"{where} is not an object")
    if item.keys() != _FIELDS:
        missing = sorted(_FIELDS - item.keys())
        if missing:
            raise InvalidMessage(Reason.MISSING_FIELD, f"{where}.{missing[0]} is missing")
        extra = sorted(item.keys() - _FIELDS)
        raise InvalidMessage(Reason.BAD_SCHEMA, f"{where} has unknown field {_shown(extra[0])}")
    meter_id, seq, ts, power = item["meter_id"], item["seq"], item["ts"], item["power_w"]
    if not isinstance(meter_id, str):
        raise InvalidMessage(Reason.BAD_TYPE, f"{where}.meter_id must be a string")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise InvalidMessage(Reason.BAD_TYPE, f"{where}.seq must be an integer")
    if not isinstance(power, (int, float)) or isinstance(power, bool):
        raise InvalidMessage(Reason.BAD_TYPE, f"{where}.power_w must be a number")
    if not isinstance(ts, str):
        raise InvalidMessage(Reason.BAD_TYPE, f"{where}.ts must be an ISO 8601 string")
    try:
        timestamp = dt.datetime.fromisoformat(ts)
    except (ValueError, OverflowError):  # UnicodeEncodeError (a lone surrogate) is a ValueError
        raise InvalidMessage(Reason.BAD_TIMESTAMP,
                             f"{where}.ts {_shown(ts)} is not ISO 8601") from None
    _check_reading_values(meter_id, seq, power, where, max_power_w)
    instant = _instant_of(timestamp, where)
    if seq != instant:
        raise InvalidMessage(Reason.BAD_VALUE,
                             f"{where}.seq {_shown(seq)} is not the instant of its ts ({instant})")
    return meter_id, seq, timestamp, float(power)  # seq is the instant: checked


def validate(reading: Reading, where: str = "reading", max_power_w: float = MAX_POWER_W) -> None:
    """Raise InvalidMessage when a reading built elsewhere (the JOI API, a meter) breaks the
    schema: the same rules as a received reading's, the instant's range included."""
    _check_reading_values(reading.meter_id, reading.instant, reading.power_w, where, max_power_w)
    if reading.instant > MAX_INSTANT:
        raise InvalidMessage(Reason.OUT_OF_RANGE, f"{where}.seq {reading.instant} is not an "
                             "instant from 1970 to 9999")


def _check_reading_values(meter_id: str, seq: int, power_w: float, where: str = "reading",
                          max_power_w: float = MAX_POWER_W) -> None:
    if meter_id not in _valid_ids:
        _check_meter_id(meter_id, where)
    if seq < 0:
        raise InvalidMessage(Reason.OUT_OF_RANGE, f"{where}.seq must not be negative")
    if not 0.0 <= power_w <= max_power_w:  # also false for NaN and infinities
        raise InvalidMessage(Reason.OUT_OF_RANGE, f"{where}.power_w {_shown(power_w)} is "
                             f"outside 0-{max_power_w:,.0f} W (limits.max_power_w)")


def _instant_of(timestamp: dt.datetime, where: str) -> int:
    """The epoch second a received `ts` names; InvalidMessage unless it has a UTC offset, is
    on a whole second and lies from 1970 to 9999."""
    offset = timestamp.utcoffset()
    if offset is None:
        raise InvalidMessage(Reason.BAD_TIMESTAMP, f"{where}.ts has no UTC offset")
    # The instant, exactly and for any year: timedelta arithmetic, where datetime arithmetic
    # overflows at year 1 or 9999 and a float loses sub-second offsets.
    since = timestamp.replace(tzinfo=None) - _EPOCH - offset
    if timestamp.microsecond or since.microseconds:
        raise InvalidMessage(Reason.BAD_TIMESTAMP, f"{where}.ts is not on a whole second")
    instant = since.days * 86400 + since.seconds
    if not 0 <= instant <= MAX_INSTANT:
        raise InvalidMessage(Reason.OUT_OF_RANGE, f"{where}.ts {timestamp.isoformat()} is not "
                             "an instant from 1970 to 9999")
    return instant


# Meter ids already checked: a fleet's worth (100,000 ids: about 10 MB), bounded below so that
# a stream of distinct ids cannot grow it without end.
_valid_ids: set[str] = set()
VALID_IDS_KEPT = 200_000


def _check_meter_id(meter_id: str, where: str) -> None:
    if not METER_ID.fullmatch(meter_id):
        raise InvalidMessage(Reason.BAD_VALUE, f"{where}.meter_id must be {METER_ID_RULE}")
    if len(_valid_ids) < VALID_IDS_KEPT:
        _valid_ids.add(meter_id)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")
