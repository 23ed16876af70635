"""The building's grid meter: a power in W for any instant, pure and seeded.

A MeterModel bounds what its Load draws to [0, max_w] (meter.max_w, 9000 W by default: the
challenge's meter). The loads, one per `meter.model`:
- `building` (the default): a plausible commercial building: a low base load at night, a ramp at
  the start of the working day, a plateau with a lunch dip, a slow decline in the evening, and
  less at weekends; on top of it, slowly varying fluctuations (HVAC and appliances cycling) and a
  little second-to-second jitter;
- `uniform`: the challenge's original, any value in [0, max_w) W;
- `slp`: a BDEW standard load profile (pvsim.model.loadprofile) with the same fluctuations;
- `series`: a recorded consumption series (pvsim.model.series), replayed as it is.

Randomness comes from `pvsim.model.noise`, keyed by seed, meter id and instant, so a reading depends
only on those three: the same seed gives the same readings in every mode and across restarts.
"""

from __future__ import annotations

import bisect
import datetime as dt
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol
from zoneinfo import ZoneInfo

from pvsim.model import noise
from pvsim.model.loadprofile import StandardLoadProfile
from pvsim.model.reading import Reading
from pvsim.model.series import Series

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


class Fluctuation:
    """A meter's own randomness, keyed by its seed and id: three mean-zero variations in
    [-0.5, 0.5) (slow, HVAC over ~15 min; appliances cycling over ~1 min; second-to-second
    jitter) and a uniform draw. One per meter, as it keeps the noise's current knots."""

    def __init__(self, key: int) -> None:
        self._slow, self._mid = noise.Smooth(key, 900.0, 1), noise.Smooth(key, 60.0, 2)
        self._uniform, self._jitter = noise.Stream(key, 0), noise.Stream(key, 3)

    def at(self, instant: int) -> tuple[float, float, float]:
        """(slow, mid, jitter) at epoch second `instant` [s], each in [-0.5, 0.5) [unitless]."""
        return (self._slow.at(instant) - 0.5, self._mid.at(instant) - 0.5,
                self._jitter.unit(instant) - 0.5)

    def uniform(self, instant: int) -> float:
        """A uniform draw in [0, 1) [unitless] at epoch second `instant` [s]."""
        return self._uniform.unit(instant)


class Load(Protocol):
    """What a model of the building's consumption provides: the W drawn at an instant, before
    MeterModel bounds it to [0, max_w], varied by the meter's own `fluctuation`. One load
    serves every meter of a run."""

    def watts(self, fluctuation: Fluctuation, instant: int, local: dt.datetime) -> float:
        """The power the building draws at an instant.

        Parameters
        ----------
        fluctuation : Fluctuation
            The meter's own randomness.
        instant : int
            Epoch seconds [s].
        local : datetime.datetime
            The instant's aware local time in the meters' zone.

        Returns
        -------
        power_w : float
            Power drawn [W], before MeterModel bounds it.
        """


class Building:
    """The default: a plausible commercial building (the module's docstring)."""

    def watts(self, fluctuation: Fluctuation, instant: int, local: dt.datetime) -> float:
        """The working-day curve (less at weekends) with the fluctuations: `Load.watts` [W]."""
        s = local.hour * 3600 + local.minute * 60 + local.second
        i = bisect.bisect_right(_X, s) - 1
        base = _Y[i] + (_Y[i + 1] - _Y[i]) * (s - _X[i]) / (_X[i + 1] - _X[i])
        if local.weekday() >= 5:
            base = 800.0 + (base - 800.0) * _WEEKEND_FACTOR
        slow, mid, jitter = fluctuation.at(instant)
        return base * (1.0 + 0.35 * slow + 0.15 * mid) + 250.0 * jitter


class Uniform:
    """The challenge's original: any value in [0, max_w), independently each second."""

    def __init__(self, max_w: float) -> None:
        self.max_w = max_w  # [W]

    def watts(self, fluctuation: Fluctuation, instant: int, local: dt.datetime) -> float:
        """A uniform draw in [0, max_w) [W]: `Load.watts`."""
        return fluctuation.uniform(instant) * self.max_w


