"""pvsim-run's simulation: whole days through the same pipeline as the daemons, then a summary.

The meter model reads at every simulated instant, the readings travel as messages (through a
private RabbitMQ queue, or in process with broker "none"), the PV service turns them into CSV
rows, and the run ends when every reading of the day(s) is durable in the CSV. An accelerated
run (`RunOptions.speed` None) steps the simulated clock without sleeping; else it paces at
`speed` times real time. The days are shared among worker processes (`RunOptions.jobs`,
pvsim.run.workers), each running the same pipeline over its own days; the aggregates their PV
services' listeners keep (pvsim.run.aggregators) merge into the summary (pvsim.run.summary).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from zoneinfo import ZoneInfo

from pvsim import config as configmod
from pvsim.inputs.models import meter_models, pv_model
from pvsim.model.clock import SimClock, day_bounds, local_midnight
from pvsim.model.metermodel import MeterModel, columns
from pvsim.model.pvmodels import PvModel
from pvsim.model.shard import shard_of
from pvsim.pipeline import broker
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.messages import encode_columns
from pvsim.pipeline.pvservice import PvService
from pvsim.pipeline.shardset import ShardSet
from pvsim.pipeline.transport import InProcess, RabbitRun, Transport
from pvsim.run.aggregators import DayAggregator, PartialSummary, ProfileAggregator
from pvsim.run.progress import ProgressBar, reporter
from pvsim.run.summary import RunSummary, summarise
from pvsim.run.workers import Report, Workers, stopping

DEFAULT_OUTPUT = "pvsim-output"


@dataclass
class RunOptions:
    date: dt.date
    days: int = 1
    step: int = 1
    speed: float | None = None  # None: accelerated (no sleeping)
    output: Path = Path(DEFAULT_OUTPUT)
    broker: str = "rabbitmq"
    progress: bool = False  # draw a progress bar on stderr
    jobs: int = 1  # worker processes the days are shared among


def simulate(cfg: configmod.Config, opts: RunOptions) -> RunSummary:
    """Run the pipeline over the requested days; return once every row is durable.

    The days are shared among `opts.jobs` worker processes (days are independent given the
    seed); each runs `_simulate_days` over its own, as a single-process run does over all of
    them, and the summary is the merge of their partial results, the same whichever way the
    days were shared."""
    tz = cfg.tz
    models = meter_models(cfg)
    pv = pv_model(cfg)
    _check_outputs(cfg, opts)
    parts = _day_ranges(opts, tz)
    bar = None
    if opts.progress:
        bar = ProgressBar(sum(len(part.clock(opts)) for part in parts) * len(models), tz)

    def run(part: _DayRange, report: Report | None) -> PartialSummary:
        return _simulate_days(cfg, opts, models, pv, part, report)

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
            bar.end()
    elapsed = time.monotonic() - began
    transport = InProcess.name if opts.broker == "none" else RabbitRun.name
    return summarise(cfg, partial, [m.meter_id for m in models], date=opts.date, days=opts.days,
                     step=opts.step, transport=transport, elapsed_seconds=elapsed)


def _check_outputs(cfg: configmod.Config, opts: RunOptions) -> None:
    """Fail before any work, once (not once per worker), when the output directory cannot be
    written (SinkError) or RabbitMQ cannot be reached (BrokerUnavailable, after the configured
    attempts)."""
    CsvSink(opts.output).close()
    if opts.broker != "none":
        broker.close_quietly(broker.connect(cfg.broker))


def _transport(cfg: configmod.Config, opts: RunOptions) -> Transport:
    """How the run's messages travel: a private RabbitMQ queue, or in process."""
    if opts.broker == "none":
        return InProcess()
    return RabbitRun(cfg.broker)


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


def _simulate_days(cfg: configmod.Config, opts: RunOptions, models: Sequence[MeterModel],
                   pv: PvModel, part: _DayRange, report: Report | None) -> PartialSummary:
    """The pipeline over a range of the run's days: meter model, messages, transport, PV
    service, CSV. A single-process run runs it over all the days, a worker over its range."""
    tz, shards = cfg.tz, cfg.fleet.shards
    clock = part.clock(opts)
    partial = PartialSummary(DayAggregator(tz, cfg.pricing.max_gap_seconds),  # energy per day
                             ProfileAggregator(tz),  # the average day per meter and month, for --plot
                             {m.meter_id: 0 for m in models})
    listeners = partial.listeners(cfg.meter.max_w)
    expected = len(clock) * len(models)
    if report is not None:
        listeners.append(reporter(expected, report))

    def service(shard: int | None) -> PvService:
        sink = CsvSink(opts.output, truncate=True, shard=shard,
                       log_refusals=False)  # the run's exit line names a refusal
        made = PvService(pv, sink, tz, max_power_w=cfg.limits.max_power_w, shards=shards)
        made.batch_listeners.extend(listeners)
        return made

    services = ShardSet(service, shards, cfg.limits.max_power_w)
    # Paced runs send each instant as it comes; accelerated ones batch for throughput.
    batch = cfg.broker.batch_size if opts.speed is None else len(models)
    bodies = _bodies(models, clock.ticks(), tz, batch, cfg.limits.max_power_w, shards)
    try:
        _transport(cfg, opts).deliver(bodies, services, expected, stopping)
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
