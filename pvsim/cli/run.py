"""pvsim-run: simulate whole days through the same pipeline as the daemons, then summarise.

    pvsim-run --accelerated [--date YYYY-MM-DD] [--days N | --year YYYY] [--step SECONDS] [--timezone TZ]
              [--seed N] [--output DIR] [--config FILE] [--json] [--broker rabbitmq|none]
              [--plot FILE.png] [--jobs N]

The meter model reads at every simulated instant, the readings travel as messages (through a
private RabbitMQ queue, or in process with --broker none), the PV service turns them into CSV rows,
and the run ends when every reading of the day(s) is durable in the CSV. --accelerated steps the
simulated clock without sleeping; without it the run paces at real time, or at --speed FACTOR.
An accelerated run of several days shares them among worker processes (--jobs, pvsim.cli.workers),
each running the same pipeline over its own days; their partial results merge into the summary.
The summary prices each meter's energy with every plan, with and without the PV plant
(pvsim.model.plans), and --plot draws the run's power curves, or for more than 31 days its months
and average days (pvsim.cli.plot, needs matplotlib).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from zoneinfo import ZoneInfo

from pvsim import __version__, config as configmod, logsetup
from pvsim.inputs.models import meter_models, pv_model
from pvsim.model import energy
from pvsim.cli.workers import Report, RunFailed, Workers, available_cpus, stopping
from pvsim.model.clock import SimClock, day_bounds, local_midnight
from pvsim.model.energy import EnergyBalance
from pvsim.model.metermodel import MeterModel, columns
from pvsim.model.plans import PlanCost, Pricing, rank
from pvsim.model.pvmodels import PvModel
from pvsim.model.shard import MAX_SHARDS, shard_of
from pvsim.pipeline import broker
from pvsim.pipeline.csvsink import CsvSink, SinkError
from pvsim.pipeline.messages import MAX_INSTANT, encode_columns
from pvsim.pipeline.pvservice import BatchListener, PvService, Written
from pvsim.pipeline.shardset import ShardSet
from pvsim.pipeline.transport import InProcess, MessageRejected, RabbitRun, Transport
from pvsim.store.aggregates import AverageDay, DayAggregator, ProfileAggregator

log = logging.getLogger("pvsim.cli.run")

DEFAULT_OUTPUT = "pvsim-output"


@dataclass
class RunOptions:
    date: dt.date
    days: int = 1
    step: int = 1
    speed: float | None = None  # None: accelerated (no sleeping)
    output: Path = Path(DEFAULT_OUTPUT)
    broker: str = "rabbitmq"
    progress: bool = False
    jobs: int = 1  # worker processes the days are shared among


@dataclass
class RunSummary:
    date: dt.date
    days: int
    step: int
    timezone: str
    transport: str
    readings: int
    files: list[Path]
    elapsed_seconds: float
    meters: dict[str, EnergyBalance] = field(default_factory=dict)
    costs: dict[str, list[PlanCost]] = field(default_factory=dict)  # per meter, in plan order
    plans: dict[str, str | None] = field(default_factory=dict)      # per meter, its current plan
    feed_in_tariff: float = 0.0
    max_w: float = 9000.0            # meter.max_w: where the simulated model was clipped
    max_power_w: float = 10e6        # limits.max_power_w: what the pipeline accepted
    clipped: dict[str, int] = field(default_factory=dict)  # per meter, readings at meter.max_w
    months: dict[str, dict[str, EnergyBalance]] = field(default_factory=dict)  # per meter, 'YYYY-MM'
    # per meter, 'YYYY-MM': mean power by local time of day, for the plot (not in to_dict: the CSVs
    # hold the same readings; the JSON keeps to the energy figures)
    profiles: dict[str, dict[str, AverageDay]] = field(default_factory=dict)
    currency: str = "EUR"            # pricing.currency: the unit of every cost
    # pv.model and meter.model, and what each means here, for the summary's first lines (a
    # December day of the chart model has midsummer's PV: the summary says it is the chart)
    models: dict[str, str] = field(default_factory=lambda: {"pv": "chart", "load": "building"})
    about_models: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "date": self.date.isoformat(), "days": self.days, "step_seconds": self.step,
            "timezone": self.timezone, "transport": self.transport, "readings": self.readings,
            "pv_model": self.models["pv"], "load_model": self.models["load"],
            "currency": self.currency,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "readings_per_second": round(self.readings / self.elapsed_seconds) if self.elapsed_seconds else None,
            "files": [str(p) for p in self.files],
            "meters": {m: b.to_dict() for m, b in self.meters.items()},
            "costs": {m: _costs_dict(c, self.plans.get(m), self.feed_in_tariff, self.currency)
                      for m, c in self.costs.items()},
            "months": {m: {month: b.to_dict() for month, b in months.items()}
                       for m, months in self.months.items()},
            "pv_savings": {m: _savings(c, self.plans.get(m)) for m, c in self.costs.items()},
            "limits": {"meter_max_w": self.max_w, "max_power_w": self.max_power_w},
            "clipped_readings": self.clipped,
        }


def _costs_dict(costs: list[PlanCost], current: str | None, feed_in_tariff: float,
                currency: str) -> dict:
    """A meter's plan costs for the JSON summary (rounded; ranked cheapest first)."""
    return {
        "current_plan": current,
        "currency": currency,
        "feed_in_tariff": feed_in_tariff,
        "plans": [c.to_dict() for c in rank(costs)],
        "recommended": rank(costs)[0].plan_id if costs else None,
        "recommended_with_pv": rank(costs, with_pv=True)[0].plan_id if costs else None,
    }


