"""Per-day energy aggregates of one meter's readings, and a window's energy per day from them
(`combine`). Pure: fed samples, never reads a file.

- A `MeterDay` holds one meter's readings on one local day: the energy of the trapezoid segments
  with both ends on that day (via energy.EnergyIntegrator), the day's first and last sample and
  the set of instants it holds. The segment from one day's last sample to the next day's first is
  *not* in either day: `combine` computes it when a window is priced, clipped to the window and
  cut at local midnight (values interpolated linearly, each piece's energy
  `energy.segment_kwh`'s, as a day's), each part counting for its own day. A day's figures
  therefore depend on that day's readings only, and a window is always the exact sum of its
  parts, whichever way it is cut.
- `MeterDay.to_json` / `from_json` are the persisted form the store writes beside a CSV.

The store (`readingstore`) keeps MeterDays of the CSVs; pvsim-run keeps them of its rows
(`pvsim.run.aggregators.DayAggregator`). Windows are half-open, [start, end) in epoch seconds;
None is unbounded.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from zoneinfo import ZoneInfo

from pvsim.model.clock import local_midnight
from pvsim.model.energy import EnergyBalance, EnergyIntegrator, Peak, segment_kwh
from pvsim.pipeline.rangeset import RangeSet

Sample = tuple[int, float, float]  # (epoch seconds, meter kW, PV kW)
NEVER_BEFORE = -(1 << 62)
NEVER_AFTER = 1 << 62


class MeterDay:
    """One meter's readings on one local day, aggregated (see the module doc)."""

    __slots__ = ("integrator", "first", "last", "instants", "frozen")

    def __init__(self, max_gap_seconds: float) -> None:
        self.integrator = EnergyIntegrator(max_gap_seconds)
        self.first: Sample | None = None
        self.last: Sample | None = None
        self.instants = RangeSet()
        self.frozen = False  # loaded from an aggregate file: cannot take more samples

    @property
    def balance(self) -> EnergyBalance:
        return self.integrator.balance

    def add(self, instant: int, meter_kw: float, pv_kw: float) -> bool:
        """Take a sample in time order (one already held is ignored); False if it cannot be taken
        incrementally (earlier than the last sample, or a frozen day): rebuild the day then."""
        last = self.last
        if self.frozen or (last is not None and instant <= last[0]):
            return instant in self.instants  # held already: fine; a late or frozen one: rebuild
        self.integrator.add(instant, meter_kw, pv_kw)
        self.instants.add(instant)  # later than every sample: the RangeSet's O(1) path
        sample = (instant, meter_kw, pv_kw)
        if last is None:
            self.first = sample
        self.last = sample
        return True

    def add_many(self, samples: list[Sample]) -> bool:
        """`add` for many samples: in time order, each later than the last one, they are
        integrated in one loop (EnergyIntegrator.add_many); else `add` takes them one by one,
        and answers as it does."""
        last = self.last
        instants = [s[0] for s in samples]
        if (self.frozen or not samples or (last is not None and instants[0] <= last[0])
                or not all(map(operator.lt, instants, islice(instants, 1, None)))):
            return all(self.add(*sample) for sample in samples)
        self.integrator.add_many(samples)
        self.instants.update(instants)
        if last is None:
            self.first = samples[0]
        self.last = samples[-1]
        return True

    @classmethod
    def build(cls, samples: Iterable[Sample], max_gap_seconds: float) -> "MeterDay":
        md = cls(max_gap_seconds)
        md.add_many(sorted(samples, key=lambda s: s[0]))
        return md

    def to_json(self) -> dict:
        b = self.balance
        return {"consumed_kwh": b.consumed_kwh, "pv_kwh": b.pv_kwh, "import_kwh": b.import_kwh,
                "export_kwh": b.export_kwh, "readings": b.readings,
                "first": list(self.first) if self.first else None,
                "last": list(self.last) if self.last else None,
                "peaks": {name: [p.kw, p.instant] for name, p in self._peaks(b).items()
                          if p.instant is not None}}

    @staticmethod
    def _peaks(b: EnergyBalance) -> dict[str, Peak]:
        return {"meter": b.peak_meter, "pv": b.peak_pv, "import": b.peak_import}

    @classmethod
    def from_json(cls, d: dict, max_gap_seconds: float) -> "MeterDay":
        md = cls(max_gap_seconds)
        b = md.balance
        b.consumed_kwh, b.pv_kwh = float(d["consumed_kwh"]), float(d["pv_kwh"])
        b.import_kwh, b.export_kwh = float(d["import_kwh"]), float(d["export_kwh"])
        b.readings = int(d["readings"])
        md.first = (int(d["first"][0]), float(d["first"][1]), float(d["first"][2])) if d["first"] else None
        md.last = (int(d["last"][0]), float(d["last"][1]), float(d["last"][2])) if d["last"] else None
        b.first = md.first[0] if md.first else None
        b.last = md.last[0] if md.last else None
        for name, peak in cls._peaks(b).items():
            if name in d["peaks"]:
                peak.kw, peak.instant = float(d["peaks"][name][0]), int(d["peaks"][name][1])
        md.frozen = True
        return md


