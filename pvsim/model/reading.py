"""A meter reading: the value every part of pvsim passes along, from the meter model to the CSV.

Its identity is (meter_id, instant): `seq` is the instant in epoch seconds, which grows per meter
and, unlike a counter, survives restarts of either daemon, so a reading produced again after a
restart is recognised as the same reading. `pvsim.pipeline.messages` is its wire format.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reading:
    meter_id: str
    seq: int
    timestamp: dt.datetime  # timezone-aware, on a whole second
    power_w: float

    @property
    def instant(self) -> int:
        """Epoch seconds: the reading's identity within its meter."""
        return int(self.timestamp.timestamp())
