"""pvsim-run: the command line of a run (pvsim.run.simulation) and of its summary.

    pvsim-run --accelerated [--date YYYY-MM-DD] [--days N | --year YYYY] [--step SECONDS] [--timezone TZ]
              [--seed N] [--output DIR] [--config FILE] [--json] [--broker rabbitmq|none]
              [--plot FILE.png] [--jobs N]

This module reads the flags into the config and the run's options, refuses days no message can
carry, runs the simulation, and prints its summary as text or JSON (pvsim.cli.render) and
draws it with --plot (pvsim.cli.plot, needs matplotlib); an expected failure (config, RabbitMQ,
the output directory, a rejected message, a worker's) is one line on stderr and its exit status.
Without --accelerated the run paces at real time, or at --speed FACTOR; an accelerated run of
several days shares them among worker processes (--jobs, default one per CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from pvsim import __version__, config as configmod, logsetup
from pvsim.cli.render import format_summary, summary_json
from pvsim.model.clock import local_midnight
from pvsim.model.shard import MAX_SHARDS
from pvsim.pipeline import broker
from pvsim.pipeline.csvsink import SinkError
from pvsim.pipeline.messages import MAX_INSTANT
from pvsim.pipeline.transport import MessageRejected
from pvsim.run.simulation import DEFAULT_OUTPUT, RunOptions, simulate
from pvsim.run.summary import RunSummary
from pvsim.run.workers import RunFailed, available_cpus

log = logging.getLogger("pvsim.cli.run")

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
    """pvsim-run: 0 once the summary is printed; else one line on stderr and its exit status."""
    parser = build_parser()
    args = parse_args(parser, argv)
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
        summary = simulate(cfg, run_options(args, date))
    except (configmod.ConfigError, broker.BrokerError, SinkError, MessageRejected,
            RunFailed) as exc:
        print(configmod.one_line(f"pvsim-run: {exc}", ERROR_CHARS), file=sys.stderr)
        return exc.exit_code  # 78, 69, 73 or 70 (RunFailed: a worker's)
    except KeyboardInterrupt:
        print("pvsim-run: interrupted; the CSV holds the rows written so far", file=sys.stderr)
        return 130
    return _show(summary, args, cfg.tz)


def parse_args(parser: argparse.ArgumentParser,
               argv: Sequence[str] | None) -> argparse.Namespace:
    """The flags, checked together (argparse checks each alone); --year becomes its days.
    A wrong combination exits with status 2 and the usage, as argparse does."""
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
    return args


def run_options(args: argparse.Namespace, date: dt.date) -> RunOptions:
    """The run's options from the flags: the progress bar on a terminal only (never under
    --json), and an accelerated run's days shared among one worker per CPU unless --jobs."""
    return RunOptions(
        date=date, days=args.days, step=args.step,
        speed=None if args.accelerated else (args.speed or 1.0),
        output=args.output or Path(DEFAULT_OUTPUT), broker=args.broker,
        progress=sys.stderr.isatty() and not args.json,
        jobs=args.jobs or (min(available_cpus(), args.days) if args.accelerated else 1))


def _show(summary: RunSummary, args: argparse.Namespace, tz: ZoneInfo) -> int:
    """Print the summary (text, or JSON with --json) and draw --plot: 0, or 73 when the plot
    cannot be written."""
    if args.json:
        print(json.dumps(summary_json(summary), indent=2))
    else:
        print(format_summary(summary))
    if args.plot is not None:
        try:
            _plot(summary, args.plot, tz)
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
