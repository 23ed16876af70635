"""The decoder is total: whatever the bytes, a message decodes or is refused with InvalidMessage.

Property-based (hypothesis, derandomized so every run is the same) over four kinds of bodies:
arbitrary bytes; arbitrary JSON documents (nested up to 100,000 deep, wide, numbers of up to
6,000 digits and exponents past a float's range, lone surrogates, every JSON type); valid
version 1 and 2 messages with one field anywhere replaced by an arbitrary value; and valid
messages mutated byte by byte (flipped, inserted, deleted, truncated). `decode` and
`decode_values` must either return readings the PV service can write (an instant from 1970 to
9999, `seq` equal to it, a power within limits, the two decoders agreeing) or raise
InvalidMessage with a reason of the one enum and a detail a header and a log line can carry.
Nothing else may leave them: on main a 2 KB body of nested brackets raised RecursionError and
stopped pvsim-pv, and a v1 `ts` of year 1 was written in part and then raised OverflowError.

Examples per test (SETTINGS): 1,000 for each kind of body, 300 readings at the edges of the range
through the PV service: a few seconds each on a 2-core machine.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pvsim import config as configmod
from pvsim.inputs.models import pv_model
from pvsim.model.reading import Reading
from pvsim.pipeline import messages
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.messages import (MAX_DETAIL, MAX_INSTANT, MAX_POWER_W, InvalidMessage, Reason,
                                     decode, decode_values, encode, encode_columns)
from pvsim.pipeline.pvservice import PvService

SETTINGS = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TZ = ZoneInfo("Europe/Madrid")
T0 = 1_782_043_800  # 2026-06-21T14:10:00+02:00


def check_total(body: bytes) -> None:
    """The property: decoded and valid, or refused with a reason of the enum."""
    outcomes = []
    for decoder in (decode, decode_values):
        try:
            outcomes.append(decoder(body))
        except InvalidMessage as exc:
            assert exc.reason in Reason and isinstance(exc.reason, Reason)
            assert exc.detail and len(exc.detail) <= MAX_DETAIL
            exc.detail.encode("utf-8")  # no lone surrogate: a header and a log line carry it
            str(exc).encode("utf-8")
            outcomes.append(exc.reason)
    readings, values = outcomes
    if isinstance(readings, Reason) or isinstance(values, Reason):
        assert readings == values, "the two decoders disagree on a body"
        return
    assert values == [(r.meter_id, r.instant, r.power_w) for r in readings]
    for r in readings:
        assert type(r.instant) is int and 0 <= r.instant <= MAX_INSTANT
        assert type(r.power_w) is float and 0.0 <= r.power_w <= MAX_POWER_W
        assert r.timestamp.utcoffset() is not None and r.timestamp.microsecond == 0


# --- the bodies ---------------------------------------------------------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.text(st.one_of(st.characters(), SURROGATES), max_size=30)
HUGE_INT_TEXT = st.integers(1, 6000).map(lambda n: "9" * n)
NUMBER_TEXT = st.one_of(
    HUGE_INT_TEXT, HUGE_INT_TEXT.map(lambda t: "-" + t),
    st.sampled_from(["1e400", "-1e400", "1E-400", "-0", "0.0", "1e999999999", "4.9e-324",
                     "1.0", "2.0", "1", "2", "NaN", "Infinity", "-Infinity"]),
    st.integers(-10 ** 20, 10 ** 20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


def deep(n: int, kind: str) -> str:
    if kind == "list":
        return "[" * n + "]" * n
    return '{"a":' * n + "0" + "}" * n


DEEP_TEXT = st.builds(deep, st.sampled_from([10, 500, 990, 1000, 1100, 5000, 100_000]),
                      st.sampled_from(["list", "object"]))

# A JSON value as text: scalars, deep and wide structures, numbers json.dumps cannot write.
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT).map(json.dumps)
    | NUMBER_TEXT | DEEP_TEXT,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(TEXT.map(json.dumps), inner, max_size=6).map(
            lambda d: "{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"),
        inner.map(lambda x: "[" * 3 + x + "]" * 3),
    ),
    max_leaves=20,
)
WIDE_TEXT = st.builds(lambda n, item: "[" + ",".join([item] * n) + "]",
                      st.sampled_from([10_000, 10_001, 100_000]),
                      st.sampled_from(["0", "1.5", '"m"', "[]", "{}", "null"]))


def v1_doc(n: int = 3) -> dict:
    readings = [{"meter_id": f"m-{i % 2}", "seq": T0 + i,
                 "ts": dt.datetime.fromtimestamp(T0 + i, TZ).isoformat(), "power_w": 1234.5}
                for i in range(n)]
    return {"v": 1, "readings": readings}


def v2_doc() -> dict:
    return {"v": 2, "meter_ids": ["a", "b"], "seq": [T0, T0 + 1],
            "power_w": [[1.0, 2.0], [3.0, 4.5]]}


PLACES = [("v",), ("readings",), ("readings", 0), ("readings", 1, "meter_id"),
          ("readings", 1, "seq"), ("readings", 2, "ts"), ("readings", 0, "power_w"),
          ("readings", 0, "extra"), ("x",)]
COLUMN_PLACES = [("v",), ("meter_ids",), ("meter_ids", 0), ("seq",), ("seq", 1), ("power_w",),
                 ("power_w", 1), ("power_w", 0, 1), ("extra",)]
MARK = "\u0000PLACEHOLDER\u0000"


def with_value(doc: dict, path: tuple, value_text: str) -> bytes:
    """The document with the value at `path` replaced by (or added as) `value_text`."""
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = MARK
    return json.dumps(doc).replace(json.dumps(MARK), value_text, 1).encode("utf-8", "surrogatepass")


@st.composite
def replaced_field(draw) -> bytes:
    if draw(st.booleans()):
        doc, path = v1_doc(), draw(st.sampled_from(PLACES))
    else:
        doc, path = v2_doc(), draw(st.sampled_from(COLUMN_PLACES))
    return with_value(doc, path, draw(st.one_of(JSON_VALUE, WIDE_TEXT)))


TIMESTAMPS = st.one_of(
    st.sampled_from(["0001-01-01T00:00:00+00:00", "0001-01-01T00:00:00+01:00",
                     "1969-12-31T23:59:59+00:00", "1970-01-01T00:00:00+00:00",
                     "1970-01-01T01:00:00+01:00", "9999-12-31T23:59:59-23:59",
                     "9999-12-30T00:00:00+00:00", "9999-12-30T00:00:01+00:00",
                     "2026-06-21T14:10:00+02:00:00.5", "2026-06-21T14:10:00+23:59:59.999999",
                     "2026-W25-1T10:00Z", "20260621T1410+0200", "2026-06-21T14:10:00",
                     "2026-06-21T14:10:00.000001+02:00", "\ud800", "2026-06-21T14:10:00+02:00"]),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                 timezones=st.sampled_from([dt.timezone.utc, TZ, ZoneInfo("Pacific/Kiritimati"),
                                            ZoneInfo("Etc/GMT+12")])).map(dt.datetime.isoformat),
)


@st.composite
def edge_reading(draw) -> bytes:
    """A version 1 reading at and past the edges of the range, its seq right or wrong."""
    ts = draw(TIMESTAMPS)
    try:
        parsed = dt.datetime.fromisoformat(ts)
        instant = math.floor(parsed.timestamp()) if parsed.utcoffset() is not None else 0
    except ValueError:
        instant = 0
    seq = draw(st.sampled_from([instant, instant + 1, -1, 0, 10 ** 30]))
    doc = v1_doc(2)
    doc["readings"].append({"meter_id": "m-9", "seq": seq, "ts": ts,
                            "power_w": draw(st.sampled_from([0, 1.5, 10_000_000, 1e308]))})
    return json.dumps(doc).encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw) -> bytes:
    """A valid body with bytes flipped, inserted, deleted, or cut off."""
    if draw(st.booleans()):
        body = bytearray(json.dumps(v1_doc(draw(st.integers(1, 4)))).encode())
    else:
        body = bytearray(json.dumps(v2_doc()).encode())
    for _ in range(draw(st.integers(1, 8))):
        if not body:
            break
        i = draw(st.integers(0, len(body) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut", "digit", "bracket"]))
        if op == "flip":
            body[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            body[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del body[i:i + draw(st.integers(1, 8))]
        elif op == "cut":
            del body[i:]
        elif op == "digit":
            body[i:i] = b"9" * draw(st.integers(1, 5000))
        else:
            body[i:i] = draw(st.sampled_from([b"[" * 2000, b"{" * 10, b'"\\ud800"', b"1.0"]))
    return bytes(body)


# --- the properties ---------------------------------------------------------------------------

def test_the_bomb_of_the_issue_is_refused_not_raised():
    bomb = b'{"v": 1, "readings": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    with pytest.raises(InvalidMessage) as err:
        decode(bomb)
    assert err.value.reason == Reason.NOT_JSON
    check_total(bomb)


@SETTINGS
@given(st.binary(max_size=3000))
def test_arbitrary_bytes(body):
    check_total(body)


@SETTINGS
@given(st.one_of(JSON_VALUE, WIDE_TEXT))
def test_arbitrary_json(text):
    check_total(text.encode("utf-8", "surrogatepass"))


@SETTINGS
@given(replaced_field())
def test_valid_messages_with_any_value_in_any_field(body):
    check_total(body)


@SETTINGS
@given(mutated())
def test_valid_messages_mutated(body):
    check_total(body)


@SETTINGS
@given(edge_reading())
def test_readings_at_the_edges_of_the_range_are_valid_or_refused_whole(body):
    check_total(body)
    try:
        decoded = decode(body)
    except InvalidMessage:
        return
    assert len(decoded) == 3  # all of them, or (above) none


# --- what decodes can be written ------------------------------------------------------------

EDGE_INSTANTS = st.one_of(st.sampled_from([0, 1, MAX_INSTANT, MAX_INSTANT - 1, 951_782_400]),
                          st.integers(0, MAX_INSTANT))


def _service(tmp_path, model: str, zone: str) -> PvService:
    pv = {"model": model}
    if model == "clearsky":
        pv.update(latitude=40.4, longitude=-3.7)
    cfg = configmod.parse(json.dumps({"timezone": zone, "pv": {**pv, "noise": 0.3}}), "fuzz.yaml")
    return PvService.recovering(pv_model(cfg), CsvSink(tmp_path), cfg.tz)


@pytest.mark.parametrize("model", ["chart", "clearsky"])
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(instant=EDGE_INSTANTS, zone=st.sampled_from(["Europe/Madrid", "Pacific/Kiritimati",
                                                    "Etc/GMT+12", "UTC"]),
       version=st.sampled_from([1, 2]))
def test_every_reading_that_decodes_is_written(tmp_path_factory, model, instant, zone, version):
    """The range the decoder accepts is the range the PV service and the models can write: a
    reading that decodes never fails later (on main, year 1 decoded and then overflowed)."""
    tz = ZoneInfo(zone)
    if version == 1:
        body = encode([Reading("m", instant, 100.0, tz)])
    else:
        (body,) = encode_columns(["m"], [instant], [[100.0]])
    service = _service(tmp_path_factory.mktemp("out"), model, zone)
    outcome = service.handle(body)
    service.sync()
    service.sink.close()
    assert outcome.written == 1


# --- nesting: refused by depth, the same wherever the decoder is called ------------------------

def depth_of(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


NESTED = st.recursive(st.one_of(st.integers(), st.text(st.sampled_from('[]{}"\\a,:é'))),
                      lambda inner: st.one_of(st.lists(inner, max_size=3),
                                              st.dictionaries(st.text(st.sampled_from('[]{"\\'),
                                                                      max_size=3),
                                                              inner, max_size=3)),
                      max_leaves=60)


@SETTINGS
@given(NESTED, st.integers(0, 40))
def test_the_depth_check_is_exact_for_json(value, extra):
    for _ in range(extra):
        value = [value] if extra % 2 else {"[\\\"": value}
    text = json.dumps(value, ensure_ascii=bool(extra % 3))
    assert messages._too_deep(text.encode()) == (depth_of(value) > messages.MAX_DEPTH)


def _decode_at_stack_depth(body: bytes, frames: int):
    if frames:
        return _decode_at_stack_depth(body, frames - 1)
    try:
        return decode(body)
    except InvalidMessage as exc:
        return exc.reason


@pytest.mark.parametrize("depth", [33, 900, 985, 995, 1005, 5000])
def test_the_reason_does_not_depend_on_the_callers_stack(depth):
    """On main a body nested ~990 deep parsed at the top of a stack and raised RecursionError
    deeper in one (pvsim-pv's consuming thread): its fate depended on where it was decoded."""
    body = b'{"v": 1, "readings": [' + b"[" * depth + b"]" * depth + b"]}"
    reasons = {_decode_at_stack_depth(body, frames) for frames in (0, 100, 500, 900)}
    assert reasons == {Reason.NOT_JSON}
