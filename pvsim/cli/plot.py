"""`pvsim-run --plot FILE.png`: the run's meter, PV and net power over time, energy in the legend.

matplotlib is an optional dependency (Debian: Recommends python3-matplotlib): it is imported only
here and only when a plot is asked for, with the Agg backend (no display needed). `missing()`
says, before a run starts, whether a plot could be drawn.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path

from pvsim.model.energy import EnergyBalance
from pvsim.pipeline.csvsink import parse_line

MISSING = "--plot needs matplotlib: apt install python3-matplotlib"


def missing() -> str | None:
    """None when matplotlib can be used, else the one line to tell the user."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return MISSING
    return None


def read_series(paths: Iterable[Path]) -> dict[str, list[tuple[dt.datetime, float, float, float]]]:
    """Per meter, (local time, meter kW, PV kW, net kW) of every row in the CSVs, in time order."""
    series: dict[str, list[tuple[dt.datetime, float, float, float]]] = {}
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                values = parse_line(line)
                if values is None:
                    continue
                ts, meter, _, meter_kw, pv_kw, net_kw = values
                series.setdefault(meter, []).append((ts, meter_kw, pv_kw, net_kw))
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
