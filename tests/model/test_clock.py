import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pvsim.model.clock import RealClock, SimClock, day_bounds

TZ = ZoneInfo("Europe/Madrid")


@pytest.mark.parametrize("date,hours", [("2026-06-21", 24), ("2026-03-29", 23), ("2026-10-25", 25)])
def test_local_days_last_23_24_or_25_hours(date, hours):
    start, end = day_bounds(dt.date.fromisoformat(date), TZ)
    assert end - start == hours * 3600
    assert dt.datetime.fromtimestamp(start, TZ).strftime("%H:%M") == "00:00"


def test_sim_clock_steps_without_sleeping():
    slept = []
    clock = SimClock(100, 200, 10, sleep=slept.append)
    assert list(clock.ticks()) == list(range(100, 200, 10)) and len(clock) == 10
    assert slept == []


class FakeTime:
    def __init__(self, t: float) -> None:
        self.t = t
        self.sleeps = []

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def test_sim_clock_paces_at_the_requested_speed():
    ft = FakeTime(1000.0)
    clock = SimClock(0, 600, 60, speed=60.0, sleep=ft.sleep, monotonic=ft.now)
    assert len(list(clock.ticks())) == 10
    assert ft.t == pytest.approx(1009.0)  # 540 simulated seconds at 60x = 9 s


def test_real_clock_gives_exactly_3600_whole_seconds_an_hour_without_drift():
    ft = FakeTime(1_782_000_000.37)
    ticks = RealClock(now=ft.now, sleep=ft.sleep).ticks()
    got = []
    for tick in ticks:
        got.append(tick)
        ft.t += 0.013  # work done per tick must not accumulate into drift
        if len(got) == 3600:
            break
    assert got == list(range(1_782_000_001, 1_782_003_601))
    assert ft.t < 1_782_003_601.1


def test_real_clock_yields_every_second_a_stall_or_a_jump_skipped():
    ft = FakeTime(1000.5)
    ticks = RealClock(max_catch_up=86400, now=ft.now, sleep=ft.sleep).ticks()
    assert next(ticks) == 1001
    ft.t += 5  # stalled five seconds: the missed ticks come at once
    assert [next(ticks) for _ in range(5)] == [1002, 1003, 1004, 1005, 1006]
    ft.t += 3600  # suspend for an hour: every second of it, as after a restart
    assert [next(ticks) for _ in range(3601)] == list(range(1007, 4608))


def test_real_clock_past_its_catch_up_skips_the_oldest_and_says_how_many():
    ft = FakeTime(1000.5)
    skipped = []
    ticks = RealClock(max_catch_up=60, now=ft.now, sleep=ft.sleep,
                      on_skip=lambda first, n: skipped.append((first, n))).ticks()
    assert next(ticks) == 1001
    ft.t += 1000  # now 2001.0 (the first tick slept to 1001.0)
    got = [next(ticks) for _ in range(61)]
    assert got == list(range(1941, 2002))   # the last 60 s before now, and now
    assert skipped == [(1002, 939)]         # 1002 .. 1940 lost, reported once


def test_real_clock_never_repeats_an_instant_when_time_goes_back():
    ft = FakeTime(2000.2)
    ticks = RealClock(now=ft.now, sleep=ft.sleep).ticks()
    first = next(ticks)
    ft.t -= 3600  # an NTP step back by an hour
    assert next(ticks) == first + 1
    assert ft.t >= first + 1
    assert max(ft.sleeps[1:]) <= 1.0  # waited in slices: the caller can show it is alive
