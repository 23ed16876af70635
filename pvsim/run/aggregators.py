"""What pvsim-run keeps of its rows as the PV service writes them: the batch listeners behind
its summary, fed in memory (a run never reads its CSVs back).

- `DayAggregator` keeps one `MeterDay` per local day and meter (store.aggregates): the energy of
  each day and, from the days' first and last samples, of the segments between them.
- `ProfileAggregator` keeps, per meter and local month, the sums behind an average day
  (`AverageDay`: mean meter and PV power per 15 minutes of local time): the annual plot, which
  could not afford to read a year's CSVs back.
- `PartialSummary` holds both for some of a run's days, with the readings clipped at
  meter.max_w and the files written: a worker's result, merged into the run's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from pvsim.model.energy import EnergyBalance
from pvsim.model.localtime import DAY_SECONDS, LocalTime
from pvsim.pipeline.csvformat import Row
from pvsim.pipeline.pvservice import BatchListener
from pvsim.store.aggregates import DayPart, MeterDay, Sample, combine


class DayAggregator:
    """In-memory per-(day, meter) aggregates fed by a batch listener (pvsim-run's summary).

    A run's rows of one meter come in time order (one queue, one publisher, duplicates dropped
    before the listeners), so a late row would be a bug in the pipeline: it raises rather than
    miscount the energy. The store (`readingstore`), which takes rows in any order, rebuilds a
    day from its CSV instead."""

    def __init__(self, tz: ZoneInfo, max_gap_seconds: float = 3600.0) -> None:
        self.tz, self.max_gap = tz, max_gap_seconds
        self.days: dict[dt.date, dict[str, MeterDay]] = {}

    def on_rows(self, rows: list[Row]) -> None:
        """The PV service's batch listener: a message's rows, each (day, meter)'s integrated in
        one loop (MeterDay.add_many)."""
        groups: dict[tuple[dt.date, str], list[Sample]] = {}
        for day, meter_id, instant, _, meter_kw, pv_kw in rows:
            samples = groups.get((day, meter_id))
            if samples is None:
                samples = groups[day, meter_id] = []
            samples.append((instant, meter_kw, pv_kw))
        for (day, meter_id), samples in groups.items():
            meters = self.days.get(day)
            if meters is None:
                meters = self.days[day] = {}
            md = meters.get(meter_id)
            if md is None:
                md = meters[meter_id] = MeterDay(self.max_gap)
            if not md.add_many(samples):
                last = md.last[0] if md.last is not None else None
                raise ValueError(f"a row of {meter_id} from {samples[0][0]} on is earlier than the "
                                 f"last one aggregated ({last}): a run's rows must come in "
                                 "time order")

    def merge(self, other: "DayAggregator") -> None:
        """Take the days of another aggregator, fed the rows of other whole days (a worker's
        share of a run): `energy_by_day` then adds the segments between the two sets of days
        from their first and last samples, as if one aggregator had had every row."""
        if overlap := self.days.keys() & other.days.keys():
            raise ValueError(f"both aggregators hold {min(overlap)}: only whole days merge")
        self.days.update(other.days)

    def energy_by_day(self, meter_id: str) -> dict[dt.date, EnergyBalance]:
        """The meter's energy per local day, the segments between its days included."""
        parts = [DayPart(day, md.first, md.last, md=md) for day, meters in sorted(self.days.items())
                 if (md := meters.get(meter_id)) is not None
                 and md.first is not None and md.last is not None]
        return combine(parts, self.tz, self.max_gap)


PROFILE_BIN_SECONDS = 900  # an average day's resolution: 96 bins of 15 minutes of local time


@dataclass(frozen=True)
class AverageDay:
    """One meter's mean power by local time of day over one month.

    `meter_kw[i]` and `pv_kw[i]` are the means of the readings whose local time of day lies in
    [i, i + 1) x `bin_seconds` after midnight; None where no reading fell (steps longer than a
    bin, the hour a spring DST change skips). The hour a fall change repeats counts twice."""

    bin_seconds: int
    meter_kw: list[float | None]
    pv_kw: list[float | None]

    def hours(self) -> list[float]:
        """Each bin's middle, in hours after local midnight: where its mean is drawn."""
        return [(i + 0.5) * self.bin_seconds / 3600 for i in range(len(self.meter_kw))]


