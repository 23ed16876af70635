"""The annual answer: a year by place and season, per month, priced, and the same figures from
the JOI API over the CSVs the run wrote."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from pvsim import config
from pvsim.api.joi import JoiApi
from pvsim.cli import run as run_module

CLEARSKY = """
timezone: Europe/Madrid
pv: {model: clearsky, latitude: 40.42, longitude: -3.70, altitude_m: 667, peak_kw: 4,
     tilt_deg: 30, linke_turbidity: [3.2, 2.9, 3.3, 3.5, 3.6, 3.6, 3.6, 3.6, 3.5, 3.3, 3.2, 3.1]}
meter: {id: [smart-meter-0, smart-meter-1]}
pricing: {feed_in_tariff: 0.05}
"""


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    """A whole year at hourly steps in process: the CSVs and the JSON summary."""
    out = tmp_path_factory.mktemp("year")
    cfg = out / "pvsim.yaml"
    cfg.write_text(CLEARSKY)
    args = ["--accelerated", "--broker", "none", "--year", "2026", "--step", "3600",
            "--config", str(cfg), "--output", str(out / "csv")]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert run_module.main([*args, "--json"]) == 0
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert run_module.main(args) == 0
    return json.loads(buf.getvalue()), text.getvalue(), out


@pytest.mark.slow
def test_a_year_has_twelve_months_that_add_up(year) -> None:
    summary, _, _ = year
    assert summary["days"] == 365 and summary["readings"] == 2 * 8760
    for meter, months in summary["months"].items():
        assert list(months) == [f"2026-{m:02d}" for m in range(1, 13)]
        total = summary["meters"][meter]
        for key in ("consumed_kwh", "pv_kwh", "import_kwh", "export_kwh"):
            assert sum(m[key] for m in months.values()) == pytest.approx(total[key], rel=1e-9)
        pv = [m["pv_kwh"] for m in months.values()]
        assert min(pv[5:7]) > 1.3 * max(pv[0], pv[11])   # summer against winter, in Madrid


@pytest.mark.slow
def test_the_year_is_priced_and_the_savings_follow(year) -> None:
    summary, text, _ = year
    for meter, costs in summary["costs"].items():
        plans = {p["price_plan_id"]: p for p in costs["plans"]}
        saved = summary["pv_savings"][meter]
        current = plans[costs["current_plan"]]
        assert saved["current_plan"] == pytest.approx(current["cost"] - current["cost_with_pv"])
        best = plans[costs["recommended"]]["cost"]
        best_pv = plans[costs["recommended_with_pv"]]["cost_with_pv"]
        assert saved["best_plans"] == pytest.approx(best - best_pv)
    assert "  month     consumed        PV    import    export self-cons. self-suff." in text
    assert "  2026-07 " in text and "the PV plant saves" in text and ", a year" in text
    assert "CSV: 365 files in " in text and "pvsim-2026-01-01.csv to pvsim-2026-12-31.csv" in text


@pytest.mark.slow
def test_joi_compare_all_over_the_years_csvs_gives_the_summarys_figures(year) -> None:
    summary, _, out = year
    cfg = config.load(out / "pvsim.yaml")
    api = JoiApi(cfg, out / "csv", lambda readings: None)
    for meter in summary["meters"]:
        status, body = api("GET", f"/price-plans/compare-all/{meter}", {}, b"")
        assert status == 200
        ours = {p["price_plan_id"]: p for p in summary["costs"][meter]["plans"]}
        for plan in body["pricePlans"]:
            mine = ours[plan["pricePlanId"]]
            assert plan["cost"] == pytest.approx(mine["cost"], rel=1e-9)
            assert plan["costWithPv"] == pytest.approx(mine["cost_with_pv"], rel=1e-9)
        balance = body["energyBalance"]
        assert balance["pvKwh"] == pytest.approx(summary["meters"][meter]["pv_kwh"], rel=1e-9)


def test_year_excludes_date_and_days_and_wants_a_year(capsys) -> None:
    for args in (["--year", "2026", "--days", "3"], ["--year", "2026", "--date", "2026-01-01"],
                 ["--year", "26"]):
        with pytest.raises(SystemExit):
            run_module.main(["--accelerated", "--broker", "none", *args])
    assert "--year" in capsys.readouterr().err


def _run_json(tmp_path, config_text: str, *extra: str) -> tuple[dict, str]:
    cfg = tmp_path / "pvsim.yaml"
    cfg.write_text(config_text)
    args = ["--accelerated", "--broker", "none", "--year", "2026", "--step", "900",
            "--config", str(cfg), "--output", str(tmp_path / "csv"), *extra]
    buf, text = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert run_module.main([*args, "--json"]) == 0
    with contextlib.redirect_stdout(text):
        assert run_module.main(args) == 0
    return json.loads(buf.getvalue()), text.getvalue()


@pytest.mark.slow
def test_a_households_standard_profile_consumes_its_annual_kwh(tmp_path) -> None:
    summary, text = _run_json(tmp_path, "timezone: Europe/Berlin\n"
                              "meter: {model: slp, profile: H0, annual_kwh: 3500, "
                              "holidays: [2026-01-01, 2026-12-25, 2026-12-26]}\n")
    assert summary["meters"]["smart-meter-0"]["consumed_kwh"] == pytest.approx(3500, rel=0.005)
    months = [m["consumed_kwh"] for m in summary["months"]["smart-meter-0"].values()]
    assert min(months[0], months[11]) > 1.25 * max(months[5:8])  # H0's winter against summer
    assert summary["clipped_readings"]["smart-meter-0"] == 0 and "clipped" not in text


@pytest.mark.slow
def test_a_building_above_the_meter_is_clipped_and_the_summary_says_so(tmp_path) -> None:
    """G0 at 80 MWh a year peaks near 22 kW: the 9 kW meter clips it, and says how often."""
    summary, text = _run_json(tmp_path, "meter: {model: slp, profile: G0, annual_kwh: 80000}\n")
    clipped = summary["clipped_readings"]["smart-meter-0"]
    assert 0 < clipped < 35040
    assert f"clipped to meter.max_w (9000 W) at {clipped:,} of its readings" in text
    assert summary["meters"]["smart-meter-0"]["consumed_kwh"] < 80000
