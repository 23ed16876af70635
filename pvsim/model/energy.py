"""Energy from power: pure computation shared by the run summary and the JOI API.

Readings are power samples (kW at an instant). Energy is their integral over time: the trapezoid
between consecutive samples of one meter, except across a gap longer than `max_gap_seconds`,
which is not bridged (a meter that was off for hours did not draw its last value all that time).
Net power (meter - PV) is split into grid import (net > 0) and export (net < 0); where net changes
sign within a segment, the segment is cut at the linear zero crossing so neither side is blurred.

`segment_kwh` is that computation for one segment, the only one: `EnergyIntegrator` runs it over
a meter's samples in time order (a day of the store or of a run), and the store's windows over
the pieces of a segment they cut (pvsim.store.aggregates).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field


@dataclass
class Peak:
    kw: float = float("-inf")
    instant: int | None = None

    def merge(self, other: "Peak") -> None:
        if other.kw > self.kw:
            self.kw, self.instant = other.kw, other.instant


@dataclass
class EnergyBalance:
    """Energy figures over a span of readings of one meter (kWh unless named otherwise)."""

    consumed_kwh: float = 0.0
    pv_kwh: float = 0.0
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    readings: int = 0
    first: int | None = None
    last: int | None = None
    peak_meter: Peak = field(default_factory=Peak)
    peak_pv: Peak = field(default_factory=Peak)
    peak_import: Peak = field(default_factory=Peak)

    @property
    def self_consumed_kwh(self) -> float:
        """PV energy used on site: what the plant produced minus what went to the grid."""
        return max(0.0, self.pv_kwh - self.export_kwh)

    @property
    def self_consumption(self) -> float | None:
        """Share of the PV energy used on site (None without PV)."""
        return self.self_consumed_kwh / self.pv_kwh if self.pv_kwh > 0 else None

    @property
    def self_sufficiency(self) -> float | None:
        """Share of the consumption covered by PV (None without consumption)."""
        return self.self_consumed_kwh / self.consumed_kwh if self.consumed_kwh > 0 else None

    def absorb(self, other: "EnergyBalance") -> None:
        """Add another span's figures to this one: energies and counts add, peaks and bounds merge."""
        self.consumed_kwh += other.consumed_kwh
        self.pv_kwh += other.pv_kwh
        self.import_kwh += other.import_kwh
        self.export_kwh += other.export_kwh
        self.readings += other.readings
        if other.first is not None:
            self.first = other.first if self.first is None else min(self.first, other.first)
        if other.last is not None:
            self.last = other.last if self.last is None else max(self.last, other.last)
        self.peak_meter.merge(other.peak_meter)
        self.peak_pv.merge(other.peak_pv)
        self.peak_import.merge(other.peak_import)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(self_consumed_kwh=self.self_consumed_kwh, self_consumption=self.self_consumption,
                 self_sufficiency=self.self_sufficiency)
        return d


def segment_kwh(hours: float, m0: float, p0: float, m1: float,
                p1: float) -> tuple[float, float, float, float]:
    """(consumed, PV, import, export) kWh of one linear segment of `hours` hours, from meter and
    PV power `m0` and `p0` kW at its start to `m1` and `p1` kW at its end.

    The one trapezoid behind every energy figure: the run's and the store's days
    (`EnergyIntegrator.add_many`) and the pieces of a window cut at its ends and at local
    midnights (`store.aggregates`). Net power (meter - PV) is split into grid import (net > 0)
    and export (net < 0); where it changes sign, the segment is cut at the linear zero crossing.
    It runs once per sample of a run, so the split is written out here rather than called."""
    n0, n1 = m0 - p0, m1 - p1
    if n0 >= 0 and n1 >= 0:
        imported, exported = (n0 + n1) / 2 * hours, 0.0
    elif n0 <= 0 and n1 <= 0:
        imported, exported = 0.0, -(n0 + n1) / 2 * hours
    else:
        cross = n0 / (n0 - n1)  # fraction of the segment before net crosses zero
        pos, neg = (n0, n1) if n0 > 0 else (n1, n0)
        pos_frac = cross if n0 > 0 else 1.0 - cross
        imported, exported = pos / 2 * hours * pos_frac, -neg / 2 * hours * (1.0 - pos_frac)
    return (m0 + m1) / 2 * hours, (p0 + p1) / 2 * hours, imported, exported


class EnergyIntegrator:
    """Accumulates an EnergyBalance from one meter's samples, fed in time order."""

    def __init__(self, max_gap_seconds: float = 3600.0) -> None:
        self.max_gap = max_gap_seconds
        self.balance = EnergyBalance()
        self._prev: tuple[int, float, float] | None = None

    def add(self, instant: int, meter_kw: float, pv_kw: float) -> None:
        self.add_many(((instant, meter_kw, pv_kw),))

    def add_many(self, samples: Iterable[tuple[int, float, float]]) -> None:
        """Take samples in time order; one not later than the previous one is skipped.

        The one loop behind every day's energy (each segment's is `segment_kwh`'s), and it runs
        for every row of a run (31.5 million in a year at 1-second steps): the sums and peaks are
        kept in local variables and written back once."""
        b = self.balance
        consumed, pv, imported, exported = b.consumed_kwh, b.pv_kwh, b.import_kwh, b.export_kwh
        readings, first, last = b.readings, b.first, b.last
        peak_meter, peak_pv, peak_import = b.peak_meter, b.peak_pv, b.peak_import
        meter_top, meter_at = peak_meter.kw, peak_meter.instant
        pv_top, pv_at = peak_pv.kw, peak_pv.instant
        import_top, import_at = peak_import.kw, peak_import.instant
        max_gap, prev = self.max_gap, self._prev
        kwh = segment_kwh  # a local name: one dictionary lookup less a sample
        for sample in samples:
            instant, meter_kw, pv_kw = sample
            net = meter_kw - pv_kw
            if prev is not None:
                t0, m0, p0 = prev
                span = instant - t0
                if span <= 0:
                    continue  # not later than the previous sample: nothing to integrate
                if span <= max_gap:
                    c, p, i, e = kwh(span / 3600.0, m0, p0, meter_kw, pv_kw)
                    consumed += c
                    pv += p
                    imported += i
                    exported += e
            else:
                first = instant
            last = instant
            readings += 1
            if meter_kw > meter_top:
                meter_top, meter_at = meter_kw, instant
            if pv_kw > pv_top:
                pv_top, pv_at = pv_kw, instant
            if net > import_top:
                import_top, import_at = net, instant
            prev = sample
        b.consumed_kwh, b.pv_kwh, b.import_kwh, b.export_kwh = consumed, pv, imported, exported
        b.readings, b.first, b.last = readings, first, last
        peak_meter.kw, peak_meter.instant = meter_top, meter_at
        peak_pv.kw, peak_pv.instant = pv_top, pv_at
        peak_import.kw, peak_import.instant = import_top, import_at
        self._prev = prev


def total(balances: Iterable[EnergyBalance]) -> EnergyBalance:
    """One balance for several spans (the days of a run)."""
    out = EnergyBalance()
    for b in balances:
        out.absorb(b)
    return out


def by_month(days: Mapping[dt.date, EnergyBalance]) -> dict[str, EnergyBalance]:
    """Per-day balances summed per calendar month ('YYYY-MM'), in date order."""
    months: dict[str, EnergyBalance] = {}
    for day in sorted(days):
        months.setdefault(f"{day:%Y-%m}", EnergyBalance()).absorb(days[day])
    return months
