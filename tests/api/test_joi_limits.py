"""Issue 18, 4 and 6: what one client can create in all is bounded (a horizon for the future, a
cap on the days with readings), and the caps on meters and days hold under concurrent POSTs,
checked and taken in one step."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

from prometheus_client import CollectorRegistry

from pvsim import config

from pvsim.daemons.httpserver import HttpServer
from pvsim.pipeline.csvformat import all_day_files
from pvsim.store.retention import Retention
from test_joi import NOW, Pipeline, assert_problem, limited

DAY = 86_400
MAX_FUTURE_DAYS = 366  # api.joi.MAX_FUTURE_DAYS, as docs/reference/api.md states it


def day_files_on(directory) -> int:
    return len({day for day, _, _ in all_day_files(directory)})


def test_fifty_posts_of_a_year_of_future_days_make_one_year_of_files(tmp_path):
    """Issue 18, 4: 50 POSTs of 366 distinct future days each made 18,300 day files that
    retention never removes. A reading more than MAX_FUTURE_DAYS ahead is refused whole."""
    joi = limited(tmp_path)
    answers = Counter()
    for k in range(50):
        days = [(NOW + (1 + d + 366 * k) * DAY, 1.0) for d in range(366)]
        code, body = joi.post(f"future-{k}", days)
        answers[code] += 1
        if code != 200:
            assert code == 400 and f"more than {MAX_FUTURE_DAYS} days ahead" in body["detail"]
    assert answers == {200: 1, 400: 49}
    assert day_files_on(tmp_path) == 366
    assert joi.post("future-x", [(NOW + MAX_FUTURE_DAYS * DAY, 1.0)])[0] == 200  # the edge
    assert_problem(joi.post("future-x", [(NOW + MAX_FUTURE_DAYS * DAY + 1, 1.0)]), 400)


def test_posts_of_history_stop_at_pv_max_days(tmp_path):
    """The past is open (JOI's own example is from 2020, kept as posted), so the days with
    readings are capped in all: a POST that would add days past pv.max_days is refused whole;
    days that have readings already stay open."""
    joi = limited(tmp_path, "pv:\n  max_days: 20\n")
    assert joi.post("history", [(NOW - d * DAY, 1.0) for d in range(1, 15)])[0] == 200
    body = assert_problem(joi.post("history", [(NOW - d * DAY, 2.0) for d in range(10, 25)]), 403)
    assert "pv.max_days" in body["detail"] and "14 have some" in body["detail"]
    assert day_files_on(tmp_path) == 14  # nothing of the refused POST
    assert joi.post("history", [(NOW - d * DAY, 2.0) for d in range(10, 21)])[0] == 200  # to 20
    assert joi.post("other", [(NOW - d * DAY + 60, 1.0) for d in range(1, 21)])[0] == 200
    assert_problem(joi.post("history", [(NOW - 9000 * DAY, 1.0)]), 403)
    assert day_files_on(tmp_path) == 20
    restarted = limited(tmp_path, "pv:\n  max_days: 20\n")  # counted from the files
    assert_problem(restarted.post("history", [(NOW - 30 * DAY, 1.0)]), 403)
    assert restarted.post("history", [(NOW - 3 * DAY + 5, 1.0)])[0] == 200


def concurrent_posts(pipeline: Pipeline, bodies: list[dict]) -> list[int]:
    """POST every body at once, each from its own thread over HTTP, against the API as pvsim-pv
    serves it; the answers' status codes."""
    server = HttpServer("127.0.0.1", 0, CollectorRegistry(), lambda: (True, "ok"), pipeline.api).start()
    start = threading.Barrier(len(bodies), timeout=30)
    codes: list[int] = []

    def post(body: dict) -> None:
        req = urllib.request.Request(server.url + "/readings/store", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        start.wait()
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                codes.append(answer.status)
        except urllib.error.HTTPError as err:
            assert json.loads(err.read())["status"] == err.code
            codes.append(err.code)

    threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        server.stop()
    return codes


class SlowDisk(Pipeline):
    """The pipeline of the other tests, whose fsync takes 50 ms (a busy disk): the time between
    a POST's check and its rows that lets concurrent POSTs each see room for one more."""

    def ingest(self, readings):
        time.sleep(0.05)
        return super().ingest(readings)


def test_twelve_concurrent_posts_for_new_meters_store_exactly_pv_max_meters(tmp_path):
    """Issue 18, 6: 12 concurrent POSTs for new meters stored 6 under a cap of 3."""
    pipeline = SlowDisk(tmp_path, config.parse("pv:\n  max_meters: 3\n"))
    pipeline.api.now = lambda: NOW
    codes = concurrent_posts(pipeline, [
        {"smartMeterId": f"new-{k}", "electricityReadings": [{"time": NOW - 60, "reading": 1.0}]}
        for k in range(12)])
    assert Counter(codes) == {200: 3, 403: 9}
    stored = {line.split(",")[1] for _, _, path in all_day_files(tmp_path)
              for line in path.read_text().splitlines()[1:]}
    assert len(stored) == 3 and pipeline.api.store.meters() == stored


def test_concurrent_posts_for_new_days_store_exactly_pv_max_days(tmp_path):
    pipeline = SlowDisk(tmp_path, config.parse("pv:\n  max_days: 4\n"))
    pipeline.api.now = lambda: NOW
    assert pipeline.post("m", [(NOW - 60, 1.0)])[0] == 200  # one day, one meter known
    codes = concurrent_posts(pipeline, [
        {"smartMeterId": "m", "electricityReadings": [{"time": NOW - k * DAY, "reading": 1.0}]}
        for k in range(1, 11)])
    assert Counter(codes) == {200: 3, 403: 7}
    assert day_files_on(tmp_path) == 4


def test_a_meter_whose_readings_retention_removed_no_longer_counts(tmp_path):
    """pvsim-pv's housekeeping tells the API when retention removed days (JoiApi.recount)."""
    joi = limited(tmp_path, "pv:\n  max_meters: 1\n")
    assert joi.post("gone", [(NOW - 500 * DAY, 1.0)])[0] == 200
    assert_problem(joi.post("next", [(NOW - 60, 1.0)]), 403)
    old = NOW - 499 * DAY
    for _, _, path in all_day_files(tmp_path):
        os.utime(path, (old, old))  # posted long ago, not written since
    removed = Retention(tmp_path, 400, joi.cfg.tz, services=lambda: [joi.service],
                        store=joi.api.store, today=lambda: dt.date(2026, 6, 21)).run()
    assert removed.days == 1
    joi.api.recount()
    assert joi.post("next", [(NOW - 60, 1.0)])[0] == 200
