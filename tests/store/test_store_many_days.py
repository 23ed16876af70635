"""Issue 18, 4: after 50 POSTs of 366 days each, compare-all for an unrelated meter took 10.5 s
instead of 4 ms. The cause: each day read from its CSV (every day a query walks, the first time)
scanned the whole journal of recent rows for that day's, so the first query cost days x journal
rows. A day's journal rows are now found by their day; what remains is one read per day not
loaded yet, which the API bounds (pv.max_days, the 366-day horizon)."""

from __future__ import annotations

import datetime as dt
from collections import deque
from zoneinfo import ZoneInfo

from pvsim.model.pvcurve import PvCurve
from pvsim.model.reading import Reading
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.pvservice import PvService
from pvsim.store.readingstore import ReadingStore

TZ = ZoneInfo("Europe/Madrid")
TODAY = dt.date(2026, 6, 21)


class CountingDeque(deque):
    """A journal that counts the rows anyone iterates over."""

    examined = 0

    def __iter__(self):
        for item in super().__iter__():
            CountingDeque.examined += 1
            yield item


def test_a_query_over_many_posted_days_examines_each_journal_row_a_bounded_number_of_times(tmp_path):
    store = ReadingStore(tmp_path, TZ, today=lambda: TODAY, journal_rows=20_000)
    store._recent = CountingDeque(maxlen=20_000)
    service = PvService.recovering(PvCurve(TZ), CsvSink(tmp_path), TZ)
    service.listeners.append(store.on_row)
    noon = int(dt.datetime.combine(TODAY, dt.time(12), TZ).timestamp())
    days = 400
    for k in range(4):  # four POSTs of 100 days each, one reading a day, of other meters
        service.process([Reading(f"other-{k}", t, 100.0, TZ)
                         for t in (noon - (1 + d + 100 * k) * 86_400 for d in range(100))])
    service.sync()
    service.process([Reading("mine", t, 500.0, TZ)
                     for t in (noon, noon + 60)])
    service.sync()
    CountingDeque.examined = 0
    days_of_mine = store.energy_by_day("mine")
    assert list(days_of_mine) == [TODAY] and days_of_mine[TODAY].readings == 2
    assert len(store._days) == days + 1  # every day was read once (the linear part left)
    # the journal holds 402 rows; a scan per day read would examine 401 x 402 of them
    assert CountingDeque.examined <= 2 * (days + 2), CountingDeque.examined
    assert sorted(store.meters()) == ["mine"] + sorted(f"other-{k}" for k in range(4))
