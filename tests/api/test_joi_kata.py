"""The JOI Energy kata's own controller scenarios, replayed over HTTP against a running pvsim-pv.

Scenarios and values are those of the kata's reference app tests (developer-joyofenergy-python,
tests/controller/). Every one passes as the kata states it, except where the kata asserts
behaviour that docs/reference/joi-energy-api.md lists as a defect pvsim must not have; each such
case says which defect, and what pvsim answers instead.

Its meter-103 posts 35.0 kW: more than the simulated meter's 9 kW (meter.max_w), which real
buildings exceed; pvsim stores and prices it (limits.max_power_w is 10 MW).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

KATA_2020_01_05_10_30 = 1578220200  # iso_format_to_unix_time("2020-01-05T10:30:00"), UTC
KATA_2020_01_05_11_00 = 1578222000


@pytest.fixture
def pv(pvsim_config, daemons):
    daemons.start("pv", pvsim_config)
    return pvsim_config.pv_port


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


# ---- ElectricityReadingController ---------------------------------------------------------------

def test_kata_successfully_add_the_reading_against_new_smart_meter_id(pv):
    body = {"smartMeterId": "meter-11", "electricityReadings": [{"time": 1505825656, "reading": 0.6}]}
    assert call(pv, "POST", "/readings/store", body)[0] == 200


def test_kata_respond_with_404_when_no_readings_found(pv):
    assert call(pv, "GET", "/readings/read/meter-100")[0] == 404


def test_kata_successfully_add_the_reading_against_existing_smart_meter_id(pv):
    first = {"smartMeterId": "meter-100", "electricityReadings": [
        {"time": 1505825838, "reading": 0.6}, {"time": 1505825848, "reading": 0.65}]}
    second = {"smartMeterId": "meter-100", "electricityReadings": [{"time": 1605825849, "reading": 0.7}]}
    assert call(pv, "POST", "/readings/store", first)[0] == 200
    assert call(pv, "POST", "/readings/store", second)[0] == 200
    status, readings = call(pv, "GET", "/readings/read/meter-100")
    assert status == 200
    for expected in ({"time": 1505825838, "reading": 0.6}, {"time": 1505825848, "reading": 0.65},
                     {"time": 1605825849, "reading": 0.7}):
        assert expected in readings


@pytest.mark.parametrize("body", [
    {"electricityReadings": [{"time": 1505825838, "reading": 0.6}]},  # smartMeterId not set
    {"smartMeterId": "meter-11"},                                      # electricityReadings not set
])
def test_kata_respond_with_error_if_a_field_is_not_set(pv, body):
    """The kata (FastAPI) asserts 422. The spec's defect list says the reference app crashed
    with a 500 "instead of a 400": pvsim answers 400 with a problem body, a client error all the
    same, never a 500."""
    status, problem = call(pv, "POST", "/readings/store", body)
    assert status == 400 and problem["status"] == 400 and "missing" in problem["detail"]


# ---- PricePlanComparatorController --------------------------------------------------------------

def test_kata_get_costs_against_all_price_plans(pv):
    status, answer = call(pv, "GET", "/price-plans/compare-all/smart-meter-1")
    assert status == 200
    assert answer["pricePlanId"] == "price-plan-1"
    assert len(answer["pricePlanComparisons"]) == 3


def test_kata_recommend_cheapest_price_plans_no_limit_for_meter_usage(pv):
    """35.0 kW then 5.0 kW half an hour later: 10 kWh. The kata expects 40/80/400, its reference
    app's "cost is average power divided by elapsed hours" defect (20 kW / 0.5 h = 40); pvsim
    answers the energy times the unit rate: 10/20/100."""
    readings = [{"time": KATA_2020_01_05_10_30, "reading": 35.0},
                {"time": KATA_2020_01_05_11_00, "reading": 5.0}]
    assert call(pv, "POST", "/readings/store",
                {"smartMeterId": "meter-103", "electricityReadings": readings})[0] == 200
    status, answer = call(pv, "GET", "/price-plans/recommend/meter-103")
    assert status == 200
    assert answer == [{"price-plan-2": 10.0}, {"price-plan-1": 20.0}, {"price-plan-0": 100.0}]
    kata_expected = [{"price-plan-2": 40}, {"price-plan-1": 80}, {"price-plan-0": 400}]
    assert answer != kata_expected  # the defect, not reproduced
    status, read = call(pv, "GET", "/readings/read/meter-103")
    assert read == [{"reading": 35.0, "time": KATA_2020_01_05_10_30},
                    {"reading": 5.0, "time": KATA_2020_01_05_11_00}]  # stored as posted, unclipped
