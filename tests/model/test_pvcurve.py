import csv
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from tests.support.paths import ROOT
from pvsim.model.pvcurve import REFERENCE_KNOTS, PvCurve
from pvsim.model.pvmodels import Clouds

REFERENCE = ROOT / "docs" / "reference" / "pv-curve-hourly.csv"
UTC = ZoneInfo("UTC")
MIDNIGHT_UTC = 1_782_000_000  # 2026-06-21T00:00:00Z: the chart in UTC reads instant - this


def hm(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 3600 + int(m) * 60


def energy_kwh(curve: PvCurve) -> float:
    """Clear-sky energy over a 24-hour day, exact: the curve is linear between its knots."""
    xs = [hm(t) for t, _ in REFERENCE_KNOTS]
    ys = [curve.clear_sky_kw(x) for x in xs]
    return sum((ys[i] + ys[i + 1]) / 2 * (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)) / 3600


HOURLY = [("00:00", 0.00), ("05:00", 0.00), ("05:22", 0.00), ("06:00", 0.09), ("07:00", 0.21),
          ("08:00", 0.34), ("09:00", 0.91), ("10:00", 1.71), ("11:00", 2.34), ("12:00", 2.82),
          ("13:00", 3.10), ("14:00", 3.22), ("14:10", 3.25), ("15:00", 3.15), ("16:00", 2.98),
          ("17:00", 2.56), ("18:00", 1.95), ("19:00", 1.18), ("20:00", 0.21), ("20:56", 0.00),
          ("21:00", 0.00), ("24:00", 0.00)]


@pytest.mark.parametrize("time,kw", HOURLY)
def test_reproduces_every_value_read_off_the_chart(time, kw):
    assert PvCurve(UTC).clear_sky_kw(hm(time)) == pytest.approx(kw, abs=1e-9)


def test_reference_table_matches_the_chart_values():
    with open(REFERENCE) as f:
        rows = [(r["time"], float(r["pv_kw"])) for r in csv.DictReader(f)]
    assert rows == HOURLY


def test_zero_at_night_and_positive_in_daylight():
    chart = PvCurve(UTC)
    for s in range(0, hm("05:22"), 60):
        assert chart.power_kw(MIDNIGHT_UTC + s) == 0.0
    for s in range(hm("20:56"), 86400, 60):
        assert chart.power_kw(MIDNIGHT_UTC + s) == 0.0
    for s in range(hm("05:30"), hm("20:50"), 60):
        assert chart.power_kw(MIDNIGHT_UTC + s) > 0.0


def test_peak_is_3_25_kw_at_14_10_and_energy_is_about_26_8_kwh():
    chart = PvCurve(UTC)
    values = [chart.power_kw(MIDNIGHT_UTC + s) for s in range(86400)]
    assert max(values) == pytest.approx(3.25)
    assert values.index(max(values)) == hm("14:10")
    assert energy_kwh(chart) == pytest.approx(26.8, abs=0.05)
    assert sum(values) / 3600 == pytest.approx(energy_kwh(chart), rel=1e-4)


def test_slow_rise_before_eight_then_steep():
    chart = PvCurve(UTC)
    morning = chart.clear_sky_kw(hm("08:00")) - chart.clear_sky_kw(hm("06:00"))
    climb = chart.clear_sky_kw(hm("10:00")) - chart.clear_sky_kw(hm("08:00"))
    assert morning < 0.3 and climb > 1.3


def test_scales_to_configured_peak():
    big = PvCurve(UTC, peak_kw=6.5)
    assert big.power_kw(MIDNIGHT_UTC + hm("14:10")) == pytest.approx(6.5)
    assert energy_kwh(big) == pytest.approx(2 * energy_kwh(PvCurve(UTC)))


def test_cloud_noise_is_bounded_deterministic_and_seeded():
    clear = PvCurve(UTC)
    cloudy = Clouds(clear, 0.4, 3)
    again = Clouds(clear, 0.4, 3)
    other = Clouds(clear, 0.4, 4)
    base = MIDNIGHT_UTC
    diffs = 0
    for i in range(0, 86400, 97):
        c, n = clear.power_kw(base + i), cloudy.power_kw(base + i)
        assert c == clear.clear_sky_kw(i)
        assert c * 0.6 - 1e-12 <= n <= c + 1e-12
        assert n == again.power_kw(base + i)
        diffs += n != other.power_kw(base + i)
    assert diffs > 100
    assert cloudy.power_kw(base + hm("02:00")) == 0.0


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        Clouds(PvCurve(UTC), 1.5, 0)
    with pytest.raises(ValueError):
        PvCurve(UTC, knots=(("00:00", 0.0), ("12:00", 1.0)))


def test_indexed_by_local_wall_time_on_a_dst_day():
    tz = ZoneInfo("Europe/Madrid")
    # 2026-03-29: clocks jump from 02:00 to 03:00; 14:10 local is still the peak.
    chart = PvCurve(tz)
    peak = dt.datetime(2026, 3, 29, 14, 10, tzinfo=tz)
    assert chart.power_kw(int(peak.timestamp())) == pytest.approx(3.25)
    assert chart.power_kw(int(peak.timestamp()) - 600) < 3.25  # 14:00 that day
    summer_utc = dt.datetime(2026, 6, 21, 12, 10, tzinfo=dt.timezone.utc)  # 14:10 in Madrid
    assert chart.power_kw(int(summer_utc.timestamp())) == pytest.approx(3.25)
    winter_utc = dt.datetime(2026, 12, 21, 13, 10, tzinfo=dt.timezone.utc)  # 14:10 in Madrid
    assert chart.power_kw(int(winter_utc.timestamp())) == pytest.approx(3.25)
    # The day the clocks jump: 6 hours after 01:00 the clock shows 08:00, and the chart is read there.
    one = int(dt.datetime(2026, 3, 29, 1, 0, tzinfo=tz).timestamp())
    assert chart.power_kw(one + 6 * 3600) == chart.clear_sky_kw(hm("08:00")) > 0.3
