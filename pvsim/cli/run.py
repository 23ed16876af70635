"""pvsim-run: simulate whole days through the same pipeline as the daemons, then summarise.

    pvsim-run --accelerated [--date YYYY-MM-DD] [--days N | --year YYYY] [--step SECONDS] [--timezone TZ]
              [--seed N] [--output DIR] [--config FILE] [--json] [--broker rabbitmq|none]
              [--plot FILE.png]

The meter model reads at every simulated instant, the readings travel as messages (through a
private RabbitMQ queue, or in process with --broker none), the PV service turns them into CSV rows,
and the run ends when every reading of the day(s) is durable in the CSV. --accelerated steps the
simulated clock without sleeping; without it the run paces at real time, or at --speed FACTOR.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from pvsim import __version__, config as configmod, logsetup
from pvsim.inputs.models import meter_models, pv_model
from pvsim.model import energy
from pvsim.model.clock import SimClock, day_bounds
from pvsim.model.energy import EnergyBalance
from pvsim.model.metermodel import read
from pvsim.model.plans import PlanCost, Pricing, rank
from pvsim.pipeline import broker
from pvsim.pipeline.csvsink import CsvSink, Row, SinkError
from pvsim.pipeline.messages import encode_batches
from pvsim.pipeline.pvservice import PvService
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

    def to_dict(self) -> dict:
        return {
            "date": self.date.isoformat(), "days": self.days, "step_seconds": self.step,
            "timezone": self.timezone, "transport": self.transport, "readings": self.readings,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "readings_per_second": round(self.readings / self.elapsed_seconds) if self.elapsed_seconds else None,
            "files": [str(p) for p in self.files],
            "meters": {m: b.to_dict() for m, b in self.meters.items()},
            "costs": {m: _costs_dict(c, self.plans.get(m), self.feed_in_tariff)
                      for m, c in self.costs.items()},
            "months": {m: {month: b.to_dict() for month, b in months.items()}
                       for m, months in self.months.items()},
            "pv_savings": {m: _savings(c, self.plans.get(m)) for m, c in self.costs.items()},
            "limits": {"meter_max_w": self.max_w, "max_power_w": self.max_power_w},
            "clipped_readings": self.clipped,
        }


def _costs_dict(costs: list[PlanCost], current: str | None, feed_in_tariff: float) -> dict:
    """A meter's plan costs for the JSON summary (rounded; ranked cheapest first)."""
    return {
        "current_plan": current,
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
    """Run the pipeline over the requested days; return once every row is durable."""
    tz = cfg.tz
    start, end = day_bounds(opts.date, tz, opts.days)
    clock = SimClock(start, end, opts.step, opts.speed)
    models = meter_models(cfg)
    curve = pv_model(cfg)
    sink = CsvSink(opts.output, truncate=True)
    service = PvService(curve, sink, tz, max_power_w=cfg.limits.max_power_w)
    days = DayAggregator(tz, cfg.pricing.max_gap_seconds)  # energy per meter and local day
    service.listeners.append(days.on_row)
    profiles = ProfileAggregator(tz)  # the average day per meter and month, for --plot
    service.listeners.append(profiles.on_row)
    clipped = {m.meter_id: 0 for m in models}

    def count_clipped(row: Row, instant: int) -> None:
        if row.meter_w >= cfg.meter.max_w:  # the model's value was cut to meter.max_w
            clipped[row.meter_id] += 1
    service.listeners.append(count_clipped)
    expected = len(clock) * len(models)
    if opts.progress:
        service.listeners.append(_progress(expected))
    # Paced runs send each instant as it comes; accelerated ones batch for throughput.
    batch = cfg.broker.batch_size if opts.speed is None else len(models)
    bodies = encode_batches(read(models, clock.ticks(), tz), batch,
                            max_power_w=cfg.limits.max_power_w)
    transport: Transport = InProcess() if opts.broker == "none" else RabbitRun(cfg.broker)
    began = time.monotonic()
    try:
        transport.deliver(bodies, service, expected)
    finally:
        sink.close()
        if opts.progress:
            sys.stderr.write("\n")
    pricing = Pricing.from_config(cfg.pricing)
    meter_ids = [m.meter_id for m in models]
    by_day = {m: days.energy_by_day(m) for m in meter_ids}
    return RunSummary(opts.date, opts.days, opts.step, cfg.timezone, transport.name,
                      service.rows_total, list(sink.paths), time.monotonic() - began,
                      {m: energy.total(by_day[m].values()) for m in meter_ids},
                      {m: pricing.compare(by_day[m]) for m in meter_ids},
                      {m: pricing.plan_of(m) for m in meter_ids}, pricing.feed_in_tariff,
                      cfg.meter.max_w, cfg.limits.max_power_w, clipped,
                      {m: energy.by_month(by_day[m]) for m in meter_ids},
                      {m: profiles.average_days(m) for m in meter_ids})


def _progress(total: int):
    """A row listener drawing a progress bar on stderr (a terminal only)."""
    every = max(1, total // 200)
    count = 0

    def update(row: Row, instant: int) -> None:
        nonlocal count
        count += 1
        if count % every == 0 or count == total:
            done = count / total
            bar = "#" * int(done * 40)
            sys.stderr.write(f"\r[{bar:<40}] {done:6.1%} {row.timestamp:%Y-%m-%d %H:%M}")
            sys.stderr.flush()
    return update


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def format_summary(s: RunSummary) -> str:
    tz = ZoneInfo(s.timezone)

    def at(instant: int | None) -> str:
        return "-" if instant is None else dt.datetime.fromtimestamp(instant, tz).strftime("%H:%M:%S")

    days = f"{s.days} days from " if s.days > 1 else ""
    lines = [f"pvsim-run: {days}{s.date} ({s.timezone}), {s.readings:,} readings at {s.step} s steps "
             f"via {s.transport} in {s.elapsed_seconds:.2f} s "
             f"({s.readings / max(s.elapsed_seconds, 1e-9):,.0f} readings/s)"]
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
        lines += _format_costs(s.costs.get(meter, []), s.plans.get(meter), s.feed_in_tariff)
        lines += _format_savings(s.costs.get(meter, []), s.plans.get(meter), s.days)
    lines.append(_format_files(s.files))
    return "\n".join(lines)


def _format_months(months: dict[str, EnergyBalance]) -> list[str]:
    """One row per month: where the energy came from and went (kWh), and the two shares."""
    lines = [f"  {'month':<8} {'consumed':>9} {'PV':>9} {'import':>9} {'export':>9} "
             f"{'self-cons.':>10} {'self-suff.':>10}"]
    for month, b in months.items():
        lines.append(f"  {month:<8} {b.consumed_kwh:9.1f} {b.pv_kwh:9.1f} {b.import_kwh:9.1f} "
                     f"{b.export_kwh:9.1f} {_share(b.self_consumption):>10} "
                     f"{_share(b.self_sufficiency):>10}")
    return lines


def _format_savings(costs: list[PlanCost], current: str | None, days: int) -> list[str]:
    if not costs:
        return []
    saved = _savings(costs, current)
    span = "a year" if days in (365, 366) else f"over {days} day{'s' if days > 1 else ''}"
    mine = (f"{saved['current_plan']:.2f} on the current plan ({current}), "
            if saved["current_plan"] is not None else "")
    return [f"  the PV plant saves {mine}{saved['best_plans']:.2f} from the best plan without PV "
            f"to the best with it, {span}"]


def _format_files(files: list[Path]) -> str:
    """The CSVs written: all of them for a few days, the folder and the range for many."""
    if len(files) <= 3:
        return "CSV: " + ", ".join(str(p) for p in files)
    return f"CSV: {len(files)} daily files in {files[0].parent}/, {files[0].name} to {files[-1].name}"


def _format_costs(costs: list[PlanCost], current: str | None, feed_in_tariff: float) -> list[str]:
    if not costs:
        return []
    width = max(len(f"{c.plan_id} ({c.supplier})") for c in costs)
    fit = f", export paid {feed_in_tariff:g}/kWh" if feed_in_tariff else ""
    lines = [f"  {'cost per plan':<{width + 2}} {'without PV':>10} {'with PV':>10}"
             f"   (current plan: {current or 'none'}{fit})"]
    for c in rank(costs):
        name = f"{c.plan_id} ({c.supplier})"
        lines.append(f"    {name:<{width}} {c.cost:10.2f} {c.cost_with_pv:10.2f}")
    best, best_pv = rank(costs)[0], rank(costs, with_pv=True)[0]
    lines.append(f"  recommended plan: {best.plan_id} ({best.supplier}), {best.cost:.2f} without PV; "
                 f"with PV: {best_pv.plan_id} ({best_pv.supplier}), {best_pv.cost_with_pv:.2f}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    p.add_argument("--timezone", metavar="TZ", help="IANA time zone (overrides config 'timezone')")
    p.add_argument("--seed", type=int, metavar="N", help="meter seed (overrides meter.seed)")
    p.add_argument("--output", type=Path, metavar="DIR",
                   help=f"directory for the CSV files (default: ./{DEFAULT_OUTPUT})")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help=f"YAML config (default: {configmod.DEFAULT_PATH} when readable)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--broker", choices=("rabbitmq", "none"), default="rabbitmq",
                   help="'none' runs the same pipeline in process, without RabbitMQ")
    p.add_argument("--plot", type=Path, metavar="FILE.png",
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
    if args.timezone is not None:
        try:
            configmod.check_string(args.timezone, "--timezone", "timezone")
        except configmod.ConfigError as exc:
            raise configmod.ConfigError("--timezone", "", exc.problem) from None
        cfg = dataclasses.replace(cfg, timezone=args.timezone)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, meter=dataclasses.replace(cfg.meter, seed=args.seed))
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
    logsetup.setup("INFO" if args.verbose else "WARNING")
    if args.plot is not None:
        from pvsim.cli import plot
        if (problem := plot.missing()) is not None:
            print(f"pvsim-run: {problem}", file=sys.stderr)
            return os.EX_UNAVAILABLE
    try:
        cfg = apply_overrides(load_config(args.config), args)
        broker.check_url(cfg)
        opts = RunOptions(
            date=args.date or dt.datetime.now(cfg.tz).date(), days=args.days, step=args.step,
            speed=None if args.accelerated else (args.speed or 1.0),
            output=args.output or Path(DEFAULT_OUTPUT), broker=args.broker,
            progress=sys.stderr.isatty() and not args.json)
        summary = simulate(cfg, opts)
    except (configmod.ConfigError, broker.BrokerUnavailable, SinkError, MessageRejected) as exc:
        print(f"pvsim-run: {exc}", file=sys.stderr)
        return exc.exit_code  # 78, 69, 73 or 70
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


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from None


def _year(text: str) -> int:
    if not (text.isdigit() and 1971 <= int(text) <= 9998):
        raise argparse.ArgumentTypeError(f"not a year from 1971 to 9998: {text!r}")
    return int(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
