"""The building's grid meter: a power in W for any instant, pure and seeded.

`building` (the default) is a plausible commercial building: a low base load at night, a ramp at
the start of the working day, a plateau with a lunch dip, a slow decline in the evening, and less
at weekends; on top of it, slowly varying fluctuations (HVAC and appliances cycling) and a little
second-to-second jitter. `uniform` is the challenge's original: any value in [0, max_w] W.
Both are bounded by `max_w` (meter.max_w, 9000 W by default: the challenge's meter).

Randomness comes from `pvsim.model.noise`, keyed by seed, meter id and instant, so a reading depends
only on those three: the same seed gives the same readings in every mode and across restarts.
"""

from __future__ import annotations

import bisect
import datetime as dt
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal
from zoneinfo import ZoneInfo

from pvsim.model import noise
from pvsim.model.reading import Reading

MAX_W = 9000.0  # the challenge's meter: meter.max_w's default

# Working-day profile (local time of day "HH:MM", W), linear in between.
_WEEKDAY = (("00:00", 900), ("05:30", 900), ("07:00", 2600), ("09:00", 5600), ("12:00", 6200),
            ("13:00", 5200), ("14:00", 6000), ("17:00", 5400), ("19:00", 2800), ("22:00", 1200),
            ("24:00", 900))
_WEEKEND_FACTOR = 0.45


def _knots(profile: tuple[tuple[str, int], ...]) -> tuple[list[int], list[float]]:
    xs = [int(t[:2]) * 3600 + int(t[3:]) * 60 for t, _ in profile]
    return xs, [float(w) for _, w in profile]


_X, _Y = _knots(_WEEKDAY)


class MeterModel:
    """Power in W drawn by the building at an instant; 0 <= W <= max_w (clipped there)."""

    def __init__(self, meter_id: str, seed: int,
                 model: Literal["building", "uniform"] = "building", max_w: float = MAX_W) -> None:
        if model not in ("building", "uniform"):
            raise ValueError(f"unknown meter model {model!r}")
        self.meter_id, self.seed, self.model, self.max_w = meter_id, seed, model, max_w
        # Each meter gets its own stream, so two meters with one seed do not move in lockstep.
        self._key = (seed * 1_000_003 + zlib.crc32(meter_id.encode())) & ((1 << 63) - 1)

    def power_w(self, instant: int, local: dt.datetime) -> float:
        """The reading at epoch second `instant`, whose local time is `local`."""
        if self.model == "uniform":
            return round(noise.unit(self._key, instant) * self.max_w, 1)
        s = local.hour * 3600 + local.minute * 60 + local.second
        i = bisect.bisect_right(_X, s) - 1
        base = _Y[i] + (_Y[i + 1] - _Y[i]) * (s - _X[i]) / (_X[i + 1] - _X[i])
        if local.weekday() >= 5:
            base = 800.0 + (base - 800.0) * _WEEKEND_FACTOR
        slow = noise.smooth(self._key, instant, 900.0, stream=1) - 0.5    # +-50 % over ~15 min
        mid = noise.smooth(self._key, instant, 60.0, stream=2) - 0.5      # appliances cycling
        jitter = noise.unit(self._key, instant, stream=3) - 0.5          # second to second
        watts = base * (1.0 + 0.35 * slow + 0.15 * mid) + 250.0 * jitter
        return round(min(self.max_w, max(0.0, watts)), 1)


def read(models: Sequence[MeterModel], instants: Iterable[int], tz: ZoneInfo) -> Iterator[Reading]:
    """The meters' readings at each instant, timestamped in local time: what a meter publishes."""
    for instant in instants:
        local = dt.datetime.fromtimestamp(instant, tz)
        for model in models:
            yield Reading(model.meter_id, instant, local, model.power_w(instant, local))
