import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from pvsim.pipeline.messages import (MAX_BODY_BYTES, MAX_INSTANT, InvalidMessage, Reading, decode,
                                     decode_values, encode, encode_batches, encode_columns)

TZ = ZoneInfo("Europe/Madrid")
TS = dt.datetime(2026, 6, 21, 14, 10, tzinfo=TZ)


def reading(**kw) -> Reading:
    base = dict(meter_id="smart-meter-0", instant=int(TS.timestamp()), power_w=1234.5, tz=TZ)
    base.update(kw)
    return Reading(**base)


def body(**reading_fields) -> bytes:
    item = {"meter_id": "m", "seq": int(TS.timestamp()), "ts": "2026-06-21T14:10:00+02:00",
            "power_w": 10.0}
    item.update(reading_fields)
    return json.dumps({"v": 1, "readings": [item]}).encode()


def test_round_trip_keeps_every_field_and_the_offset():
    readings = [reading(), reading(meter_id="b", power_w=0.0), reading(power_w=9000.0)]
    back = decode(encode(readings))
    assert back == readings
    assert back[0].timestamp.isoformat() == "2026-06-21T14:10:00+02:00"
    assert back[0].instant == int(TS.timestamp())


def test_batches_keep_order_and_size():
    readings = [reading(instant=int(TS.timestamp()) + i) for i in range(1001)]
    bodies = list(encode_batches(iter(readings), 400))
    assert len(bodies) == 3
    assert [r for b in bodies for r in decode(b)] == readings


def test_a_batch_too_large_for_one_message_is_split_into_messages_the_decoder_accepts():
    """broker.batch_size 10,000 with a 40-character meter id is 1.24 MB in one body: over the
    1 MiB the decoder accepts. encode_batches splits it so every body decodes."""
    meter = "building-" + "x" * 31
    start = 1_782_043_200
    tz = dt.timezone(dt.timedelta(hours=2))
    many = [Reading(meter, t, 1234.5, tz) for t in range(start, start + 25_000)]
    assert len(encode(many[:10_000])) > MAX_BODY_BYTES
    bodies = list(encode_batches(many, 10_000))
    assert all(len(b) <= MAX_BODY_BYTES for b in bodies)
    assert [r for b in bodies for r in decode(b)] == many
    assert len(bodies) == 5  # each 10,000 -> 2 x 5,000, and the last 5,000 whole


@pytest.mark.parametrize("raw,reason", [
    (b"not json at all", "not_json"),
    (b"\xff\xfe", "not_json"),
    (b'{"v": 1, "readings": [{"meter_id": "m", "seq": 1, "ts": "2026-06-21T14:10:00+02:00", '
     b'"power_w": NaN}]}', "not_json"),
    (b"[1, 2]", "bad_schema"),
    (b'{"v": 3, "readings": []}', "bad_version"),
    (b'{"v": true, "readings": []}', "bad_version"),
    (b'{"readings": []}', "bad_version"),
    (b'{"v": 1}', "missing_field"),
    (b'{"v": 1, "readings": []}', "missing_field"),
    (b'{"v": 1, "readings": [1], "x": 2}', "bad_schema"),
    (b'{"v": 1, "readings": ["m"]}', "bad_type"),
    (body(power_w=-0.1), "out_of_range"),
    (body(power_w=10_000_000.1), "out_of_range"),
    (body(power_w=1e400), "not_json"),  # json.dumps writes Infinity, which JSON lacks
    (body(power_w="12"), "bad_type"),
    (body(power_w=True), "bad_type"),
    (body(seq="1"), "bad_type"),
    (body(seq=1.5), "bad_type"),
    (body(seq=-1), "out_of_range"),
    (body(meter_id=7), "bad_type"),
    (body(meter_id=""), "bad_value"),
    (body(meter_id="a,b"), "bad_value"),
    (body(meter_id="-1+2"), "bad_value"),  # a formula trigger first (issue 18)
    (body(meter_id="x" * 200), "bad_value"),
    (body(ts=12), "bad_type"),
    (body(ts="yesterday"), "bad_timestamp"),
    (body(ts="2026-06-21T14:10:00"), "bad_timestamp"),
    (body(ts="2026-06-21T14:10:00.5+02:00"), "bad_timestamp"),
])
def test_every_invalid_message_is_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidMessage) as err:
        decode(raw)
    assert err.value.reason == reason
    assert err.value.detail


def test_missing_and_unknown_reading_fields():
    with pytest.raises(InvalidMessage, match="power_w is missing"):
        decode(b'{"v": 1, "readings": [{"meter_id": "m", "seq": 1, "ts": "2026-06-21T14:10:00+02:00"}]}')
    with pytest.raises(InvalidMessage) as err:
        decode(body(extra=1))
    assert err.value.reason == "bad_schema"


def test_oversized_bodies_and_batches_are_refused():
    with pytest.raises(InvalidMessage) as err:
        decode(b" " * (MAX_BODY_BYTES + 1))
    assert err.value.reason == "oversized"
    many = json.dumps({"v": 1, "readings": [{}] * 10001}).encode()
    with pytest.raises(InvalidMessage) as err:
        decode(many)
    assert err.value.reason == "oversized"


def test_the_sender_refuses_what_the_receiver_would_reject():
    with pytest.raises(InvalidMessage):
        encode([reading(power_w=float("nan"))])
    with pytest.raises(InvalidMessage):  # a time no receiver takes: before 1970, after 9999
        encode([reading(instant=-1)])
    with pytest.raises(InvalidMessage):
        encode([reading(instant=MAX_INSTANT + 1)])
    with pytest.raises(ValueError):
        encode([])


