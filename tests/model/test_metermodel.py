import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pvsim.model.clock import day_bounds
from pvsim.model.metermodel import MAX_W, Building, MeterModel, Uniform, read

TZ = ZoneInfo("Europe/Madrid")
MONDAY = dt.date(2026, 6, 22)
LOADS = {"building": Building(), "uniform": Uniform(MAX_W)}


def day(model: MeterModel, date: dt.date = MONDAY, step: int = 1):
    start, end = day_bounds(date, TZ)
    return [r.power_w for r in read([model], range(start, end, step), TZ)]


@pytest.mark.parametrize("kind", ["building", "uniform"])
def test_every_reading_is_within_0_and_9000_w(kind):
    values = day(MeterModel("m", 1, LOADS[kind]))
    assert len(values) == 86400
    assert all(0.0 <= v <= MAX_W for v in values)


def test_uniform_spans_the_whole_range():
    values = day(MeterModel("m", 1, LOADS["uniform"]))
    assert min(values) < 100 and max(values) > 8900
    assert 4300 < sum(values) / len(values) < 4700


@pytest.mark.parametrize("kind", ["building", "uniform"])
def test_same_seed_same_readings_and_other_seed_other_readings(kind):
    a = day(MeterModel("m", 42, LOADS[kind]), step=60)
    assert a == day(MeterModel("m", 42, LOADS[kind]), step=60)
    assert a != day(MeterModel("m", 43, LOADS[kind]), step=60)
    assert a != day(MeterModel("other", 42, LOADS[kind]), step=60)


def test_a_reading_depends_on_its_instant_not_on_where_the_run_started():
    model = MeterModel("m", 5)
    start, _ = day_bounds(MONDAY, TZ)
    whole = list(read([model], range(start, start + 7200), TZ))
    later = list(read([model], range(start + 3600, start + 7200), TZ))
    assert whole[3600:] == later


def test_building_load_is_low_at_night_high_in_working_hours_lower_at_weekends():
    values = day(MeterModel("m", 7))
    night = sum(values[0:4 * 3600]) / (4 * 3600)
    work = sum(values[9 * 3600:17 * 3600]) / (8 * 3600)
    assert night < 1500 and work > 4000
    sunday = day(MeterModel("m", 7), dt.date(2026, 6, 21))
    assert sum(sunday) < 0.75 * sum(values)


def test_building_load_varies_from_second_to_second():
    values = day(MeterModel("m", 7))[36000:36600]
    assert len(set(values)) > 500
