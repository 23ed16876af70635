import pytest

from tests.support.energy import integrate
from pvsim.model.energy import EnergyIntegrator, segment_kwh, total


def test_trapezoid_of_constant_and_ramp():
    b = integrate([(0, 2.0, 0.0), (3600, 2.0, 0.0)])
    assert b.consumed_kwh == pytest.approx(2.0) and b.import_kwh == pytest.approx(2.0)
    b = integrate([(0, 0.0, 0.0), (1800, 1.0, 0.0), (3600, 0.0, 0.0)])
    assert b.consumed_kwh == pytest.approx(0.5)


def test_gap_longer_than_limit_is_not_bridged():
    samples = [(0, 1.0, 0.0), (60, 1.0, 0.0), (60 + 7200, 1.0, 0.0), (60 + 7260, 1.0, 0.0)]
    assert integrate(samples, max_gap_seconds=3600).consumed_kwh == pytest.approx(2 * 60 / 3600)
    assert integrate(samples, max_gap_seconds=9000).consumed_kwh == pytest.approx(7320 / 3600)


@pytest.mark.parametrize("n0,n1,imp,exp", [
    (2, 2, 2, 0), (-2, -2, 0, 2), (2, -2, 0.5, 0.5), (-1, 3, 1.125, 0.125), (0, -4, 0, 2),
])
def test_net_split_at_the_zero_crossing(n0, n1, imp, exp):
    assert segment_kwh(1.0, n0, 0.0, n1, 0.0)[2:] == (pytest.approx(imp), pytest.approx(exp))
    assert segment_kwh(1.0, n0 + 5, 5.0, n1 + 5, 5.0)[2:] == (pytest.approx(imp), pytest.approx(exp))


def test_a_segment_is_the_trapezoid_of_meter_and_pv_power():
    consumed, pv, imported, exported = segment_kwh(0.5, 2.0, 1.0, 4.0, 3.0)
    assert (consumed, pv) == (1.5, 1.0)  # (2 + 4) / 2 * 0.5 and (1 + 3) / 2 * 0.5 kWh
    assert (imported, exported) == (0.5, 0.0)
    # net from -2 to +1 kW: export for the first two thirds, import for the last third
    assert segment_kwh(0.25, 1.0, 3.0, 1.0, 0.0) == pytest.approx((0.25, 0.375, 1 / 24, 1 / 6))


def test_import_minus_export_equals_consumed_minus_pv():
    samples = [(t, 1.0 + (t % 7) * 0.3, (t % 11) * 0.4) for t in range(0, 3600, 10)]
    b = integrate(samples)
    assert b.import_kwh - b.export_kwh == pytest.approx(b.consumed_kwh - b.pv_kwh)
    assert b.self_consumed_kwh == pytest.approx(b.pv_kwh - b.export_kwh)
    assert 0 < b.self_consumption <= 1 and 0 < b.self_sufficiency <= 1


def test_single_reading_and_repeated_instant_have_no_energy():
    assert integrate([(5, 3.0, 1.0)]).consumed_kwh == 0.0
    acc = EnergyIntegrator()
    acc.add(5, 3.0, 1.0)
    acc.add(5, 3.0, 1.0)
    assert acc.balance.consumed_kwh == 0.0 and acc.balance.readings == 1
    assert integrate([]).self_consumption is None


def test_peaks_record_value_and_instant():
    b = integrate([(0, 1.0, 0.5), (1, 4.0, 0.2), (2, 2.0, 3.0)])
    assert (b.peak_meter.kw, b.peak_meter.instant) == (4.0, 1)
    assert (b.peak_pv.kw, b.peak_pv.instant) == (3.0, 2)
    assert b.peak_import.kw == pytest.approx(3.8)


def test_total_of_consecutive_spans_equals_one_integration_but_the_seam():
    samples = [(t, 1.0 + (t % 5), (t % 3) * 0.7) for t in range(0, 7200, 60)]
    first, second = integrate(samples[:60]), integrate(samples[60:])
    whole = total([first, second])
    seam = integrate(samples[59:61])
    assert whole.consumed_kwh + seam.consumed_kwh == pytest.approx(integrate(samples).consumed_kwh)
    assert (whole.readings, whole.first, whole.last) == (120, 0, 7140)
    assert whole.peak_meter.kw == max(first.peak_meter.kw, second.peak_meter.kw)
    assert whole.peak_meter.instant == integrate(samples).peak_meter.instant
    assert total([]).readings == 0
