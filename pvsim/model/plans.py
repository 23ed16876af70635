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
    """A cost as presented: 4 decimals, -0.0 becomes 0.0 [currency]."""
    return round(value, COST_DECIMALS) + 0.0


@dataclass(frozen=True)
class Plan:
    """A supplier's price plan (`pricing.plans`).

    Parameters
    ----------
    id : str
        The plan's id, as the JOI API names it.
    supplier : str
        The supplier's name.
    unit_rate : float
        Price of a kWh [currency/kWh].
    multipliers : tuple of float, default 1.0 each day
        Monday to Sunday, the factor on the unit rate [unitless].
    """

    id: str
    supplier: str
    unit_rate: float
    multipliers: tuple[float, ...] = (1.0,) * 7

    @classmethod
    def from_config(cls, plan) -> "Plan":
        """The plan of a `pricing.plans` entry (config.PlanConfig)."""
        mult = tuple(float(plan.peak_multipliers.get(day, 1.0)) for day in WEEKDAYS)
        return cls(plan.id, plan.supplier, float(plan.unit_rate), mult)

    def rate_on(self, day: dt.date) -> float:
        """Price of a kWh used on local date `day` [currency/kWh]."""
        return self.unit_rate * self.multipliers[day.weekday()]

    def energy_cost(self, kwh_by_day: Iterable[tuple[dt.date, float]]) -> float:
        """The cost of energy used by local day.

        Parameters
        ----------
        kwh_by_day : iterable of (datetime.date, float)
            (local date, energy [kWh]).

        Returns
        -------
        cost : float
            [currency], unrounded.
        """
        return sum(kwh * self.rate_on(day) for day, kwh in kwh_by_day)


@dataclass(frozen=True)
class PlanCost:
    """One plan's costs over a span of days (unrounded).

    Parameters
    ----------
    plan_id, supplier : str
        The plan's.
    cost : float
        Consumption times the rate [currency]: the JOI figure.
    import_cost : float
        Grid import times the rate [currency].
    export_credit : float
        Export times the feed-in tariff [currency].
    unit_rate : float, default 0.0
        The plan's rate [currency/kWh]: with equal costs (no energy), the cheaper first.
    """

    plan_id: str
    supplier: str
    cost: float
    import_cost: float
    export_credit: float
    unit_rate: float = 0.0

    @property
    def cost_with_pv(self) -> float:
        """Import cost less the export credit [currency]."""
        return self.import_cost - self.export_credit

    @property
    def savings(self) -> float:
        """What the PV saves: cost less cost_with_pv [currency]."""
        return self.cost - self.cost_with_pv

    def value(self, with_pv: bool) -> float:
        """The cost plans are ranked by [currency]: with or without the PV."""
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
    """The plans, the meters' accounts and the feed-in tariff, from the config.

    Parameters
    ----------
    plans : tuple of Plan
        In configured order.
    accounts : mapping of str to str
        Meter id -> its plan's id.
    feed_in_tariff : float, default 0.0
        Paid for a kWh exported [currency/kWh].
    """

    plans: tuple[Plan, ...]
    accounts: Mapping[str, str]
    feed_in_tariff: float = 0.0

    @classmethod
    def from_config(cls, pricing: PricingConfig) -> "Pricing":
        """The pricing of the config's `pricing` section."""
        return cls(tuple(Plan.from_config(p) for p in pricing.plans), dict(pricing.accounts),
                   float(pricing.feed_in_tariff))

    def plan_of(self, meter_id: str) -> str | None:
        """The id of a meter's plan; None without an account."""
        return self.accounts.get(meter_id)

    def compare(self, days: Mapping[dt.date, EnergyBalance]) -> list[PlanCost]:
        """Every plan's costs of the per-day energy in `days`, in plan order."""
        return compare(self.plans, days, self.feed_in_tariff)


def compare(plans: Sequence[Plan], days: Mapping[dt.date, EnergyBalance],
            feed_in_tariff: float = 0.0) -> list[PlanCost]:
    """Every plan's costs of per-day energy.

    Parameters
    ----------
    plans : sequence of Plan
        The plans.
    days : mapping of datetime.date to EnergyBalance
        Local date -> that day's energy [kWh].
    feed_in_tariff : float, default 0.0
        Paid for a kWh exported [currency/kWh].

    Returns
    -------
    costs : list of PlanCost
        In plan order [currency].
    """
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
