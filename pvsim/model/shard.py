"""Shards: which logical shard a meter belongs to, and which shards a program instance owns.

A fleet spreads its meters over `fleet.shards` shards. A meter's shard is crc32 of its id modulo
the shard count: stable across processes, hosts, Python versions and restarts (Python's own
`hash()` of a string is salted per process, so two programs would disagree). Every program
(pvsim-meter, pvsim-pv, pvsim-run, the JOI API) calls this one function, so a meter's readings
always travel through the same queue and land in the same shard's files.

pvsim-meter instance k of M simulates the meters of shards k, k+M, k+2M, ...: the instances
share the shards, and with them the meters, without talking to each other.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

from pvsim.model.reading import Reading

MAX_SHARDS = 1000


def shard_of(meter_id: str, shards: int) -> int:
    """The shard of a meter: crc32 of its id (UTF-8) modulo `shards`."""
    return zlib.crc32(meter_id.encode()) % shards if shards > 1 else 0


def label(shard: int) -> str:
    """A shard's name in queue and file names: s00, s07, s15 (three digits past 99)."""
    return f"s{shard:02d}"


def owned(instance: int, instances: int, shards: int) -> list[int]:
    """The shards instance `instance` (0-based) of `instances` owns: every instances-th one."""
    return list(range(instance, shards, instances))


def meters_of(meter_ids: Iterable[str], shards: Iterable[int], count: int) -> list[str]:
    """The meters (in their given order) whose shard, out of `count`, is one of `shards`."""
    wanted = set(shards)
    return [m for m in meter_ids if shard_of(m, count) in wanted]


def by_shard(readings: Sequence[Reading], shards: int,
             known: dict[str, int] | None = None) -> list[tuple[int, list[Reading]]]:
    """The readings of each shard, each list in the readings' order, shards in order (one
    list without shards). `known` caches meters' shards between calls."""
    if shards == 1:
        return [(0, list(readings))]
    known = {} if known is None else known
    groups: dict[int, list[Reading]] = {}
    for r in readings:
        home = known.get(r.meter_id)
        if home is None:
            home = known[r.meter_id] = shard_of(r.meter_id, shards)
        groups.setdefault(home, []).append(r)
    return sorted(groups.items())
