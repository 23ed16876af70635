"""Price plans: costs by weekday with peak multipliers, with and without PV, ranking; checked
against energy computed by hand. Also the pvsim-run summary's costs."""

import datetime as dt

import pytest

from pvsim import config
from pvsim.model.energy import EnergyBalance
from pvsim.model.plans import Plan, PlanCost, Pricing, compare, joi_list, rank, recommend, round_cost

SAT, SUN, MON = dt.date(2020, 11, 28), dt.date(2020, 11, 29), dt.date(2020, 11, 30)


def bal(consumed=0.0, imp=0.0, exp=0.0, pv=0.0, readings=0) -> EnergyBalance:
    return EnergyBalance(consumed_kwh=consumed, pv_kwh=pv, import_kwh=imp, export_kwh=exp,
                         readings=readings)


def test_default_pricing_is_the_joi_table():
    p = Pricing.from_config(config.Config().pricing)
    assert [(x.id, x.supplier, x.unit_rate) for x in p.plans] == [
        ("price-plan-0", "Dr Evil's Dark Energy", 10.0),
        ("price-plan-1", "The Green Eco", 2.0),
        ("price-plan-2", "Power for Everyone", 1.0)]
    assert p.plan_of("smart-meter-3") == "price-plan-2"
    assert p.plan_of("nobody") is None
    assert p.feed_in_tariff == 0.0


def test_multipliers_from_config_are_numbered_monday_first():
    cfg = config.parse("""
pricing:
  plans:
    - {id: a, supplier: A, unit_rate: 2, peak_multipliers: {sunday: 3, monday: 1.5}}
  accounts: {smart-meter-0: a}
""")
    plan = Plan.from_config(cfg.pricing.plans[0])
    assert plan.multipliers == (1.5, 1, 1, 1, 1, 1, 3)
    assert plan.rate_on(SUN) == 6.0
    assert plan.rate_on(MON) == 3.0
    assert plan.rate_on(SAT) == 2.0


def test_sunday_multiplier_applies_to_sunday_energy_only():
    plan = Plan("p", "S", 10.0, (1, 1, 1, 1, 1, 1, 2))
    # 0.025 kWh on Saturday, 0.041667 kWh on Sunday (a segment cut at midnight)
    assert plan.energy_cost([(SAT, 0.025), (SUN, 0.125 / 3)]) == pytest.approx(0.25 + 0.125 / 3 * 20)


def test_cost_is_energy_times_rate_unrounded():
    energy = 0.1613 / 60  # the JOI example readings, trapezoid over 4 minutes
    costs = compare(Pricing.from_config(config.Config().pricing).plans, {SUN: bal(energy)})
    assert [c.cost for c in costs] == pytest.approx([energy * 10, energy * 2, energy])
    assert [round_cost(c.cost) for c in costs] == [0.0269, 0.0054, 0.0027]


def test_cost_with_pv_is_import_priced_minus_export_credit():
    plans = [Plan("a", "A", 2.0, (1, 1, 1, 1, 1, 1, 3)), Plan("b", "B", 3.0)]
    days = {SAT: bal(10, imp=4, exp=1), SUN: bal(5, imp=2, exp=3)}
    a, b = compare(plans, days, feed_in_tariff=0.5)
    assert a.cost == pytest.approx(10 * 2 + 5 * 6)
    assert a.import_cost == pytest.approx(4 * 2 + 2 * 6)
    assert a.export_credit == pytest.approx(4 * 0.5)
    assert a.cost_with_pv == pytest.approx(20 - 2)
    assert b.cost_with_pv == pytest.approx(6 * 3 - 2)
    assert a.savings == pytest.approx(50 - 18)


def test_rank_and_recommend_cheapest_first_ties_in_plan_order():
    plans = [Plan("x", "X", 1.0), Plan("y", "Y", 1.0), Plan("z", "Z", 0.5)]
    costs = compare(plans, {SAT: bal(4, imp=2)})
    assert [c.plan_id for c in rank(costs)] == ["z", "x", "y"]
    assert [c.plan_id for c in recommend(costs, 2)] == ["z", "x"]
    assert recommend(costs, 0) == []
    assert len(recommend(costs, None)) == len(recommend(costs, 99)) == 3
    with pytest.raises(ValueError):
        recommend(costs, -1)
    assert joi_list(rank(costs)) == [{"z": 2.0}, {"x": 4.0}, {"y": 4.0}]
    assert joi_list(rank(costs, with_pv=True), with_pv=True) == [{"z": 1.0}, {"x": 2.0}, {"y": 2.0}]


def test_ranking_with_pv_can_differ():
    """Plan a is cheap on weekdays, dear on Sundays; the PV covers Sunday's use entirely."""
    plans = [Plan("a", "A", 1.0, (1, 1, 1, 1, 1, 1, 5)), Plan("b", "B", 2.0)]
    costs = compare(plans, {SAT: bal(1, imp=1), SUN: bal(1, imp=0, exp=2)})
    assert [c.plan_id for c in rank(costs)] == ["b", "a"]              # 4 < 6
    assert [c.plan_id for c in rank(costs, with_pv=True)] == ["a", "b"]  # 1 < 2


def test_no_energy_costs_zero():
    costs = compare(Pricing.from_config(config.Config().pricing).plans, {})
    assert all(c.cost == 0 and c.cost_with_pv == 0 for c in costs)


def test_plan_costs_have_one_serialisation_in_two_spellings():
    cost = PlanCost("p", "Supplier", 10.123456, 4.0, 1.00004, 2.0)
    snake = cost.to_dict()
    assert snake == {"price_plan_id": "p", "supplier": "Supplier", "cost": 10.1235,
                     "cost_with_pv": 3.0, "grid_import_cost": 4.0, "export_credit": 1.0,
                     "pv_savings": 7.1235}
    camel = cost.to_dict(camel_case=True)
    assert list(camel) == ["pricePlanId", "supplier", "cost", "costWithPv", "gridImportCost",
                           "exportCredit", "pvSavings"]
    assert list(camel.values()) == list(snake.values())


def test_round_cost():
    assert round_cost(0.00268833) == 0.0027
    assert str(round_cost(-0.00001)) == "0.0"