def _savings(costs: list[PlanCost], current: str | None) -> dict:
    """What the PV plant saves: on the current plan, and from the cheapest plan without PV to
    the cheapest with it (the plan may change once the plant is there)."""
    if not costs:
        return {"current_plan": None, "best_plans": None}
    best, best_pv = rank(costs)[0], rank(costs, with_pv=True)[0]
    mine = next((c for c in costs if c.plan_id == current), None)
    return {"current_plan": None if mine is None else mine.cost - mine.cost_with_pv,
            "best_plans": best.cost - best_pv.cost_with_pv}


def simulate(cfg: configmod.Config, opts: RunOptions) -> RunSummary:
    """Run the pipeline over the requested days; return once every row is durable.

    The days are shared among `opts.jobs` worker processes (days are independent given the
    seed); each runs `_simulate_days` over its own, as a single-process run does over all of
    them, and the summary is the merge of their partial results, the same whichever way the
    days were shared."""
    tz = cfg.tz
    models = meter_models(cfg)
    curve = pv_model(cfg)
    meter_ids = [m.meter_id for m in models]
    _check_outputs(cfg, opts)
    parts = _day_ranges(opts, tz)
    transport_name = InProcess.name if opts.broker == "none" else RabbitRun.name
    bar = None
    if opts.progress:
        bar = _ProgressBar(sum(len(part.clock(opts)) for part in parts) * len(models), tz)

    def run(part: _DayRange, report: Report | None) -> _Partial:
        return _simulate_days(cfg, opts, models, curve, part, report)

    began = time.monotonic()
    try:
        if len(parts) == 1:
            report = None if bar is None else (lambda rows, instant: bar.draw([rows], [instant]))
            partial = run(parts[0], report)
        else:
            partials = Workers(run, parts).results(None if bar is None else bar.draw)
            partial = partials[0]
            for later in partials[1:]:
                partial.merge(later)
    finally:
        if bar is not None:
            sys.stderr.write("\n")
    elapsed = time.monotonic() - began
    pricing = Pricing.from_config(cfg.pricing)
    by_day = {m: partial.days.energy_by_day(m) for m in meter_ids}
    return RunSummary(opts.date, opts.days, opts.step, cfg.timezone, transport_name,
                      partial.readings, partial.files, elapsed,
                      {m: energy.total(by_day[m].values()) for m in meter_ids},
                      {m: pricing.compare(by_day[m]) for m in meter_ids},
                      {m: pricing.plan_of(m) for m in meter_ids}, pricing.feed_in_tariff,
                      cfg.meter.max_w, cfg.limits.max_power_w,
                      {m: partial.clipped.get(m, 0) for m in meter_ids},
                      {m: energy.by_month(by_day[m]) for m in meter_ids},
                      {m: partial.profiles.average_days(m) for m in meter_ids},
                      cfg.pricing.currency, {"pv": cfg.pv.model, "load": cfg.meter.model},
                      {"pv": about_pv(cfg.pv), "load": about_load(cfg.meter)})


