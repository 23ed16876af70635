"""`pvsim-run --plot FILE.png`: a figure of the run.

- A run of up to 31 days (`annual` is False): meter, PV and net power over time, read back from
  the run's CSVs, with the energy figures in the legend (`plot_run`).
- A longer run: per meter, one row of panels (`plot_year`): the months as stacked bars of energy
  (consumption split into PV used on site and grid import above zero, PV exported below it), from
  the summary's month balances, and the average day of each month (mean meter and PV power per 15
  minutes of local time) as small multiples, from the ProfileAggregator the run fed, since a
  year's CSVs at 1-second steps (31.5 million rows) are too many to read back. Under the mean
  curves the same colours as the bars mark where PV covers the load, where the grid does and
  where PV exceeds it: of the means, so only a picture of the split the bars give exactly.

matplotlib is an optional dependency (Debian: Recommends python3-matplotlib): it is imported only
here and only when a plot is asked for, with the Agg backend (no display needed). `missing()`
says, before a run starts, whether a plot could be drawn.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from pvsim.model import energy
from pvsim.model.energy import EnergyBalance
from pvsim.pipeline.csvformat import parse_line
from pvsim.run.aggregators import AverageDay

MISSING = "--plot needs matplotlib: apt install python3-matplotlib"
ANNUAL_DAYS = 31  # longer runs get the months and average days: a month's power curve is a blur
ON_SITE, IMPORT, EXPORT = "#e8b511", "#4a7bb7", "#e3702d"  # PV used on site, grid import, export
CONSUMPTION, PV = "0.15", "#c25e00"                           # the average day's two curves


def missing() -> str | None:
    """None when matplotlib can be used, else the one line to tell the user."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return MISSING
    return None


def annual(days: int) -> bool:
    """Whether a run of `days` days is drawn as months and average days (`plot_year`)."""
    return days > ANNUAL_DAYS


def read_series(paths: Iterable[Path]) -> dict[str, list[tuple[dt.datetime, float, float, float]]]:
    """Per meter, (local time, meter kW, PV kW, net kW) of every row in the CSVs, in time order."""
    series: dict[str, list[tuple[dt.datetime, float, float, float]]] = {}
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parsed = parse_line(line)
                if parsed is None:
                    continue
                local, row = parsed
                series.setdefault(row.meter_id, []).append((local, row.meter_kw, row.pv_kw, row.net_kw))
    for rows in series.values():
        rows.sort(key=lambda r: r[0])
    return series


def plot_run(paths: Iterable[Path], out: Path, balances: Mapping[str, EnergyBalance],
             title: str, tz: dt.tzinfo | None = None) -> None:
    """Draw the rows of the CSV files into `out` (PNG, or any format matplotlib knows by suffix)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    series = read_series(paths)
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    ax = fig.subplots()
    ax.axhline(0, color="0.6", linewidth=0.8)
    pv_drawn = False
    for meter, rows in sorted(series.items()):
        b = balances.get(meter, EnergyBalance())
        times = [r[0] for r in rows]
        ax.plot(times, [r[1] for r in rows], linewidth=0.7, zorder=3,
                color="tab:blue" if len(series) == 1 else None,
                label=f"meter {meter}: consumed {b.consumed_kwh:.2f} kWh")
        if not pv_drawn:  # the same plant for every meter
            pv = [r[2] for r in rows]
            ax.fill_between(times, pv, 0, color="gold", alpha=0.35, linewidth=0)
            ax.plot(times, pv, linewidth=1.2, color="darkorange",
                    label=f"PV: produced {b.pv_kwh:.2f} kWh")
            pv_drawn = True
        ax.plot(times, [r[3] for r in rows], linewidth=0.7, zorder=2,
                color="tab:green" if len(series) == 1 else None,
                label=f"net {meter} (meter - PV): grid import {b.import_kwh:.2f} kWh, "
                      f"export {b.export_kwh:.2f} kWh")
    ax.set_title(title)
    ax.set_ylabel("power (kW)")
    ax.set_xlabel(f"local time ({tz})" if tz else "local time")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M" if _one_day(series) else "%m-%d %H:%M",
                                                      tz=tz))
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
    fig.savefig(out, dpi=110)


def _one_day(series: Mapping[str, list]) -> bool:
    days = {r[0].date() for rows in series.values() for r in (rows[:1] + rows[-1:])}
    return len(days) <= 1


def plot_year(out: Path, months: Mapping[str, Mapping[str, EnergyBalance]],
              profiles: Mapping[str, Mapping[str, AverageDay]], title: str) -> None:
    """Draw per meter its months as stacked bars and the average day of each month (see the
    module doc) into `out`; `months` and `profiles` are per meter, then per 'YYYY-MM'."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    meters = list(months) or list(profiles)
    most = max([len(p) for p in profiles.values()] + [1])  # average days of the longest meter
    cols = min(4, most)
    rows = math.ceil(most / cols)
    fig = Figure(figsize=(15, (1.45 * max(rows, 2) + 1.3) * len(meters) + 0.4), layout="constrained")
    fig.suptitle(title, fontsize="large")
    for sub, meter in zip(_as_list(fig.subfigures(len(meters), 1)), meters):
        bars, days = sub.subfigures(1, 2, width_ratios=[1, 1.1])
        _month_bars(bars.subplots(), meter, months.get(meter, {}))
        _average_days(days, meter, profiles.get(meter, {}), rows, cols)
    fig.savefig(out, dpi=100)


