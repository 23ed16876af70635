"""The PV services of every shard behind the one face a transport drives (pvsim-run).

pvsim-run writes a whole fleet in one process: the readings of each meter go to its shard's
PvService and from there to that shard's files, as a fleet of pvsim-pv would write them, so a
run's files and a fleet's are the same files. Without shards it is one service writing the
plain daily files. The run sends each shard's meters in messages of their own, so a message
goes to one service whole; a message mixing shards (from another sender) is split in order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pvsim.model.shard import shard_of
from pvsim.pipeline.messages import MAX_POWER_W, decode_values
from pvsim.pipeline.pvservice import Outcome, PvService


class ShardSet:
    """`make(shard)` builds a shard's service (shard None: no shards) when it is first needed."""

    def __init__(self, make: Callable[[int | None], PvService], shards: int = 1,
                 max_power_w: float = MAX_POWER_W) -> None:
        self.make, self.shards, self.max_power_w = make, shards, max_power_w
        self.services: dict[int | None, PvService] = {}
        self._shard: dict[str, int] = {}

    @property
    def rows_total(self) -> int:
        return sum(s.rows_total for s in self.services.values())

    @property
    def paths(self) -> list[Path]:
        """Every file written, shard by shard."""
        return [p for _, s in sorted(self.services.items(), key=lambda i: i[0] or 0)
                for p in s.sink.paths]

    def service(self, shard: int | None) -> PvService:
        found = self.services.get(shard)
        if found is None:
            found = self.services[shard] = self.make(shard)
        return found

    def handle(self, body: bytes, redelivered: bool = False) -> Outcome:
        """Process one message body; raises messages.InvalidMessage for the dead-letter queue.
        (`redelivered` matters to pvsim-pv's crash record only, not to a run's private queue.)"""
        values = decode_values(body, self.max_power_w)
        if self.shards == 1:
            return self.service(None).write_values(values)
        shard, homes = self._shard, set()
        for meter_id in {v[0] for v in values}:
            home = shard.get(meter_id)
            if home is None:
                home = shard[meter_id] = shard_of(meter_id, self.shards)
            homes.add(home)
        if len(homes) == 1:
            return self.service(homes.pop()).write_values(values)
        outcome = Outcome()
        groups: dict[int, list[tuple[str, int, float]]] = {}
        for value in values:
            groups.setdefault(shard[value[0]], []).append(value)
        for home, group in groups.items():
            part = self.service(home).write_values(group)
            outcome.written += part.written
            outcome.duplicates += part.duplicates
        return outcome

    def sync(self) -> None:
        for service in self.services.values():
            service.sync()

    def close(self) -> None:
        for service in self.services.values():
            service.sink.close()
