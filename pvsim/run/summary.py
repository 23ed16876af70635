"""pvsim-run's summary: what a run's days came to, per meter, as plain data.

The energy of each meter (in all, per local day summed per month, and its average day per
month), each plan's cost with and without the PV plant (pvsim.model.plans), what the plant
saves, and what the models were. Pure: `summarise` builds it from the run's aggregates
(pvsim.run.aggregators); pvsim.cli.render writes it as text or JSON and pvsim.cli.plot draws it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from pvsim import config as configmod
from pvsim.model import energy
from pvsim.model.energy import EnergyBalance
from pvsim.model.plans import PlanCost, Pricing, rank
from pvsim.run.aggregators import AverageDay, PartialSummary


@dataclass
class RunSummary:
    """A run's summary: what was run, and per meter (keyed by meter id, in the config's order)
    its energy, costs and average days."""

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
    # per meter, 'YYYY-MM': mean power by local time of day, for the plot (not in the JSON: the
    # CSVs hold the same readings; the JSON keeps to the energy figures)
    profiles: dict[str, dict[str, AverageDay]] = field(default_factory=dict)
    currency: str = "EUR"            # pricing.currency: the unit of every cost
    # pv.model and meter.model, and what each means here, for the summary's first lines (a
    # December day of the chart model has midsummer's PV: the summary says it is the chart)
    models: dict[str, str] = field(default_factory=lambda: {"pv": "chart", "load": "building"})
    about_models: dict[str, str] = field(default_factory=dict)

    def fleet(self) -> EnergyBalance:
        """The sums over every meter (their peaks, at different instants, mean little)."""
        return energy.total(self.meters.values())

    def savings(self, meter: str) -> Savings:
        """What the PV plant saves the meter (see `Savings`)."""
        costs, current = self.costs.get(meter, []), self.plans.get(meter)
        if not costs:
            return Savings(None, None)
        best, best_pv = rank(costs)[0], rank(costs, with_pv=True)[0]
        mine = next((c for c in costs if c.plan_id == current), None)
        return Savings(None if mine is None else mine.cost - mine.cost_with_pv,
                       best.cost - best_pv.cost_with_pv)


@dataclass(frozen=True)
class Savings:
    """What a PV plant saves over a run: on the meter's current plan (None without one), and from
    the cheapest plan without PV to the cheapest with it (the plan may change once the plant is
    there); both None without plans."""

    current_plan: float | None
    best_plans: float | None


def summarise(cfg: configmod.Config, partial: PartialSummary, meter_ids: list[str], *,
              date: dt.date, days: int, step: int, transport: str,
              elapsed_seconds: float) -> RunSummary:
    """The summary of a run of `days` local days from `date` at `step` seconds over `transport`,
    from its merged aggregates: each meter's days priced with every plan."""
    pricing = Pricing.from_config(cfg.pricing)
    by_day = {m: partial.days.energy_by_day(m) for m in meter_ids}
    return RunSummary(
        date, days, step, cfg.timezone, transport, partial.readings, partial.files,
        elapsed_seconds,
        meters={m: energy.total(by_day[m].values()) for m in meter_ids},
        costs={m: pricing.compare(by_day[m]) for m in meter_ids},
        plans={m: pricing.plan_of(m) for m in meter_ids}, feed_in_tariff=pricing.feed_in_tariff,
        max_w=cfg.meter.max_w, max_power_w=cfg.limits.max_power_w,
        clipped={m: partial.clipped.get(m, 0) for m in meter_ids},
        months={m: energy.by_month(by_day[m]) for m in meter_ids},
        profiles={m: partial.profiles.average_days(m) for m in meter_ids},
        currency=cfg.pricing.currency, models={"pv": cfg.pv.model, "load": cfg.meter.model},
        about_models={"pv": about_pv(cfg.pv), "load": about_load(cfg.meter)})


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
