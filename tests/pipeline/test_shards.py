"""A fleet's shards in the pipeline: shard files, the shard check, a run's ShardSet and the lock
that keeps one writer per shard."""

from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pvsim.model.pvcurve import PvCurve
from pvsim.model.shard import shard_of
from pvsim.pipeline.csvformat import all_day_files, day_files, file_name
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.messages import InvalidMessage, encode_columns
from pvsim.pipeline.pvservice import PvService
from pvsim.pipeline.shardlock import ShardLock
from pvsim.pipeline.shardset import ShardSet

TZ = ZoneInfo("Europe/Madrid")
DAY = dt.date(2026, 6, 21)
START = int(dt.datetime(2026, 6, 21, 12, tzinfo=TZ).timestamp())
METERS = [f"meter-{i:06d}" for i in range(1, 41)]


def body(meters: list[str], instants: list[int]) -> bytes:
    return next(encode_columns(meters, instants, [[100.0 + i] * len(instants)
                                                  for i, _ in enumerate(meters)]))


def lines(directory: Path) -> collections.Counter:
    return collections.Counter(line for _, _, p in all_day_files(directory)
                               for line in p.read_text().splitlines()[1:])


def shard_set(directory: Path, shards: int) -> ShardSet:
    return ShardSet(lambda shard: PvService(PvCurve(TZ), CsvSink(directory, shard=shard), TZ,
                                            shards=shards), shards)


def test_shard_files_are_named_and_listed_per_shard(tmp_path):
    assert file_name(DAY) == "pvsim-2026-06-21.csv"
    assert file_name(DAY, 3) == "pvsim-2026-06-21.s03.csv"
    for name in ("pvsim-2026-06-21.csv", "pvsim-2026-06-21.s03.csv", "pvsim-2026-06-22.s10.csv",
                 "pvsim-2026-02-30.s01.csv", "pvsim-2026-06-21.s3.csv", "notes.csv"):
        (tmp_path / name).write_text("")
    assert [p.name for _, p in day_files(tmp_path)] == ["pvsim-2026-06-21.csv"]
    assert [p.name for _, p in day_files(tmp_path, 3)] == ["pvsim-2026-06-21.s03.csv"]
    assert [(d.isoformat(), s) for d, s, _ in all_day_files(tmp_path)] == [
        ("2026-06-21", None), ("2026-06-21", 3), ("2026-06-22", 10)]


def test_a_run_writes_each_meter_to_its_shard_and_the_same_rows_as_without_shards(tmp_path):
    instants = list(range(START, START + 30))
    plain, sharded = shard_set(tmp_path / "plain", 1), shard_set(tmp_path / "sharded", 4)
    for services in (plain, sharded):
        services.handle(body(METERS, instants))  # a message mixing every shard: split
        services.sync()
        services.close()
    assert lines(tmp_path / "plain") == lines(tmp_path / "sharded")
    assert sharded.rows_total == plain.rows_total == len(METERS) * len(instants)
    for day, shard, path in all_day_files(tmp_path / "sharded"):
        meters = {line.split(",")[1] for line in path.read_text().splitlines()[1:]}
        assert meters and all(shard_of(m, 4) == shard for m in meters)
    # Redelivered, nothing is written twice.
    sharded.handle(body(METERS, instants[:5]))
    assert sharded.rows_total == plain.rows_total


def test_a_shard_refuses_another_shards_meter_before_writing_any_row(tmp_path):
    service = PvService(PvCurve(TZ), CsvSink(tmp_path, shard=1), TZ, shards=4)
    mine = [m for m in METERS if shard_of(m, 4) == 1]
    other = next(m for m in METERS if shard_of(m, 4) != 1)
    service.handle(body(mine[:2], [START]))
    with pytest.raises(InvalidMessage) as caught:
        service.handle(body([mine[0], other], [START + 1]))
    assert caught.value.reason == "wrong_shard" and other in caught.value.detail
    service.sync()
    assert service.rows_total == 2 and len(lines(tmp_path)) == 2


HOLDER = """
import sys, time
from pvsim.pipeline.shardlock import ShardLock
lock = ShardLock(sys.argv[1], 5)
assert lock.try_take()
print("held", flush=True)
time.sleep(60)
"""


def test_one_process_at_a_time_holds_a_shard_and_a_killed_holder_frees_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env={"PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline() == "held\n"
        lock = ShardLock(tmp_path, 5)
        assert not lock.try_take()
        assert ShardLock(tmp_path, 6).try_take()  # another shard is free
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert lock.try_take() and lock.try_take()  # held, also when asked again
        assert not ShardLock(tmp_path, 5).try_take()  # by this one only
        lock.release()
    finally:
        holder.kill()
        holder.wait(10)
    events = [line.split()[1::2] for line in (tmp_path / ".pvsim-s05.owners").read_text().splitlines()]
    assert events == [["taken", str(holder.pid)], ["taken", str(os.getpid())],
                      ["released", str(os.getpid())]]
    other = ShardLock(tmp_path, 5)
    assert other.try_take()  # released
    other.release()
