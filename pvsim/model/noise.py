"""Deterministic noise: the same (seed, key) always gives the same number, in any process.

The meter and the PV models draw their randomness from a hash of the seed and the instant instead
of from a stateful generator. A reading at a given instant is then the same whether the run
started at midnight or at noon, after a restart or in another mode, which is what makes "same
seed, same readings" hold for the daemons as well as for the accelerated run. SplitMix64 is a
few integer operations: fast enough for 86,400 readings in well under a second.
"""

from __future__ import annotations

import math
from functools import lru_cache

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """SplitMix64 finaliser: a bijective scramble of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def unit(seed: int, key: int, stream: int = 0) -> float:
    """A uniform number in [0, 1) for (seed, stream, key)."""
    return Stream(seed, stream).unit(key)


class Stream:
    """`unit` for one (seed, stream): the half of the hash that depends on them is done once,
    which is a fifth of a meter's cost per reading."""

    def __init__(self, seed: int, stream: int = 0) -> None:
        self._base = _mix((seed * 0x100000001B3 + stream) & _MASK)

    def unit(self, key: int) -> float:
        """A uniform number in [0, 1) for `key` (an instant, a knot's index)."""
        return (_mix((self._base + key) & _MASK) >> 11) * (1.0 / (1 << 53))


def smooth(seed: int, t: float, period: float, stream: int = 0) -> float:
    """Value noise in [0, 1): uniform knots every `period` seconds, eased in between.

    Gives slowly varying fluctuations (clouds passing, appliances cycling) instead of the
    independent jumps that `unit` gives from one second to the next.
    """
    return Smooth(seed, period, stream).at(t)


class Smooth:
    """`smooth` for one (seed, period, stream), keeping the two knots around the last `t`:
    readings come in time order, so most calls reuse them."""

    def __init__(self, seed: int, period: float, stream: int = 0) -> None:
        self.seed, self.period, self.stream = seed, period, stream
        self._k = self._a = self._b = math.nan

    def at(self, t: float) -> float:
        """The noise at `t` [s], in [0, 1)."""
        k, frac = divmod(t / self.period, 1.0)
        if k != self._k:
            self._k = k
            self._a = _knot(self.seed, int(k), self.stream)
            self._b = _knot(self.seed, int(k) + 1, self.stream)
        w = frac * frac * (3.0 - 2.0 * frac)  # smoothstep: no kinks at the knots
        return self._a + (self._b - self._a) * w


def cloud_cover(seed: int, instant: float) -> float:
    """How much of the sky's light passing clouds take away: a slow drift over ten minutes and
    faster gusts over tens of seconds, the same for a seed whatever the PV model.

    Parameters
    ----------
    seed : int
        The PV noise seed (`pv.seed`).
    instant : float
        Epoch seconds [s].

    Returns
    -------
    cover : float
        The share of the light taken [unitless], in [0, 1).
    """
    return 0.7 * smooth(seed, instant, 600.0, stream=1) + 0.3 * smooth(seed, instant, 45.0, stream=2)


@lru_cache(maxsize=4096)
def _knot(seed: int, k: int, stream: int) -> float:
    """Knots repeat for every second of their period: computing each once halves a day's cost."""
    return unit(seed, k, stream)