def about_pv(pv: configmod.PvConfig) -> str:
    """What pv.model gives, in a few words: the summary's first lines say which PV it is."""
    array = f"{pv.peak_kw:g} kWp tilted {pv.tilt_deg:g}° facing {pv.azimuth_deg:g}°"
    about = {
        "chart": f"the challenge's reference curve, peak {pv.peak_kw:g} kW at 14:10, the same "
                 "every day of the year",
        "clearsky": f"a clear sky over {pv.latitude:g}, {pv.longitude:g} by season, {array}"
                    if pv.latitude is not None and pv.longitude is not None else "a clear sky",
        "weather": f"the typical year of {pv.weather_file}, {array}",
        "series": f"the output recorded in {pv.series_file}",
    }[pv.model]
    clouds = f", cloud noise {pv.noise:g}" if pv.noise else ""
    return f"{pv.model} ({about}{clouds})"


def about_load(meter: configmod.MeterConfig) -> str:
    """What meter.model gives, in a few words."""
    about = {
        "building": "a commercial building: low at night, high in working hours, lower at "
                    f"weekends; seed {meter.seed}",
        "uniform": f"any value from 0 to {meter.max_w:g} W at random; seed {meter.seed}",
        "slp": f"the BDEW standard load profile {meter.profile}, {meter.annual_kwh:g} kWh a "
               f"year; seed {meter.seed}",
        "series": f"the consumption recorded in {meter.series_file} ({meter.series_unit})",
    }[meter.model]
    return f"{meter.model} ({about})"


def _check_outputs(cfg: configmod.Config, opts: RunOptions) -> None:
    """Fail before any work, once (not once per worker), when the output directory cannot be
    written (SinkError) or RabbitMQ cannot be reached (BrokerUnavailable, after the configured
    attempts)."""
    CsvSink(opts.output).close()
    if opts.broker != "none":
        broker.close_quietly(broker.connect(cfg.broker))


@dataclass(frozen=True)
class _DayRange:
    """Whole local days of a run, [first_day, end_day), and the run's instants among them."""

    first_day: dt.date
    end_day: dt.date
    start: int  # the first of the run's instants on these days
    end: int    # local midnight after the last day

    def clock(self, opts: RunOptions) -> SimClock:
        """The run's clock over these days."""
        return SimClock(self.start, self.end, opts.step, opts.speed)


