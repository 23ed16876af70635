"""A fleet's readings behind the face of one ReadingStore: one store per shard, each meter's
queries sent to its shard's store.

With `fleet.shards` above 1 a meter's rows are in its shard's files only
(`pvsim-YYYY-MM-DD.sNN.csv`, `model.shard.shard_of`), so a query for a meter needs that shard's
days and no other: each shard's store loads, persists and catches up with its own files, and a
query never reads another shard's. `store_for` gives pvsim-pv's API what the config asks for: a
plain ReadingStore without shards (nothing in between, so a single pvsim-pv is as it was), a
ShardedStore with them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pvsim.config import Config
from pvsim.model.energy import EnergyBalance
from pvsim.model.shard import shard_of
from pvsim.pipeline.csvformat import Row
from pvsim.store.readingstore import ReadingStore


class ShardedStore:
    """ReadingStore's queries over one store per shard, routed by the meter's shard."""

    def __init__(self, directory: str | Path, tz: ZoneInfo, max_gap_seconds: float = 3600.0, *,
                 shards: int, **options: Any) -> None:
        self.stores = [ReadingStore(directory, tz, max_gap_seconds, shard=k, **options)
                       for k in range(shards)]

    def of(self, meter_id: str) -> ReadingStore:
        """The store of a meter's shard."""
        return self.stores[shard_of(meter_id, len(self.stores))]

    def on_row(self, row: Row, nbytes: int) -> None:
        """PvService listener: the row goes to its meter's shard."""
        self.of(row.meter_id).on_row(row, nbytes)

    def meters(self) -> set[str]:
        return set().union(*(store.meters() for store in self.stores))

    def has_meter(self, meter_id: str) -> bool:
        return self.of(meter_id).has_meter(meter_id)

    def energy_by_day(self, meter_id: str, start: int | None = None,
                      end: int | None = None) -> dict[dt.date, EnergyBalance]:
        return self.of(meter_id).energy_by_day(meter_id, start, end)

    def readings(self, meter_id: str, start: int | None = None, end: int | None = None,
                 limit: int = 10_000) -> list[tuple[int, float]]:
        return self.of(meter_id).readings(meter_id, start, end, limit)

    def forget(self, day: dt.date) -> None:
        """Drop a removed day from every shard's store (retention removes all shards' files)."""
        for store in self.stores:
            store.forget(day)


Store = ReadingStore | ShardedStore


def store_for(directory: str | Path, cfg: Config, **options: Any) -> Store:
    """The store over the CSV directory that `cfg.fleet.shards` lays out."""
    if cfg.fleet.shards > 1:
        return ShardedStore(directory, cfg.tz, cfg.pricing.max_gap_seconds,
                            shards=cfg.fleet.shards, **options)
    return ReadingStore(directory, cfg.tz, cfg.pricing.max_gap_seconds, **options)
