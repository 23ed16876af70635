"""Price plans: what a span of energy costs with each supplier, with and without the PV plant.

Pure (no I/O, no clock): the JOI Energy API and the pvsim-run summary both call it with per-day
energy figures and get costs back.

- A plan has a flat unit rate per kWh and optional day-of-week multipliers of it. The energy used
  on a local calendar day is priced at that day's rate: unit rate x the multiplier of the day's
  weekday (Monday first, as `date.weekday()` numbers them; Sunday is 6 - the JOI reference app
  mixed two numberings and never applied a Sunday multiplier).
- "Cost" is the JOI figure: the energy the building consumed (meter kWh), priced per day.
- "Cost with PV" is what the bill would be with the plant: the grid import (the positive part of
  meter - PV) priced per day, minus the exported energy times the feed-in tariff.
Costs are computed unrounded; `round_cost` is for presentation only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pvsim.config import PricingConfig, WEEKDAYS
from pvsim.model.energy import EnergyBalance

COST_DECIMALS = 4


def round_cost(value: float) -> float:
    """A cost as presented (4 decimals; -0.0 becomes 0.0)."""
    return round(value, COST_DECIMALS) + 0.0


@dataclass(frozen=True)
class Plan:
    id: str
    supplier: str
    unit_rate: float
    multipliers: tuple[float, ...] = (1.0,) * 7  # Monday .. Sunday

    @classmethod
    def from_config(cls, plan) -> "Plan":
        mult = tuple(float(plan.peak_multipliers.get(day, 1.0)) for day in WEEKDAYS)
        return cls(plan.id, plan.supplier, float(plan.unit_rate), mult)

    def rate_on(self, day: dt.date) -> float:
        """Price of a kWh used on local date `day`."""
        return self.unit_rate * self.multipliers[day.weekday()]

    def energy_cost(self, kwh_by_day: Iterable[tuple[dt.date, float]]) -> float:
        return sum(kwh * self.rate_on(day) for day, kwh in kwh_by_day)


@dataclass(frozen=True)
class PlanCost:
    """One plan's costs over a span of days (unrounded)."""

    plan_id: str
    supplier: str
    cost: float           # consumption x rate (the JOI figure)
    import_cost: float    # grid import x rate
    export_credit: float  # export x feed-in tariff
    unit_rate: float = 0.0  # breaks ties: with equal costs (no energy), the cheaper rate first

    @property
    def cost_with_pv(self) -> float:
        return self.import_cost - self.export_credit

    @property
    def savings(self) -> float:
        return self.cost - self.cost_with_pv

    def value(self, with_pv: bool) -> float:
        return self.cost_with_pv if with_pv else self.cost

    def to_dict(self, *, camel_case: bool = False) -> dict:
        """The plan's figures as presented (rounded), for the run's JSON summary (snake_case)
        and the JOI API (camelCase, the spelling of JOI's own keys)."""
        figures = {"price_plan_id": self.plan_id, "supplier": self.supplier,
                   "cost": round_cost(self.cost), "cost_with_pv": round_cost(self.cost_with_pv),
                   "grid_import_cost": round_cost(self.import_cost),
                   "export_credit": round_cost(self.export_credit),
                   "pv_savings": round_cost(self.savings)}
        if not camel_case:
            return figures
        return {_camel(key): value for key, value in figures.items()}


@dataclass(frozen=True)
class Pricing:
    """The plans, the meters' accounts and the feed-in tariff, from the config."""

    plans: tuple[Plan, ...]
    accounts: Mapping[str, str]
    feed_in_tariff: float = 0.0

    @classmethod
    def from_config(cls, pricing: PricingConfig) -> "Pricing":
        return cls(tuple(Plan.from_config(p) for p in pricing.plans), dict(pricing.accounts),
                   float(pricing.feed_in_tariff))

    def plan_of(self, meter_id: str) -> str | None:
        return self.accounts.get(meter_id)

    def compare(self, days: Mapping[dt.date, EnergyBalance]) -> list[PlanCost]:
        """Every plan's costs of the per-day energy in `days`, in plan order."""
        return compare(self.plans, days, self.feed_in_tariff)


def compare(plans: Sequence[Plan], days: Mapping[dt.date, EnergyBalance],
            feed_in_tariff: float = 0.0) -> list[PlanCost]:
    consumed = [(day, b.consumed_kwh) for day, b in days.items()]
    imported = [(day, b.import_kwh) for day, b in days.items()]
    credit = sum(b.export_kwh for b in days.values()) * feed_in_tariff
    return [PlanCost(p.id, p.supplier, p.energy_cost(consumed), p.energy_cost(imported), credit,
                     p.unit_rate) for p in plans]


def rank(costs: Sequence[PlanCost], *, with_pv: bool = False) -> list[PlanCost]:
    """Cheapest first; equal costs go by unit rate, then by the configured order (stable sort)."""
    return sorted(costs, key=lambda c: (c.value(with_pv), c.unit_rate))


def recommend(costs: Sequence[PlanCost], limit: int | None = None, *,
              with_pv: bool = False) -> list[PlanCost]:
    """The `limit` cheapest plans (all when None); a negative limit is the caller's error."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    ranked = rank(costs, with_pv=with_pv)
    return ranked if limit is None else ranked[:limit]


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


def joi_list(costs: Iterable[PlanCost], *, with_pv: bool = False) -> list[dict[str, float]]:
    """The JOI shape: one single-key object {plan id: cost} per plan, in the given order."""
    return [{c.plan_id: round_cost(c.value(with_pv))} for c in costs]