def test_the_power_limit_is_the_one_the_caller_configures():
    """limits.max_power_w: 35 kW (a real building) passes the default 10 MW; a smaller limit,
    read from the config by sender and receiver alike, refuses it at both ends."""
    big = [reading(power_w=35_000.0)]
    assert decode(encode(big)) == big
    with pytest.raises(InvalidMessage, match="outside 0-20,000 W"):
        encode(big, max_power_w=20_000.0)
    with pytest.raises(InvalidMessage, match="out_of_range: .*outside 0-20,000 W"):
        decode(encode(big), max_power_w=20_000.0)


# --- version 2: columns (what pvsim-run sends) ------------------------------------------------

def columns(**fields) -> bytes:
    doc = {"v": 2, "meter_ids": ["a", "b"], "seq": [10, 11], "power_w": [[1.0, 2.0], [3.0, 4.5]]}
    doc.update(fields)
    return json.dumps(doc).encode()


def test_columns_carry_the_same_readings_as_version_1_in_the_same_order():
    start = int(TS.timestamp())
    instants = list(range(start, start + 300))
    powers = [[float(i % 90) * 100 for i in range(300)], [1234.5] * 300]
    (body_v2,) = encode_columns(["smart-meter-0", "b"], instants, powers)
    readings = [Reading(m, t, powers[j][i], TZ)
                for i, t in enumerate(instants) for j, m in enumerate(["smart-meter-0", "b"])]
    assert decode_values(body_v2) == decode_values(encode(readings))
    assert [(r.meter_id, r.instant, r.power_w) for r in decode(body_v2)] == \
        [(r.meter_id, r.instant, r.power_w) for r in readings]
    assert all(r.timestamp.tzinfo is dt.timezone.utc for r in decode(body_v2))
    assert len(body_v2) * 5 < len(encode(readings))  # a fifth of the bytes, or less


def test_one_meter_and_integer_powers_decode_to_floats():
    (body_v2,) = encode_columns(["m"], [5, 6], [[0, 7]])
    assert decode_values(body_v2) == [("m", 5, 0.0), ("m", 6, 7.0)]
    assert all(type(p) is float for _, _, p in decode_values(body_v2))


@pytest.mark.parametrize("raw,reason", [
    (columns(extra=1), "bad_schema"),
    (json.dumps({"v": 2, "seq": [1], "power_w": [[1.0]]}).encode(), "missing_field"),
    (columns(meter_ids=[]), "missing_field"),
    (columns(meter_ids="a"), "missing_field"),
    (columns(seq=[]), "missing_field"),
    (columns(meter_ids=["a", 7]), "bad_type"),
    (columns(meter_ids=["a", "a,b"]), "bad_value"),
    (columns(meter_ids=["a", "a"]), "bad_value"),
    (columns(seq=[10, 11.0]), "bad_type"),
    (columns(seq=[10, True]), "bad_type"),
    (columns(seq=[-1, 11]), "out_of_range"),
    (columns(seq=[10, 10 ** 12]), "out_of_range"),
    (columns(power_w=[[1.0, 2.0]]), "bad_schema"),
    (columns(power_w=[[1.0, 2.0], [3.0]]), "bad_schema"),
    (columns(power_w=[[1.0, 2.0], "ab"]), "bad_schema"),
    (columns(power_w=[[1.0, "2"], [3.0, 4.0]]), "bad_type"),
    (columns(power_w=[[1.0, False], [3.0, 4.0]]), "bad_type"),
    (columns(power_w=[[1.0, 2.0], [3.0, -0.5]]), "out_of_range"),
    (columns(power_w=[[1.0, 2.0], [3.0, 5.0]]).replace(b"5.0", b"1e400"), "out_of_range"),  # inf
    (columns(seq=list(range(5001)), power_w=[[1.0] * 5001] * 2), "oversized"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_every_invalid_column_message_is_refused_with_a_reason(raw, reason):
    for decoder in (decode, decode_values):
        with pytest.raises(InvalidMessage) as err:
            decoder(raw)
        assert err.value.reason == reason and err.value.detail


def test_the_column_sender_refuses_what_the_receiver_would_reject():
    nan = float("nan")
    for ids, instants, powers in [(["a"], [1], [[nan]]), (["a"], [1, 2], [[1.0, nan]]),
                                  (["a"], [1], [[-1.0]]), (["a", "a"], [1], [[1.0], [1.0]]),
                                  (["a"], [True], [[1.0]]), (["a"], [1], [[1.0, 2.0]])]:
        with pytest.raises(InvalidMessage):
            list(encode_columns(ids, instants, powers))
    with pytest.raises(InvalidMessage, match="outside 0-20,000 W"):
        list(encode_columns(["a"], [1], [[35_000.0]], max_power_w=20_000.0))


def test_columns_too_many_or_too_large_for_one_message_are_split_into_ones_the_decoder_accepts():
    instants = list(range(1_782_043_200, 1_782_043_200 + 12_000))
    bodies = list(encode_columns(["m"], instants, [[1234.5678901234] * 12_000]))
    assert len(bodies) == 2 and all(len(decode_values(b)) == 6000 for b in bodies)
    meters = [f"meter-{i:04d}-" + "x" * 50 for i in range(10_000)]
    bodies = list(encode_columns(meters, [1], [[1.5]] * 10_000, max_bytes=200_000))
    assert len(bodies) > 1 and all(len(b) <= 200_000 for b in bodies)
    assert [r for b in bodies for r in decode_values(b)] == [(m, 1, 1.5) for m in meters]