def _day_ranges(opts: RunOptions, tz: ZoneInfo) -> list[_DayRange]:
    """The run's days in `opts.jobs` ranges of consecutive days, as even as whole days allow,
    each with the run's instants that fall on them (the run's steps go on across the ranges, as
    in a single process, whatever the step); a range without an instant is left out."""
    start, _ = day_bounds(opts.date, tz, opts.days)
    jobs = max(1, min(opts.jobs, opts.days))
    parts = []
    for k in range(jobs):
        first = opts.date + dt.timedelta(days=opts.days * k // jobs)
        end_day = opts.date + dt.timedelta(days=opts.days * (k + 1) // jobs)
        lo, hi = local_midnight(first, tz), local_midnight(end_day, tz)
        first_instant = start + -(-(lo - start) // opts.step) * opts.step
        if first_instant < hi:
            parts.append(_DayRange(first, end_day, first_instant, hi))
    return parts


@dataclass
class _Partial:
    """What the summary needs of some of a run's days; the partials of its day ranges merge into
    the run's (whole days each: the energy between one range's last reading and the next one's
    first is `DayAggregator.energy_by_day`'s, from the days' first and last samples)."""

    days: DayAggregator
    profiles: ProfileAggregator
    clipped: dict[str, int]
    readings: int = 0
    files: list[Path] = field(default_factory=list)

    def listeners(self, max_w: float) -> list[BatchListener]:
        """The PV service's batch listeners that fill this partial."""
        clipped = self.clipped

        def count_clipped(rows: list[Written]) -> None:
            for _, meter_id, _, meter_w, _, _ in rows:
                if meter_w >= max_w:  # the model's value was cut to meter.max_w
                    clipped[meter_id] = clipped.get(meter_id, 0) + 1
        return [self.days.on_rows, self.profiles.on_rows, count_clipped]

    def merge(self, later: "_Partial") -> None:
        """Add the partial of the days after this one's."""
        self.days.merge(later.days)
        self.profiles.merge(later.profiles)
        for meter_id, count in later.clipped.items():
            self.clipped[meter_id] = self.clipped.get(meter_id, 0) + count
        self.readings += later.readings
        self.files += later.files


def _simulate_days(cfg: configmod.Config, opts: RunOptions, models: Sequence[MeterModel],
                   curve: PvModel, part: _DayRange, report: Report | None) -> _Partial:
    """The pipeline over a range of the run's days: meter model, messages, transport, PV
    service, CSV. A single-process run runs it over all the days, a worker over its range."""
    tz, shards = cfg.tz, cfg.fleet.shards
    clock = part.clock(opts)
    partial = _Partial(DayAggregator(tz, cfg.pricing.max_gap_seconds),  # energy per meter and day
                       ProfileAggregator(tz),  # the average day per meter and month, for --plot
                       {m.meter_id: 0 for m in models})
    listeners = partial.listeners(cfg.meter.max_w)
    expected = len(clock) * len(models)
    if report is not None:
        listeners.append(_progress(expected, report))

    def service(shard: int | None) -> PvService:
        made = PvService(curve, CsvSink(opts.output, truncate=True, shard=shard,
                                         log_refusals=False), tz,  # the exit line names it
                         max_power_w=cfg.limits.max_power_w, shards=shards)
        made.batch_listeners.extend(listeners)
        return made

    services = ShardSet(service, shards, cfg.limits.max_power_w)
    # Paced runs send each instant as it comes; accelerated ones batch for throughput.
    batch = cfg.broker.batch_size if opts.speed is None else len(models)
    bodies = _bodies(models, clock.ticks(), tz, batch, cfg.limits.max_power_w, shards)
    transport: Transport = InProcess() if opts.broker == "none" else RabbitRun(cfg.broker)
    try:
        transport.deliver(bodies, services, expected, stopping)
    finally:
        services.close()
    partial.readings, partial.files = services.rows_total, services.paths
    return partial


def _bodies(models: Sequence[MeterModel], ticks: Iterable[int], tz: ZoneInfo, batch: int,
            max_power_w: float, shards: int = 1) -> Iterator[bytes]:
    """The run's messages: `batch // meters` instants to a message, as columns (messages
    version 2: no Reading objects, no timestamp texts, JSON's C code for the rest); with
    shards, each shard's meters in messages of their own, as pvsim-meter sends them."""
    groups: dict[int, list[MeterModel]] = {}
    for model in models:
        groups.setdefault(shard_of(model.meter_id, shards), []).append(model)
    per_message = max(1, batch // max(len(g) for g in groups.values()))
    instants = iter(ticks)
    while chunk := list(islice(instants, per_message)):
        for _, group in sorted(groups.items()):
            yield from encode_columns([m.meter_id for m in group], chunk,
                                      columns(group, chunk, tz), max_power_w=max_power_w)


def _progress(total: int, report: Report) -> BatchListener:
    """A batch listener telling `report(rows, last instant)` every 0.5 % of the `total` rows."""
    every = max(1, total // 200)
    count, due = 0, every

    def update(rows: list[Written]) -> None:
        nonlocal count, due
        count += len(rows)
        if count >= due or count >= total:
            report(count, rows[-1][2])
            due = count + every
    return update


class _ProgressBar:
    """The progress bar on stderr (a terminal only): the share of the run's rows written, and
    where each worker is in simulated time."""

    def __init__(self, total: int, tz: ZoneInfo) -> None:
        self.total, self.tz = max(1, total), tz

    def draw(self, rows: list[int], instants: list[int]) -> None:
        done = sum(rows) / self.total
        bar = "#" * int(done * 40)
        where = "  ".join(f"{dt.datetime.fromtimestamp(t, self.tz):%Y-%m-%d %H:%M}"
                          for t in instants if t)
        sys.stderr.write(f"\r[{bar:<40}] {done:6.1%} {where}")
        sys.stderr.flush()


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


SUMMARY_METERS = 10  # a run of more meters prints its fleet's sums, each meter's in --json


def format_summary(s: RunSummary) -> str:
    tz = ZoneInfo(s.timezone)

    def at(instant: int | None) -> str:
        return "-" if instant is None else dt.datetime.fromtimestamp(instant, tz).strftime("%H:%M:%S")

    days = f"{s.days} days from " if s.days > 1 else ""
    lines = [f"pvsim-run: {days}{s.date} ({s.timezone}), {s.readings:,} readings at {s.step} s steps "
             f"via {s.transport} in {s.elapsed_seconds:.2f} s "
             f"({s.readings / max(s.elapsed_seconds, 1e-9):,.0f} readings/s)",
             f"PV model: {s.about_models.get('pv', s.models['pv'])}",
             f"load model: {s.about_models.get('load', s.models['load'])}"]
    if len(s.meters) > SUMMARY_METERS:
        lines += _format_fleet(s)
        lines.append(_format_files(s.files))
        return "\n".join(lines)
    for meter, b in s.meters.items():
        lines += [
            f"meter {meter}:",
            f"  consumed      {b.consumed_kwh:9.2f} kWh   peak {b.peak_meter.kw:6.2f} kW at {at(b.peak_meter.instant)}",
            f"  PV produced   {b.pv_kwh:9.2f} kWh   peak {b.peak_pv.kw:6.2f} kW at {at(b.peak_pv.instant)}",
            f"  grid import   {b.import_kwh:9.2f} kWh   peak {max(b.peak_import.kw, 0):6.2f} kW at {at(b.peak_import.instant)}",
            f"  grid export   {b.export_kwh:9.2f} kWh",
            f"  self-consumption {_share(b.self_consumption)} of PV used on site, "
            f"self-sufficiency {_share(b.self_sufficiency)} of consumption",
        ]
        if s.clipped.get(meter):
            lines.append(f"  the model was clipped to meter.max_w ({s.max_w:g} W) at "
                         f"{s.clipped[meter]:,} of its readings")
        if len(s.months.get(meter, {})) > 1:
            lines += _format_months(s.months[meter])
        lines += _format_costs(s.costs.get(meter, []), s.plans.get(meter), s.feed_in_tariff,
                               s.currency)
        lines += _format_savings(s.costs.get(meter, []), s.plans.get(meter), s.days, s.currency)
    lines.append(_format_files(s.files))
    return "\n".join(lines)


def _format_fleet(s: RunSummary) -> list[str]:
    """A fleet's energy as one: the sums over its meters (their peaks fall at different
    instants, so none is shown), and where each meter's figures are."""
    b = energy.total(s.meters.values())
    clipped = sum(s.clipped.values())
    lines = [
        f"fleet of {len(s.meters):,} meters (each meter's figures and costs: --json):",
        f"  consumed      {b.consumed_kwh:12.2f} kWh",
        f"  PV produced   {b.pv_kwh:12.2f} kWh",
        f"  grid import   {b.import_kwh:12.2f} kWh",
        f"  grid export   {b.export_kwh:12.2f} kWh",
        f"  self-consumption {_share(b.self_consumption)} of PV used on site, "
        f"self-sufficiency {_share(b.self_sufficiency)} of consumption",
    ]
    if clipped:
        lines.append(f"  models clipped to meter.max_w ({s.max_w:g} W) at {clipped:,} readings "
                     f"of {sum(1 for n in s.clipped.values() if n):,} meters")
    return lines


def _format_months(months: dict[str, EnergyBalance]) -> list[str]:
    """One row per month: where the energy came from and went (kWh), and the two shares."""
    lines = [f"  {'month':<8} {'consumed':>9} {'PV':>9} {'import':>9} {'export':>9} "
             f"{'self-cons.':>10} {'self-suff.':>10}"]
    for month, b in months.items():
        lines.append(f"  {month:<8} {b.consumed_kwh:9.1f} {b.pv_kwh:9.1f} {b.import_kwh:9.1f} "
                     f"{b.export_kwh:9.1f} {_share(b.self_consumption):>10} "
                     f"{_share(b.self_sufficiency):>10}")
    return lines


def _format_savings(costs: list[PlanCost], current: str | None, days: int,
                    currency: str) -> list[str]:
    if not costs:
        return []
    saved = _savings(costs, current)
    span = "a year" if days in (365, 366) else f"over {days} day{'s' if days > 1 else ''}"
    mine = (f"{saved['current_plan']:.2f} {currency} on the current plan ({current}), "
            if saved["current_plan"] is not None else "")
    return [f"  the PV plant saves {mine}{saved['best_plans']:.2f} {currency} from the best plan "
            f"without PV to the best with it, {span}"]


def _format_files(files: list[Path]) -> str:
    """The CSVs written: all of them for a few days, the folder and the range for many."""
    if len(files) <= 3:
        return "CSV: " + ", ".join(str(p) for p in files)
    return f"CSV: {len(files)} files in {files[0].parent}/, {files[0].name} to {files[-1].name}"


def _format_costs(costs: list[PlanCost], current: str | None, feed_in_tariff: float,
                  currency: str) -> list[str]:
    """The plans' costs, each with its currency (pricing.currency)."""
    if not costs:
        return []
    width = max(len(f"{c.plan_id} ({c.supplier})") for c in costs)
    column = 11 + len(currency)
    fit = f", export paid {feed_in_tariff:g} {currency}/kWh" if feed_in_tariff else ""
    lines = [f"  {'cost per plan':<{width + 2}} {'without PV':>{column}} {'with PV':>{column}}"
             f"   (current plan: {current or 'none'}{fit})"]
    for c in rank(costs):
        name = f"{c.plan_id} ({c.supplier})"
        lines.append(f"    {name:<{width}} {c.cost:10.2f} {currency} "
                     f"{c.cost_with_pv:10.2f} {currency}")
    best, best_pv = rank(costs)[0], rank(costs, with_pv=True)[0]
    lines.append(f"  recommended plan: {best.plan_id} ({best.supplier}), {best.cost:.2f} {currency} "
                 f"without PV; with PV: {best_pv.plan_id} ({best_pv.supplier}), "
                 f"{best_pv.cost_with_pv:.2f} {currency}")
    return lines


ERROR_CHARS = 10_000  # room for a path of PATH_MAX (4,096) in an error line
MAX_NUMBER_CHARS = configmod.MAX_INTEGER_CHARS  # digits of a whole number flag, as in the config


def build_parser() -> argparse.ArgumentParser:
    p = configmod.UsageParser(
        prog="pvsim-run", description="Simulate whole days of meter and PV power into daily CSVs.")
    p.add_argument("--accelerated", action="store_true",
                   help="step simulated time without sleeping (a day in seconds)")
    p.add_argument("--speed", type=_positive_float, metavar="FACTOR",
                   help="pace at FACTOR times real time (default without --accelerated: 1)")
    p.add_argument("--date", type=_date, metavar="YYYY-MM-DD", help="first day (default: today)")
    p.add_argument("--days", type=_positive_int, default=1, metavar="N", help="days to simulate (1)")
    p.add_argument("--year", type=_year, metavar="YYYY",
                   help="simulate that whole year (the same as --date YYYY-01-01 --days 365 or 366)")
    p.add_argument("--step", type=_positive_int, default=1, metavar="SECONDS",
                   help="seconds between readings (1)")
    p.add_argument("--meters", type=_at_most(configmod.MAX_METER_COUNT), metavar="N",
                   help="simulate a fleet of N meters, meter-000001 ... (overrides meter.id)")
    p.add_argument("--shards", type=_at_most(MAX_SHARDS), metavar="N",
                   help="spread the meters over N shards, one file per shard and day "
                        "(overrides fleet.shards)")
    p.add_argument("--timezone", type=_timezone, metavar="TZ",
                   help="IANA time zone (overrides config 'timezone')")
    p.add_argument("--seed", type=_int, metavar="N", help="meter seed (overrides meter.seed)")
    p.add_argument("--output", type=_path, metavar="DIR",
                   help=f"directory for the CSV files (default: ./{DEFAULT_OUTPUT})")
    p.add_argument("--config", type=_path, metavar="FILE",
                   help=f"YAML config (default: {configmod.DEFAULT_PATH} when readable)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--broker", choices=("rabbitmq", "none"), default="rabbitmq",
                   help="'none' runs the same pipeline in process, without RabbitMQ")
    p.add_argument("--jobs", type=_positive_int, metavar="N",
                   help="worker processes to share the days among (default: one per CPU, "
                        "at most one per day; --accelerated runs only)")
    p.add_argument("--plot", type=_path, metavar="FILE.png",
                   help="draw meter, PV and net power over time into FILE.png; over more than "
                        "31 days, the months and an average day per month (needs matplotlib)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress events")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def load_config(path: Path | None) -> configmod.Config:
    """--config must load; without it, the system config is used when this user may read it."""
    if path is not None:
        return configmod.load(path)
    try:
        return configmod.load(configmod.DEFAULT_PATH, required=False)
    except configmod.ConfigError as exc:
        if "Permission denied" not in exc.problem:
            raise
        log.warning("%s; using built-in defaults (give one with --config FILE)", exc)
        return configmod.Config()


def apply_overrides(cfg: configmod.Config, args: argparse.Namespace) -> configmod.Config:
    """The config with the flags' values (each checked by its flag's type already)."""
    if args.timezone is not None:
        cfg = dataclasses.replace(cfg, timezone=args.timezone)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, meter=dataclasses.replace(cfg.meter, seed=args.seed))
    if args.meters is not None:
        cfg = configmod.with_meter_count(cfg, args.meters)
    if args.shards is not None:
        cfg = dataclasses.replace(cfg, fleet=dataclasses.replace(cfg.fleet, shards=args.shards))
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.accelerated and args.speed is not None:
        parser.error("--accelerated and --speed exclude each other")
    if args.year is not None:
        if args.date is not None or args.days != 1:
            parser.error("--year excludes --date and --days")
        args.date = dt.date(args.year, 1, 1)
        args.days = (dt.date(args.year + 1, 1, 1) - args.date).days
    if args.jobs is not None and args.jobs > 1 and not args.accelerated:
        parser.error("--jobs applies to --accelerated runs (a paced run is one process)")
    logsetup.setup("INFO" if args.verbose else "WARNING")
    if args.plot is not None:
        from pvsim.cli import plot
        if (problem := plot.missing()) is not None:
            print(f"pvsim-run: {problem}", file=sys.stderr)
            return os.EX_UNAVAILABLE
    try:
        cfg = apply_overrides(load_config(args.config), args)
        broker.check_url(cfg)
        date = args.date or dt.datetime.now(cfg.tz).date()
        if (problem := _outside_messages(date, args.days, cfg.tz)) is not None:
            parser.error(problem)
        opts = RunOptions(
            date=date, days=args.days, step=args.step,
            speed=None if args.accelerated else (args.speed or 1.0),
            output=args.output or Path(DEFAULT_OUTPUT), broker=args.broker,
            progress=sys.stderr.isatty() and not args.json,
            jobs=args.jobs or (min(available_cpus(), args.days) if args.accelerated else 1))
        summary = simulate(cfg, opts)
    except (configmod.ConfigError, broker.BrokerError, SinkError, MessageRejected,
            RunFailed) as exc:
        print(configmod.one_line(f"pvsim-run: {exc}", ERROR_CHARS), file=sys.stderr)
        return exc.exit_code  # 78, 69, 73 or 70 (RunFailed: a worker's)
    except KeyboardInterrupt:
        print("pvsim-run: interrupted; the CSV holds the rows written so far", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(format_summary(summary))
    if args.plot is not None:
        try:
            _plot(summary, args.plot, cfg.tz)
        except (OSError, ValueError) as exc:
            print(f"pvsim-run: cannot draw {args.plot}: {exc}", file=sys.stderr)
            return os.EX_CANTCREAT
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


def _plot(summary: RunSummary, out: Path, tz: ZoneInfo) -> None:
    """The run's figure: power over time, or for a long run its months and average days."""
    from pvsim.cli import plot  # matplotlib, only when asked for
    last = summary.date + dt.timedelta(days=summary.days - 1)
    span = f"{summary.date} to {last}" if summary.days > 1 else f"{summary.date}"
    title = f"pvsim {span} ({summary.timezone})"
    if plot.annual(summary.days):
        plot.plot_year(out, summary.months, summary.profiles, title)
    else:
        plot.plot_run(summary.files, out, summary.meters, title, tz)


def _outside_messages(date: dt.date, days: int, tz: ZoneInfo) -> str | None:
    """Why the run's days cannot be simulated, or None: every instant of them must be one a
    message carries (1970 to 9999, UTC), and the first and last days are local ones."""
    first, last = _first_day(tz), _last_day(tz)
    if date < first or date > last or days > (last - date).days + 1:
        run = f"{date}" if days == 1 else f"{days:,} days from {date}"
        return (f"the run's days must lie from {first} to {last} in {tz.key} (readings carry "
                f"instants from 1970 to 9999 UTC), not {run}")
    return None


def _first_day(tz: ZoneInfo) -> dt.date:
    """The first local day whose midnight is at or after 1970-01-01T00:00Z."""
    day = dt.date(1970, 1, 1)
    while local_midnight(day, tz) < 0:
        day += dt.timedelta(days=1)
    return day


def _last_day(tz: ZoneInfo) -> dt.date:
    """The last local day whose instants are all at most MAX_INSTANT (a day past the UTC date
    to start with, for a zone ahead of UTC; never past the calendar's last day)."""
    day = min(dt.datetime.fromtimestamp(MAX_INSTANT, dt.timezone.utc).date(),
              dt.date.max - dt.timedelta(days=2)) + dt.timedelta(days=1)
    while local_midnight(day + dt.timedelta(days=1), tz) - 1 > MAX_INSTANT:
        day -= dt.timedelta(days=1)
    return day


def _bad(text: str, what: str) -> argparse.ArgumentTypeError:
    """A flag's value refused: `what` it must be, and the value, cut short."""
    return argparse.ArgumentTypeError(f"{what}, got {configmod.shown(text)}")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _bad(text, "not a date in YYYY-MM-DD form") from None


def _year(text: str) -> int:
    year = _int(text)
    if not 1971 <= year <= 9998:
        raise _bad(text, "not a year from 1971 to 9998")
    return year


def _int(text: str) -> int:
    """A whole number, written in at most MAX_NUMBER_CHARS characters (as in the config)."""
    try:
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(text)
        return int(text)
    except ValueError:
        raise _bad(text, f"not a whole number of at most {MAX_NUMBER_CHARS} digits") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise _bad(text, "must be at least 1")
    return value


def _at_most(limit: int) -> Callable[[str], int]:
    """A flag's type: a whole number from 1 to `limit`."""
    def whole(text: str) -> int:
        value = _positive_int(text)
        if value > limit:
            raise _bad(text, f"must be at most {limit:,}")
        return value
    return whole


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(text, "not a number") from None
    if not value > 0 or value == float("inf"):
        raise _bad(text, "must be a positive number")
    return value


def _timezone(text: str) -> str:
    try:
        return configmod.check_string(text, "--timezone", "timezone")
    except configmod.ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def _path(text: str) -> Path:
    if not text or "\0" in text:
        raise _bad(text, "not a path")
    return Path(text)


if __name__ == "__main__":
    sys.exit(main())