@dataclass
class DayPart:
    """What a day contributes to a window: `md` when the day lies inside it, else its samples."""

    day: dt.date
    first: Sample
    last: Sample
    md: MeterDay | None = None
    samples: list[Sample] | None = None
    inside: bool = True  # False: a day outside the window, there for its boundary samples


class _Window:
    """A window [start, end)'s energy per local day: linear segments clipped to it and cut at
    local midnights, whole days' balances and the readings it holds, added into per-day
    balances."""

    def __init__(self, tz: ZoneInfo, max_gap: float, start: int, end: int) -> None:
        self.tz, self.max_gap, self.start, self.end = tz, max_gap, start, end
        self.days: dict[dt.date, EnergyBalance] = {}

    def day(self, day: dt.date) -> EnergyBalance:
        b = self.days.get(day)
        if b is None:
            b = self.days[day] = EnergyBalance()
        return b

    def segment(self, s0: Sample, s1: Sample, day: dt.date | None = None) -> None:
        """The trapezoid between two samples (not bridged past max_gap); `day` when both are
        known to lie on that local day (no midnight to cut at)."""
        t0, t1 = s0[0], s1[0]
        span = t1 - t0
        if span <= 0 or span > self.max_gap:
            return
        a, b = max(t0, self.start), min(t1, self.end)
        if b <= a:
            return
        if day is not None:
            self._piece(day, s0, s1, a, b)
            return
        cur = a
        while cur < b:
            d = dt.datetime.fromtimestamp(cur, self.tz).date()
            nxt = min(b, local_midnight(d + dt.timedelta(days=1), self.tz))
            if nxt <= cur:  # defensive: a zone whose midnight we cannot step past
                nxt = b
            self._piece(d, s0, s1, cur, nxt)
            cur = nxt

    def _piece(self, day: dt.date, s0: Sample, s1: Sample, a: int, b: int) -> None:
        """The part [a, b) of the segment from s0 to s1 (its ends interpolated), into `day`."""
        t0, m0, p0 = s0
        t1, m1, p1 = s1
        if a == t0 and b == t1:
            ma, pa, mb, pb = m0, p0, m1, p1
        else:
            span = t1 - t0
            fa, fb = (a - t0) / span, (b - t0) / span
            ma, pa = m0 + (m1 - m0) * fa, p0 + (p1 - p0) * fa
            mb, pb = m0 + (m1 - m0) * fb, p0 + (p1 - p0) * fb
        consumed, pv, imported, exported = segment_kwh((b - a) / 3600.0, ma, pa, mb, pb)
        out = self.day(day)
        out.consumed_kwh += consumed
        out.pv_kwh += pv
        out.import_kwh += imported
        out.export_kwh += exported

    def count(self, day: dt.date, instants: Iterable[int]) -> None:
        out = None
        for t in instants:
            if self.start <= t < self.end:
                out = out or self.day(day)
                out.readings += 1
                out.first = t if out.first is None else min(out.first, t)
                out.last = t if out.last is None else max(out.last, t)

    def add_day(self, day: dt.date, md: MeterDay) -> None:
        self.day(day).absorb(md.balance)


def combine(parts: list[DayPart], tz: ZoneInfo, max_gap: float, start: int | None = None,
            end: int | None = None) -> dict[dt.date, EnergyBalance]:
    """Per-day energy of one meter in [start, end) from its days, in date order."""
    acc = _Window(tz, max_gap, NEVER_BEFORE if start is None else start,
                  NEVER_AFTER if end is None else end)
    previous: Sample | None = None
    for part in parts:
        if part.inside and part.md is not None:
            acc.add_day(part.day, part.md)
        elif part.inside and part.samples:
            s = part.samples
            for i in range(1, len(s)):
                acc.segment(s[i - 1], s[i], part.day)
            acc.count(part.day, (x[0] for x in s))
        if previous is not None:
            acc.segment(previous, part.first)  # across midnight(s): clipped and cut per day
        previous = part.last
    return dict(sorted(acc.days.items()))