def _as_list(subfigures) -> list:
    """matplotlib returns one subfigure bare, several as an array."""
    return list(subfigures.flat) if hasattr(subfigures, "flat") else [subfigures]


def _month_label(month: str, first: bool) -> str:
    """'Jan' under each bar; the year under the first bar and under every January."""
    year, number = month.split("-")
    return calendar.month_abbr[int(number)] + (f"\n{year}" if first or number == "01" else "")


def _month_title(month: str, with_year: bool) -> str:
    """'Jan' over an average day; 'Jan 2026' when the run spans more than one year."""
    year, number = month.split("-")
    return calendar.month_abbr[int(number)] + (f" {year}" if with_year else "")


def _month_bars(ax, meter: str, months: Mapping[str, EnergyBalance]) -> None:
    """Consumption as PV used on site plus grid import above zero; PV exported below it."""
    from matplotlib.lines import Line2D

    x = range(len(months))
    balances = list(months.values())
    on_site = [b.self_consumed_kwh for b in balances]
    imported = [b.import_kwh for b in balances]
    exported = [-b.export_kwh for b in balances]
    total = energy.total(balances)
    ax.bar(x, on_site, color=ON_SITE, label=f"PV used on site: {total.self_consumed_kwh:,.0f} kWh")
    ax.bar(x, imported, bottom=on_site, color=IMPORT, label=f"grid import: {total.import_kwh:,.0f} kWh")
    ax.bar(x, exported, color=EXPORT, label=f"PV exported: {total.export_kwh:,.0f} kWh")
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(list(x), [_month_label(m, i == 0) for i, m in enumerate(months)])
    ax.set_ylabel("energy per month (kWh)\nexport below zero")
    ax.set_title(f"meter {meter}: consumed {total.consumed_kwh:,.0f} kWh, "
                 f"PV produced {total.pv_kwh:,.0f} kWh", fontsize="medium")
    ax.grid(True, axis="y", linewidth=0.4, alpha=0.6)
    ax.set_axisbelow(True)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color=CONSUMPTION, label="average day: mean consumption (kW)"),
                Line2D([], [], color=PV, label="average day: mean PV (kW)")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), borderaxespad=4,
              ncol=2, fontsize="small", frameon=False)  # below the two-line month labels


def _average_days(sub, meter: str, days: Mapping[str, AverageDay], rows: int, cols: int) -> None:
    """Small multiples, one per month, on shared axes: mean consumption and PV by local time."""
    axes = sub.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    sub.suptitle(f"meter {meter}: average day of each month, mean power by local time",
                 fontsize="medium")
    years = {month[:4] for month in days}
    for ax in axes.flat[len(days):]:
        ax.set_axis_off()
    for ax, (month, day) in zip(axes.flat, days.items()):
        _day_curves(ax, day)
        ax.set_title(_month_title(month, len(years) > 1), fontsize="small", pad=2)
        ax.set_xticks([0, 6, 12, 18, 24])
        ax.set_xlim(0, 24)
        ax.tick_params(labelsize="x-small")
        ax.grid(True, linewidth=0.3, alpha=0.6)
    for ax in axes[:, 0]:
        ax.set_ylabel("kW", fontsize="small")
    for ax in axes[-1, :]:
        ax.set_xlabel("local time (h)", fontsize="small")


def _day_curves(ax, day: AverageDay) -> None:
    """The two mean curves, the area under both in the on-site colour and the gaps between them
    in the import or export colour (bins without readings left out)."""
    kept = [(h, m, p) for h, m, p in zip(day.hours(), day.meter_kw, day.pv_kw)
            if m is not None and p is not None]
    hours = [k[0] for k in kept]
    load = [k[1] for k in kept]
    pv = [k[2] for k in kept]
    low = [min(m, p) for m, p in zip(load, pv)]
    ax.fill_between(hours, low, 0, color=ON_SITE, alpha=0.8, linewidth=0)
    ax.fill_between(hours, load, low, color=IMPORT, alpha=0.55, linewidth=0)
    ax.fill_between(hours, pv, low, color=EXPORT, alpha=0.8, linewidth=0)
    ax.plot(hours, load, color=CONSUMPTION, linewidth=0.9)
    ax.plot(hours, pv, color=PV, linewidth=0.9)
