"""What pvsim-run prints of its summary (pvsim.run.summary): text for a reader, or with --json
a JSON document for a program. Pure: strings and dicts; main prints them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from pvsim.model.energy import EnergyBalance
from pvsim.model.plans import PlanCost, rank
from pvsim.run.summary import RunSummary, Savings


def summary_json(s: RunSummary) -> dict:
    """The summary as --json prints it: the energy figures and costs (not the average days: the
    CSVs hold the same readings)."""
    return {
        "date": s.date.isoformat(), "days": s.days, "step_seconds": s.step,
        "timezone": s.timezone, "transport": s.transport, "readings": s.readings,
        "pv_model": s.models["pv"], "load_model": s.models["load"],
        "currency": s.currency,
        "elapsed_seconds": round(s.elapsed_seconds, 3),
        "readings_per_second": round(s.readings / s.elapsed_seconds) if s.elapsed_seconds else None,
        "files": [str(p) for p in s.files],
        "meters": {m: b.to_dict() for m, b in s.meters.items()},
        "costs": {m: _costs_json(c, s.plans.get(m), s.feed_in_tariff, s.currency)
                  for m, c in s.costs.items()},
        "months": {m: {month: b.to_dict() for month, b in months.items()}
                   for m, months in s.months.items()},
        "pv_savings": {m: dataclasses.asdict(s.savings(m)) for m in s.costs},
        "limits": {"meter_max_w": s.max_w, "max_power_w": s.max_power_w},
        "clipped_readings": s.clipped,
    }


def _costs_json(costs: list[PlanCost], current: str | None, feed_in_tariff: float,
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


def _share(value: float | None) -> str:
    """A share as a percentage, or '-' where there is none."""
    return "-" if value is None else f"{value:.1%}"


SUMMARY_METERS = 10  # a run of more meters prints its fleet's sums, each meter's in --json


def format_summary(s: RunSummary) -> str:
    """The summary as text: the run, the models, then each meter's energy, months, plans and
    savings (a fleet's sums only, past SUMMARY_METERS meters), and the CSVs written."""
    tz = ZoneInfo(s.timezone)
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
    for meter, balance in s.meters.items():
        lines += _format_meter(s, meter, balance, tz)
    lines.append(_format_files(s.files))
    return "\n".join(lines)


def _format_meter(s: RunSummary, meter: str, b: EnergyBalance, tz: ZoneInfo) -> list[str]:
    """One meter's energy and peaks, its clipped readings, months, plans and savings."""
    def at(instant: int | None) -> str:
        return "-" if instant is None else dt.datetime.fromtimestamp(instant, tz).strftime("%H:%M:%S")

    lines = [
        f"meter {meter}:",
        f"  consumed      {b.consumed_kwh:9.2f} kWh   peak {b.peak_meter.kw:6.2f} kW at "
        f"{at(b.peak_meter.instant)}",
        f"  PV produced   {b.pv_kwh:9.2f} kWh   peak {b.peak_pv.kw:6.2f} kW at "
        f"{at(b.peak_pv.instant)}",
        f"  grid import   {b.import_kwh:9.2f} kWh   peak {max(b.peak_import.kw, 0):6.2f} kW at "
        f"{at(b.peak_import.instant)}",
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
    lines += _format_savings(s.savings(meter), s.plans.get(meter), s.days, s.currency)
    return lines


def _format_fleet(s: RunSummary) -> list[str]:
    """A fleet's energy as one: the sums over its meters (their peaks fall at different
    instants, so none is shown), and where each meter's figures are."""
    b = s.fleet()
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


def _format_savings(saved: Savings, current: str | None, days: int, currency: str) -> list[str]:
    """What the PV plant saves, in one line (none without plans)."""
    if saved.best_plans is None:
        return []
    span = "a year" if days in (365, 366) else f"over {days} day{'s' if days > 1 else ''}"
    mine = (f"{saved.current_plan:.2f} {currency} on the current plan ({current}), "
            if saved.current_plan is not None else "")
    return [f"  the PV plant saves {mine}{saved.best_plans:.2f} {currency} from the best plan "
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