class Profiled:
    """A standard load profile (`slp`) with the seeded fluctuation on top. The fluctuation is
    relative (it never goes below 70 % of the profile), so a household's 150 W at night is
    never clipped to 0 and the year keeps the profile's energy."""

    def __init__(self, profile: StandardLoadProfile) -> None:
        self.profile = profile

    def watts(self, fluctuation: Fluctuation, instant: int, local: dt.datetime) -> float:
        """The profile's power at `local` times the fluctuation [W]: `Load.watts`."""
        slow, mid, jitter = fluctuation.at(instant)
        return self.profile.power_w(local) * (1.0 + 0.35 * slow + 0.15 * mid + 0.1 * jitter)


class Recorded:
    """A recorded series (`series`, in kW) replayed as it is: real data has its own
    fluctuation, and what the building really drew is what the engineer wants to study."""

    def __init__(self, series: Series) -> None:
        self.series = series

    def watts(self, fluctuation: Fluctuation, instant: int, local: dt.datetime) -> float:
        """The series at `instant` [kW], in W: `Load.watts`."""
        return self.series.at(instant) * 1000.0


class MeterModel:
    """One meter: the power its building draws at an instant, bounded to [0, max_w].

    Parameters
    ----------
    meter_id : str
        The meter's id: with the seed, the key of its randomness.
    seed : int
        The run's seed (`meter.seed`).
    load : Load or None, default None
        The building's consumption model; None: `Building`.
    max_w : float, default MAX_W
        The most the meter reads [W] (`meter.max_w`); more is clipped.
    """

    def __init__(self, meter_id: str, seed: int, load: Load | None = None,
                 max_w: float = MAX_W) -> None:
        self.meter_id, self.seed, self.max_w = meter_id, seed, max_w
        self.load = Building() if load is None else load
        # Each meter gets its own stream, so two meters with one seed do not move in lockstep.
        self._fluctuation = Fluctuation((seed * 1_000_003 + zlib.crc32(meter_id.encode()))
                                        & ((1 << 63) - 1))

    def power_w(self, instant: int, local: dt.datetime) -> float:
        """The reading at an instant.

        Parameters
        ----------
        instant : int
            Epoch seconds [s].
        local : datetime.datetime
            The instant's aware local time.

        Returns
        -------
        power_w : float
            Meter power [W], 0 to max_w, to 0.1 W.
        """
        watts = self.load.watts(self._fluctuation, instant, local)
        return round(min(self.max_w, max(0.0, watts)), 1)


def columns(models: Sequence[MeterModel], instants: Sequence[int], tz: ZoneInfo) -> list[list[float]]:
    """The meters' readings at `instants` as columns: what `read` gives, without a Reading per
    value (an accelerated run's 31.5 million a year, sent as columns).

    Parameters
    ----------
    models : sequence of MeterModel
        The meters.
    instants : sequence of int
        Epoch seconds [s].
    tz : zoneinfo.ZoneInfo
        The meters' time zone.

    Returns
    -------
    columns : list of list of float
        Per meter, its power [W] at each instant.
    """
    local = [dt.datetime.fromtimestamp(instant, tz) for instant in instants]
    return [[model.power_w(t, at) for t, at in zip(instants, local)] for model in models]


def read(models: Sequence[MeterModel], instants: Iterable[int], tz: ZoneInfo) -> Iterator[Reading]:
    """The meters' readings at each instant, told in local time: what a meter publishes.

    Parameters
    ----------
    models : sequence of MeterModel
        The meters.
    instants : iterable of int
        Epoch seconds [s].
    tz : zoneinfo.ZoneInfo
        The meters' time zone: the readings' `tz`.

    Yields
    ------
    reading : Reading
        Instant by instant, meter by meter; power in W.
    """
    for instant in instants:
        local = dt.datetime.fromtimestamp(instant, tz)
        for model in models:
            yield Reading(model.meter_id, instant, model.power_w(instant, local), tz)
