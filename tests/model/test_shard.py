"""Shards: one stable function of the meter id, the same in every process and release."""

from __future__ import annotations

import subprocess
import sys
import zlib

from hypothesis import given, settings, strategies as st

from pvsim.model import shard
from pvsim.model.reading import Reading


def test_a_meters_shard_is_crc32_of_its_id_and_never_changes():
    # Fixed values: a release that changed them would move meters to other files.
    assert [shard.shard_of(f"meter-{i:06d}", 16) for i in range(1, 9)] == [
        zlib.crc32(f"meter-{i:06d}".encode()) % 16 for i in range(1, 9)]
    assert shard.shard_of("smart-meter-0", 16) == 2
    assert shard.shard_of("smart-meter-0", 1) == 0


def test_the_shard_is_the_same_in_another_process_with_another_hash_seed():
    code = "from pvsim.model.shard import shard_of; print(shard_of('meter-000042', 16))"
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={"PYTHONPATH": ".", "PYTHONHASHSEED": seed},
                              check=True).stdout.strip() for seed in ("1", "2", "3")}
    assert outputs == {str(shard.shard_of("meter-000042", 16))}


@settings(max_examples=200, derandomize=True, database=None)
@given(st.integers(1, 1000), st.integers(1, 1000))
def test_the_instances_own_every_shard_once(shards, instances):
    instances = min(instances, shards)
    owned = [s for k in range(instances) for s in shard.owned(k, instances, shards)]
    assert sorted(owned) == list(range(shards))
    assert max(len(shard.owned(k, instances, shards)) for k in range(instances)) - \
        min(len(shard.owned(k, instances, shards)) for k in range(instances)) <= 1


def test_meters_of_and_by_shard_keep_the_order():
    ids = [f"meter-{i:06d}" for i in range(1, 201)]
    mine = shard.meters_of(ids, [0, 3], 4)
    assert mine == [m for m in ids if shard.shard_of(m, 4) in (0, 3)]
    readings = [Reading(m, t, 1.0) for t in (10, 11) for m in ids[:20]]
    groups = shard.by_shard(readings, 4)
    assert [s for s, _ in groups] == sorted({shard.shard_of(m, 4) for m in ids[:20]})
    for s, part in groups:
        assert part == [r for r in readings if shard.shard_of(r.meter_id, 4) == s]
    assert shard.by_shard(readings, 1) == [(0, readings)]
    assert shard.label(7) == "s07" and shard.label(123) == "s123"