class ProfileAggregator:
    """Per meter and local month ('YYYY-MM'), per bin of local time of day, the sums of meter
    kW, PV kW and the count of readings, fed by a batch listener; `average_days` gives the means.

    It runs for every reading of a run (31.5 million in a year at 1-second steps), so a row is
    three list additions: its bin comes from the instant's wall-clock seconds in the LocalTime
    span it falls in (one local date at one UTC offset), never from a datetime. Rows may come
    in any order (an instant outside the current span finds its own). The sums are plain dicts
    and lists of floats: aggregators of worker processes pickle, and `merge` adds them up."""

    def __init__(self, tz: ZoneInfo, bin_seconds: int = PROFILE_BIN_SECONDS) -> None:
        if bin_seconds < 1 or DAY_SECONDS % bin_seconds:
            raise ValueError(f"bin_seconds must divide a day, got {bin_seconds}")
        self.tz, self.bin_seconds, self.bins = tz, bin_seconds, DAY_SECONDS // bin_seconds
        # meter -> month -> [meter kW sum per bin..., PV kW sum per bin..., readings per bin...]
        self.sums: dict[str, dict[str, list[float]]] = {}
        self._local = LocalTime(tz)
        self._lo = self._hi = self._base = 0  # the current span's [lo, hi) and wall-clock base
        self._month = ""
        self._current: dict[str, list[float]] = {}  # meter -> its sums of self._month

    def on_rows(self, rows: list[Row]) -> None:
        """The PV service's batch listener: a message's rows, in one loop."""
        lo, hi, base, current = self._lo, self._hi, self._base, self._current
        bins, width = self.bins, self.bin_seconds
        for _, meter_id, instant, _, meter_kw, pv_kw in rows:
            if not lo <= instant < hi:
                self._enter(instant)
                lo, hi, base, current = self._lo, self._hi, self._base, self._current
            sums = current.get(meter_id)
            if sums is None:
                sums = current[meter_id] = (
                    self.sums.setdefault(meter_id, {}).setdefault(self._month, [0.0] * (3 * bins)))
            i = (instant - base) // width
            sums[i] += meter_kw
            sums[i + bins] += pv_kw
            sums[i + 2 * bins] += 1.0

    def _enter(self, instant: int) -> None:
        """Take the LocalTime span of `instant`, and its month's sums."""
        span = self._local.span(instant)
        self._lo, self._hi, self._base = span.start, span.end, span.base
        month = f"{span.day:%Y-%m}"
        if month != self._month:
            self._month, self._current = month, {}

    def merge(self, other: "ProfileAggregator") -> None:
        """Add another aggregator's sums (of other days, or other meters) into this one."""
        if other.bin_seconds != self.bin_seconds:
            raise ValueError(f"cannot merge {other.bin_seconds} s bins into {self.bin_seconds} s bins")
        for meter, months in other.sums.items():
            mine = self.sums.setdefault(meter, {})
            for month, sums in months.items():
                if month in mine:
                    acc = mine[month]
                    for i, value in enumerate(sums):
                        acc[i] += value
                else:
                    mine[month] = list(sums)

    def average_days(self, meter_id: str) -> dict[str, AverageDay]:
        """The meter's average day of each month, in month order."""
        n = self.bins
        out = {}
        for month, sums in sorted(self.sums.get(meter_id, {}).items()):
            counts = sums[2 * n:]
            out[month] = AverageDay(self.bin_seconds,
                                    [s / c if c else None for s, c in zip(sums[:n], counts)],
                                    [s / c if c else None for s, c in zip(sums[n:2 * n], counts)])
        return out


@dataclass
class PartialSummary:
    """What the summary needs of some of a run's days; the partials of its day ranges merge into
    the run's (whole days each: the energy between one range's last reading and the next one's
    first is `DayAggregator.energy_by_day`'s, from the days' first and last samples)."""

    days: DayAggregator
    profiles: ProfileAggregator
    clipped: dict[str, int]  # per meter, its readings at meter.max_w
    readings: int = 0
    files: list[Path] = field(default_factory=list)

    def listeners(self, max_w: float) -> list[BatchListener]:
        """The PV service's batch listeners that fill this partial."""
        clipped = self.clipped

        def count_clipped(rows: list[Row]) -> None:
            for _, meter_id, _, meter_w, _, _ in rows:
                if meter_w >= max_w:  # the model's value was cut to meter.max_w
                    clipped[meter_id] = clipped.get(meter_id, 0) + 1
        return [self.days.on_rows, self.profiles.on_rows, count_clipped]

    def merge(self, later: "PartialSummary") -> None:
        """Add the partial of the days after this one's."""
        self.days.merge(later.days)
        self.profiles.merge(later.profiles)
        for meter_id, count in later.clipped.items():
            self.clipped[meter_id] = self.clipped.get(meter_id, 0) + count
        self.readings += later.readings
        self.files += later.files
