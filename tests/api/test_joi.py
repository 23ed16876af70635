"""The JOI Energy API: every endpoint and error path, the spec's example readings round-trip,
exact costs from hand-computed energy, and one test per defect of the reference app."""

import csv
import json
import random
import threading
import urllib.error
import urllib.request

import pytest
import yaml
from prometheus_client import CollectorRegistry

from pvsim import config
from pvsim.api.joi import JoiApi
from pvsim.daemons.httpserver import HttpServer
from pvsim.model.pvcurve import PvCurve
from pvsim.pipeline.csvsink import CsvSink, SinkError
from pvsim.pipeline.pvservice import PvService

EXAMPLE = [(1606636800, 0.0503), (1606636860, 0.0621), (1606636920, 0.0222),
           (1606636980, 0.0423), (1606637040, 0.0191)]  # GMT 2020-11-29 (a Sunday), 08:00-08:04
# Trapezoid of the example over its 4 one-minute segments, in kWh:
EXAMPLE_KWH = ((0.0503 + 0.0621) + (0.0621 + 0.0222) + (0.0222 + 0.0423) + (0.0423 + 0.0191)) / 2 / 60
SAT_NIGHT, SUN_NOON = 1606528800, 1606651200  # 2020-11-28T02:00Z, 2020-11-29T12:00Z


class Pipeline:
    """A JoiApi over a real PvService + CsvSink, as pvsim-pv wires them (without RabbitMQ)."""

    def __init__(self, directory, cfg=None):
        self.cfg = cfg or config.Config()
        self.directory = directory
        self.sink = CsvSink(directory)
        self.service = PvService(PvCurve(self.cfg.tz), self.sink, self.cfg.tz)
        self.lock = threading.Lock()
        self.api = JoiApi(self.cfg, directory, self.ingest)
        self.service.listeners.append(self.api.on_row)

    def ingest(self, readings):
        with self.lock:
            outcome = self.service.process(readings)
            self.service.sync()
            return outcome

    def __call__(self, method, path, query=None, body=b""):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        lists = {k: v if isinstance(v, list) else [v] for k, v in (query or {}).items()}
        return self.api(method, path, lists, body)

    def post(self, meter, readings):
        return self("POST", "/readings/store", body={
            "smartMeterId": meter, "electricityReadings": [{"time": t, "reading": r} for t, r in readings]})


@pytest.fixture
def joi(tmp_path):
    return Pipeline(tmp_path)


def with_pricing(tmp_path, yaml_text):
    return Pipeline(tmp_path, config.parse(yaml_text))


def assert_problem(answer, status):
    code, body = answer
    assert code == status, body
    assert set(body) >= {"title", "status", "detail"} and body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# ---- the spec's example ---------------------------------------------------------------------

def test_example_readings_round_trip(joi):
    body = {"smartMeterId": "smart-meter-0",
            "electricityReadings": [{"time": t, "reading": r} for t, r in EXAMPLE]}
    assert joi("POST", "/readings/store", body=body) == (200, body)
    assert joi("GET", "/readings/read/smart-meter-0") == (
        200, [{"reading": r, "time": t} for t, r in EXAMPLE])


def test_posted_readings_get_a_pv_value_and_a_csv_row(joi, tmp_path):
    joi.post("smart-meter-0", EXAMPLE)
    with open(tmp_path / "pvsim-2020-11-29.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["meter_kw"]) for r in rows] == [r for _, r in EXAMPLE]
    assert all(float(r["pv_kw"]) > 0 for r in rows)  # 08:00 has sun on the reference curve
    assert rows[0]["timestamp"] == "2020-11-29T08:00:00+00:00"


def test_compare_all_example_costs(joi, tmp_path):
    joi.post("smart-meter-0", EXAMPLE)
    code, body = joi("GET", "/price-plans/compare-all/smart-meter-0")
    assert code == 200
    assert body["pricePlanId"] == "price-plan-0"
    assert body["pricePlanComparisons"] == [
        {"price-plan-2": round(EXAMPLE_KWH * 1, 4)},   # 0.0027
        {"price-plan-1": round(EXAMPLE_KWH * 2, 4)},   # 0.0054
        {"price-plan-0": round(EXAMPLE_KWH * 10, 4)}]  # 0.0269
    assert [list(c.values())[0] for c in body["pricePlanComparisons"]] == [0.0027, 0.0054, 0.0269]
    # with PV: the plant makes more than the meter draws all four minutes, so no import
    with open(tmp_path / "pvsim-2020-11-29.csv", newline="") as f:
        pv = [float(r["pv_kw"]) for r in csv.DictReader(f)]
    pv_kwh = sum(pv[i] + pv[i + 1] for i in range(4)) / 2 / 60
    e = body["energyBalance"]
    assert e["consumedKwh"] == round(EXAMPLE_KWH, 6)
    assert e["pvKwh"] == round(pv_kwh, 6)
    assert e["gridImportKwh"] == 0.0
    assert e["gridExportKwh"] == round(pv_kwh - EXAMPLE_KWH, 6)
    assert e["readings"] == 5 and e["firstReading"] == EXAMPLE[0][0] and e["lastReading"] == EXAMPLE[-1][0]
    # all plans cost 0 with PV: equal costs go by unit rate
    assert body["pricePlanComparisonsWithPv"] == [{"price-plan-2": 0.0}, {"price-plan-1": 0.0},
                                                  {"price-plan-0": 0.0}]


def test_cost_with_pv_subtracts_the_feed_in_tariff(tmp_path):
    joi = with_pricing(tmp_path, "pricing: {feed_in_tariff: 0.5}\n")
    joi.post("smart-meter-0", EXAMPLE)
    body = joi("GET", "/price-plans/compare-all/smart-meter-0")[1]
    export = body["energyBalance"]["gridExportKwh"]
    plan0 = next(p for p in body["pricePlans"] if p["pricePlanId"] == "price-plan-0")
    assert plan0["costWithPv"] == pytest.approx(-0.5 * export, abs=1e-4)
    assert plan0["cost"] == round(EXAMPLE_KWH * 10, 4)


def test_recommend(joi):
    joi.post("smart-meter-0", EXAMPLE)
    full = [{"price-plan-2": 0.0027}, {"price-plan-1": 0.0054}, {"price-plan-0": 0.0269}]
    assert joi("GET", "/price-plans/recommend/smart-meter-0") == (200, full)
    assert joi("GET", "/price-plans/recommend/smart-meter-0", {"limit": "2"}) == (200, full[:2])
    assert joi("GET", "/price-plans/recommend/smart-meter-0", {"limit": "0"}) == (200, [])
    assert joi("GET", "/price-plans/recommend/smart-meter-0", {"limit": "10"}) == (200, full)


def test_recommend_with_pv_ranks_by_net_import(tmp_path):
    """Plan a is dear on Sundays; the meter's Sunday use is at noon, all covered by PV."""
    joi = with_pricing(tmp_path, """
pricing:
  plans:
    - {id: a, supplier: A, unit_rate: 1, peak_multipliers: {sunday: 5}}
    - {id: b, supplier: B, unit_rate: 2}
  accounts: {m: a}
""")
    joi.post("m", [(SAT_NIGHT + 60 * i, 1.0) for i in range(61)])  # 1 kWh, no sun
    joi.post("m", [(SUN_NOON + 60 * i, 1.0) for i in range(61)])   # 1 kWh, PV > 1 kW
    code, plain = joi("GET", "/price-plans/recommend/m")
    assert (code, plain) == (200, [{"b": 4.0}, {"a": 6.0}])
    code, net = joi("GET", "/price-plans/recommend/m", {"withPv": "true"})
    assert (code, net) == (200, [{"a": 1.0}, {"b": 2.0}])
    code, details = joi("GET", "/price-plans/recommend/m",
                        {"withPv": "true", "details": "true", "limit": "1"})
    assert code == 200 and details["recommendations"] == [{"a": 1.0}] and details["withPv"] is True
    assert details["energyBalance"]["consumedKwh"] == 2.0
    assert details["energyBalance"]["gridImportKwh"] == 1.0
    code, cmp = joi("GET", "/price-plans/compare-all/m")
    assert cmp["pricePlanComparisons"] == [{"b": 4.0}, {"a": 6.0}]
    assert cmp["pricePlanComparisonsWithPv"] == [{"a": 1.0}, {"b": 2.0}]


def test_windows_from_and_to(tmp_path):
    joi = with_pricing(tmp_path, "pricing: {plans: [{id: p, supplier: P, unit_rate: 1}], accounts: {m: p}}\n")
    joi.post("m", [(SAT_NIGHT + 60 * i, 1.0) for i in range(61)])
    joi.post("m", [(SUN_NOON + 60 * i, 2.0) for i in range(61)])
    get = lambda q: joi("GET", "/price-plans/compare-all/m", q)[1]["pricePlanComparisons"]  # noqa: E731
    assert get({}) == [{"p": 3.0}]
    assert get({"from": "2020-11-29"}) == [{"p": 2.0}]
    assert get({"to": "2020-11-28"}) == [{"p": 1.0}]  # an ISO date as `to` includes that day
    assert get({"from": "2020-11-28", "to": "2020-11-28"}) == [{"p": 1.0}]
    assert get({"from": str(SAT_NIGHT), "to": str(SAT_NIGHT + 1800)}) == [{"p": 0.5}]
    assert get({"from": "2020-11-28T02:30:00+00:00"}) == [{"p": 2.5}]
    assert joi("GET", "/price-plans/recommend/m", {"from": "2020-11-29"}) == (200, [{"p": 2.0}])
    code, rows = joi("GET", "/readings/read/m", {"from": str(SUN_NOON), "to": str(SUN_NOON + 120)})
    assert (code, rows) == (200, [{"reading": 2.0, "time": SUN_NOON},
                                  {"reading": 2.0, "time": SUN_NOON + 60}])


def test_read_is_paged(joi):
    joi.post("smart-meter-1", [(SUN_NOON + i, 0.5) for i in range(250)])
    code, page = joi("GET", "/readings/read/smart-meter-1", {"limit": "100"})
    assert code == 200 and len(page) == 100 and page[0]["time"] == SUN_NOON
    code, page2 = joi("GET", "/readings/read/smart-meter-1",
                      {"limit": "100", "from": str(page[-1]["time"] + 1)})
    assert page2[0]["time"] == SUN_NOON + 100
    assert_problem(joi("GET", "/readings/read/smart-meter-1", {"limit": "100001"}), 400)
    code, default = joi("GET", "/readings/read/smart-meter-1")
    assert len(default) == 250


def test_a_store_is_visible_at_once_and_after_a_restart(joi, tmp_path):
    joi.post("smart-meter-0", EXAMPLE[:3])
    first = joi("GET", "/price-plans/compare-all/smart-meter-0")
    joi.post("smart-meter-0", EXAMPLE[3:])
    assert len(joi("GET", "/readings/read/smart-meter-0")[1]) == 5
    after = joi("GET", "/price-plans/compare-all/smart-meter-0")
    assert after != first
    restarted = Pipeline(tmp_path)
    assert restarted("GET", "/price-plans/compare-all/smart-meter-0") == after
    assert restarted("GET", "/readings/read/smart-meter-0") == joi("GET", "/readings/read/smart-meter-0")


def test_duplicates_are_dropped_and_still_answer_200(joi):
    assert joi.post("smart-meter-0", EXAMPLE)[0] == 200
    assert joi.post("smart-meter-0", EXAMPLE)[0] == 200
    assert len(joi("GET", "/readings/read/smart-meter-0")[1]) == 5


def test_known_meter_without_readings(joi):
    assert joi("GET", "/readings/read/smart-meter-4") == (200, [])
    code, body = joi("GET", "/price-plans/compare-all/smart-meter-4")
    assert code == 200 and body["pricePlanId"] == "price-plan-1"
    assert body["pricePlanComparisons"] == [{"price-plan-2": 0.0}, {"price-plan-1": 0.0},
                                            {"price-plan-0": 0.0}]


def test_percent_encoded_meter_id(joi):
    joi.post("site:meter-1", EXAMPLE[:2])
    assert len(joi("GET", "/readings/read/site%3Ameter-1")[1]) == 2


# ---- error paths -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/readings/read/nobody", "/price-plans/compare-all/nobody",
                                  "/price-plans/recommend/nobody"])
def test_unknown_meter_is_404(joi, path):
    assert "nobody" in assert_problem(joi("GET", path), 404)["detail"]


@pytest.mark.parametrize("path", ["/", "/readings", "/readings/read", "/readings/read/", "/price-plans/x/m",
                                  "/readings/read/a/b", "/readings/store/x", "/price-plans/compare-all"])
def test_unknown_path_is_404(joi, path):
    assert_problem(joi("GET", path), 404)


@pytest.mark.parametrize("method,path", [("GET", "/readings/store"), ("PUT", "/readings/store"),
                                         ("POST", "/readings/read/smart-meter-0"),
                                         ("DELETE", "/price-plans/compare-all/smart-meter-0"),
                                         ("POST", "/price-plans/recommend/smart-meter-0")])
def test_wrong_method_is_405(joi, method, path):
    body = assert_problem(joi(method, path), 405)
    assert body["allow"]


@pytest.mark.parametrize("body,needle", [
    (b"", "no body"), (b"{not json", "not JSON"), (b"[1]", "object"), (b'"x"', "object"),
    (b'{"smartMeterId": 5, "electricityReadings": []}', "smartMeterId"),
    (b'{"smartMeterId": "m", "electricityReadings": {}}', "list"),
    (b'{"smartMeterId": "m", "electricityReadings": [5]}', "[0]"),
    (b'{"smartMeterId": "m", "electricityReadings": [{"time": "x", "reading": 1}]}', "time"),
    (b'{"smartMeterId": "m", "electricityReadings": [{"time": 1.5, "reading": 1}]}', "time"),
    (b'{"smartMeterId": "m", "electricityReadings": [{"time": true, "reading": 1}]}', "time"),
    (b'{"smartMeterId": "m", "electricityReadings": [{"time": 1, "reading": "1"}]}', "reading"),
    (b'{"smartMeterId": "m", "electricityReadings": [{"time": -1, "reading": 1}]}', "time"),
    (b'{"smartMeterId": "m", "electricityReadings": [{"time": 99999999999999, "reading": 1}]}', "time"),
    (b'{"smartMeterId": "m", "electricityReadings": [{"time": 1, "reading": 10000.5}]}',
     "outside 0-10,000,000 W"),
    (b'{"smartMeterId": "m", "electricityReadings": [{"time": 1, "reading": -0.1}]}', "outside"),
    (b'{"smartMeterId": "m", "electricityReadings": [{"time": 1, "reading": NaN}]}', "NaN"),
    (b'{"smartMeterId": "m", "electricityReadings": [{"time": 1, "reading": 1e999}]}', "large"),
    (b'{"smartMeterId": "a,b", "electricityReadings": [{"time": 1, "reading": 1}]}', "1-64 characters"),
    (b'{"smartMeterId": "=cmd()", "electricityReadings": [{"time": 1, "reading": 1}]}', "1-64 characters"),
    (b'{"smartMeterId": "-2+3", "electricityReadings": [{"time": 1, "reading": 1}]}',
     "the first a letter or a digit"),
    (b'{"smartMeterId": "quo\\"te", "electricityReadings": [{"time": 1, "reading": 1}]}', "1-64 characters"),
    (b'{"smartMeterId": "line\\nbreak", "electricityReadings": [{"time": 1, "reading": 1}]}',
     "1-64 characters"),
    (b'{"smartMeterId": "meter one", "electricityReadings": [{"time": 1, "reading": 1}]}', "1-64 characters"),
    (b'{"smartMeterId": "", "electricityReadings": [{"time": 1, "reading": 1}]}', "meter_id"),
    (b"[" * 100000, "not JSON"),
    (b"\xff\xfe", "not JSON"),
])
def test_bad_posts_are_400(joi, body, needle):
    assert needle in assert_problem(joi("POST", "/readings/store", body=body), 400)["detail"]


def test_a_rejected_post_stores_nothing(joi, tmp_path):
    bad = {"smartMeterId": "m", "electricityReadings": [{"time": 1606636800, "reading": 1},
                                                        {"time": 1606636860, "reading": 10_001}]}
    assert_problem(joi("POST", "/readings/store", body=bad), 400)
    assert not list(tmp_path.glob("*.csv"))


def test_too_many_readings_is_413(joi):
    body = {"smartMeterId": "m", "electricityReadings": [{"time": 1, "reading": 1}] * 100_001}
    assert_problem(joi("POST", "/readings/store", body=body), 413)


def test_storage_failure_is_503_not_500(tmp_path):
    def broken(readings):  # what CsvSink raises on ENOSPC
        raise SinkError("cannot write /var/lib/pvsim/pvsim-1970-01-01.csv: No space left on device")
    api = JoiApi(config.Config(), tmp_path, broken)
    body = json.dumps({"smartMeterId": "m", "electricityReadings": [{"time": 1, "reading": 1}]}).encode()
    assert_problem(api("POST", "/readings/store", {}, body), 503)


@pytest.mark.parametrize("query", [{"limit": "x"}, {"limit": "1.5"}, {"limit": ["1", "2"]},
                                   {"withPv": "maybe"}, {"details": "2"}, {"from": "yesterday"},
                                   {"to": "2020-13-01"}, {"from": "-5"}, {"from": "99999999999999999999"},
                                   {"from": "2020-11-29", "to": "2020-11-27"}, {"to": "9999-12-31"}])
def test_bad_query_parameters_are_400(joi, query):
    assert_problem(joi("GET", "/price-plans/recommend/smart-meter-0", query), 400)


def test_no_input_yields_a_500(joi):
    """Random paths, methods, queries and bodies: every answer is a JSON-serialisable < 500."""
    joi.post("smart-meter-0", EXAMPLE)
    rnd = random.Random(5)
    pieces = ["readings", "store", "read", "price-plans", "compare-all", "recommend", "smart-meter-0",
              "", "%", "%ff", "..", "nobody", "%2F", "\u00e9"]
    values = ["", "-1", "0", "1", "x", "2020-11-29", "1606636800", "true", "1e9", "nan", "\x00"]
    bodies = [b"", b"{}", b"null", b'{"smartMeterId": null}',
              b'{"smartMeterId": "m", "electricityReadings": null}',
              b'{"smartMeterId": "m", "electricityReadings": [{}]}', b'{"electricityReadings": []}',
              b'{"smartMeterId": "m", "electricityReadings": [{"time": 1606636800, "reading": null}]}',
              b'{"smartMeterId": "\\u0000", "electricityReadings": [{"time": 1, "reading": 1}]}',
              bytes(rnd.randrange(256) for _ in range(64))]
    for _ in range(1500):
        path = "/" + "/".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 4)))
        query = {k: [rnd.choice(values) for _ in range(rnd.randint(1, 2))]
                 for k in rnd.sample(["limit", "from", "to", "withPv", "details", "x"], rnd.randint(0, 3))}
        method = rnd.choice(["GET", "POST", "HEAD", "PUT"])
        code, body = joi.api(method, path, query, rnd.choice(bodies))
        assert 200 <= code < 500, (method, path, query, body)
        json.dumps(body, allow_nan=False)


# ---- the reference app's defects, one test each --------------------------------------------------

def test_defect_read_returns_the_asked_meter_not_smart_meter_2(joi):
    joi.post("smart-meter-2", [(1606636800, 1.0)])
    joi.post("smart-meter-0", [(1606636800, 0.5)])
    assert joi("GET", "/readings/read/smart-meter-0")[1] == [{"reading": 0.5, "time": 1606636800}]
    assert joi("GET", "/readings/read/smart-meter-1") == (200, [])


def test_defect_average_reading_is_not_doubled(tmp_path):
    joi = with_pricing(tmp_path, "pricing: {plans: [{id: p, supplier: P, unit_rate: 1}], accounts: {m: p}}\n")
    joi.post("m", [(SAT_NIGHT, 2.0), (SAT_NIGHT + 3600, 2.0)])  # 2 kW for an hour: 2 kWh
    assert joi("GET", "/price-plans/compare-all/m")[1]["pricePlanComparisons"] == [{"p": 2.0}]


def test_defect_recommend_answers_200_with_a_body(joi):
    joi.post("smart-meter-0", EXAMPLE)
    code, body = joi("GET", "/price-plans/recommend/smart-meter-0")
    assert code == 200 and isinstance(body, list) and len(body) == 3


def test_defect_cost_is_energy_not_average_power_divided_by_hours(tmp_path):
    joi = with_pricing(tmp_path, "pricing: {plans: [{id: p, supplier: P, unit_rate: 1}], accounts: {m: p}}\n")
    # 1 kW for 2 hours: energy 2 kWh (the reference computed 1 kW / 2 h = 0.5)
    joi.post("m", [(SAT_NIGHT, 1.0), (SAT_NIGHT + 3600, 1.0), (SAT_NIGHT + 7200, 1.0)])
    assert joi("GET", "/price-plans/compare-all/m")[1]["pricePlanComparisons"] == [{"p": 2.0}]


def test_defect_one_reading_or_one_instant_costs_zero_not_500(joi):
    joi.post("smart-meter-0", [(1606636800, 1.0)])
    joi.post("smart-meter-0", [(1606636800, 2.0)])  # the same instant again: a duplicate
    for path in ("/price-plans/compare-all/smart-meter-0", "/price-plans/recommend/smart-meter-0"):
        code, body = joi("GET", path)
        assert code == 200
    assert body == [{"price-plan-2": 0.0}, {"price-plan-1": 0.0}, {"price-plan-0": 0.0}]


@pytest.mark.parametrize("body", [
    {"electricityReadings": [{"time": 1, "reading": 1}]},
    {"smartMeterId": "smart-meter-0"},
    {"smartMeterId": "smart-meter-0", "electricityReadings": [{"reading": 1}]},
    {"smartMeterId": "smart-meter-0", "electricityReadings": [{"time": 1}]},
])
def test_defect_missing_fields_are_400_not_500(joi, body):
    detail = assert_problem(joi("POST", "/readings/store", body=body), 400)["detail"]
    assert "missing" in detail


def test_defect_meter_without_account_compare_all_is_200_with_null_plan(joi):
    joi.post("no-account", EXAMPLE)
    code, body = joi("GET", "/price-plans/compare-all/no-account")
    assert code == 200 and body["pricePlanId"] is None
    assert body["pricePlanComparisons"][0] == {"price-plan-2": 0.0027}


def test_defect_negative_limit_is_400_not_a_slice_from_the_end(joi):
    joi.post("smart-meter-0", EXAMPLE)
    assert "negative" in assert_problem(
        joi("GET", "/price-plans/recommend/smart-meter-0", {"limit": "-1"}), 400)["detail"]


def test_defect_sunday_peak_multiplier_applies(tmp_path):
    joi = with_pricing(tmp_path, """
pricing:
  plans: [{id: p, supplier: P, unit_rate: 1, peak_multipliers: {sunday: 2, saturday: 3}}]
  accounts: {m: p}
""")
    joi.post("m", EXAMPLE)  # a Sunday
    assert joi("GET", "/price-plans/compare-all/m")[1]["pricePlanComparisons"] == [
        {"p": round(EXAMPLE_KWH * 2, 4)}]


def test_defect_no_debugger_and_no_vulnerable_pyyaml(tmp_path):
    """No debug mode: an internal failure is a plain 500 problem without a traceback (from the
    HTTP server), and the PyYAML in use has the CVE-2020-14343 fix (5.4+, safe_load only)."""
    assert tuple(int(x) for x in yaml.__version__.split(".")[:2]) >= (5, 4)

    def crash(readings):
        raise RuntimeError("secret internals")
    pipeline = Pipeline(tmp_path)
    pipeline.api.ingest = crash
    server = HttpServer("127.0.0.1", 0, CollectorRegistry(), lambda: (True, "ok"), pipeline.api).start()
    try:
        req = urllib.request.Request(server.url + "/readings/store", method="POST", data=json.dumps(
            {"smartMeterId": "m", "electricityReadings": [{"time": 1, "reading": 1}]}).encode(),
            headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        text = err.value.read().decode()
        assert err.value.code == 500 and "Traceback" not in text and "secret" not in text
        assert json.loads(text)["status"] == 500
        pipeline.api.ingest = pipeline.ingest
        with urllib.request.urlopen(req, timeout=10) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(server.url + "/price-plans/recommend/m?limit=1", timeout=10) as answer:
            assert json.loads(answer.read()) == [{"price-plan-2": 0.0}]
    finally:
        server.stop()


# ---- what no client may do to the store --------------------------------------------------------

NOW = 1_782_043_200  # 2026-06-21T12:00:00Z


def limited(tmp_path, yaml_text=""):
    pipeline = Pipeline(tmp_path, config.parse(yaml_text))
    pipeline.api.now = lambda: NOW
    return pipeline


def test_a_live_meters_future_is_refused_and_other_meters_may_post_any_time(tmp_path):
    """smart-meter-0 is pvsim-meter's (meter.id): a reading POSTed for its 12:05 would make the
    meter's own 12:05 reading a duplicate, dropped when it comes."""
    joi = limited(tmp_path)
    body = assert_problem(joi.post("smart-meter-0", [(NOW - 60, 1.0), (NOW + 300, 1.0)]), 400)
    assert "cannot be in the future" in body["detail"] and "meter.id" in body["detail"]
    assert joi("GET", "/readings/read/smart-meter-0")[1] == []  # nothing of it was stored
    assert joi.post("smart-meter-0", [(NOW - 60, 1.0), (NOW + 1, 1.0)])[0] == 200  # skew allowed
    assert joi.post("building-7", [(NOW + 86400, 1.0)])[0] == 200  # a simulated future elsewhere


def test_new_meters_beyond_pv_max_meters_are_refused(tmp_path):
    joi = limited(tmp_path, "pv:\n  max_meters: 3\n")
    for m in ("a", "b", "c"):
        assert joi.post(m, [(NOW - 60, 1.0)])[0] == 200
    body = assert_problem(joi.post("d", [(NOW - 60, 1.0)]), 403)
    assert "pv.max_meters" in body["detail"]
    assert joi.post("a", [(NOW - 30, 1.0)])[0] == 200  # a known meter still may
    restarted = limited(tmp_path, "pv:\n  max_meters: 3\n")  # the count survives a restart
    assert_problem(restarted.post("e", [(NOW - 60, 1.0)]), 403)


def test_one_post_touches_at_most_a_year_of_days(tmp_path):
    joi = limited(tmp_path)
    year = [(NOW - d * 86400, 1.0) for d in range(1, 367)]
    assert joi.post("history", year)[0] == 200
    body = assert_problem(joi.post("history", year + [(NOW - 400 * 86400, 1.0)]), 413)
    assert "367 local days" in body["detail"]


# ---- bad requests are 4xx problem bodies, and store nothing (issue 18, section 5) --------------

def snapshot(directory):
    """The readings the store holds on disk: every CSV's name, size and modification time (a
    read may write a day's aggregate cache, .agg.json, which holds no reading of its own)."""
    return sorted((str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in directory.rglob("*.csv") if p.is_file())


@pytest.mark.parametrize("path", ["/readings/read/m", "/price-plans/compare-all/m",
                                  "/price-plans/recommend/m"])
@pytest.mark.parametrize("name", ["limit", "from", "to"])
def test_numbers_past_pythons_int_string_limit_are_400(joi, path, name):
    """int() refuses strings of more than 4,300 digits with a ValueError, which the query
    parsing did not expect: 500. Leading zeros do not count."""
    joi.post("m", EXAMPLE)
    if name == "limit" and "compare-all" in path:
        return  # compare-all takes no limit
    body = assert_problem(joi("GET", path, {name: "9" * 5000}), 400)
    assert len(body["detail"]) < 200
    assert joi("GET", path, {name: "0" * 5000 + "1606636800"})[0] in (200, 400)  # not a 500


def test_a_reading_too_large_for_a_float_is_400_and_stores_nothing(joi, tmp_path):
    body = (b'{"smartMeterId": "m", "electricityReadings": [{"time": 1606636800, "reading": 1}, '
            b'{"time": 1606636860, "reading": ' + b"9" * 400 + b'}]}')
    assert_problem(joi("POST", "/readings/store", body=body), 400)
    assert not list(tmp_path.glob("*.csv"))


@pytest.mark.parametrize("where", ["key", "value", "meter"])
def test_a_lone_surrogate_anywhere_is_400_before_anything_is_stored(joi, tmp_path, where):
    """JSON's "\\ud800" decodes to a lone surrogate: the readings were stored, then the answer
    (the request's echo) could not be encoded: 500, and the client retried what was written."""
    doc = {"smartMeterId": "m", "electricityReadings": [{"time": 1606636800, "reading": 1}]}
    if where == "key":
        doc["electricityReadings"][0]["note\ud800"] = 1
    elif where == "value":
        doc["comment"] = ["fine", {"deep": "x\udfff"}]
    else:
        doc["smartMeterId"] = "m\ud800"
    body = json.dumps(doc).encode()  # ASCII, with the \ud800 escape as a client sends it
    assert b"\\ud" in body
    assert_problem(joi("POST", "/readings/store", body=body), 400)
    assert not list(tmp_path.glob("*.csv"))
    assert joi("GET", "/readings/read/m")[0] == 404
    paired = {**doc, "smartMeterId": "m", "comment": "\U0001f600"}  # a pair is a character
    paired["electricityReadings"] = [{"time": 1606636800, "reading": 1}]
    assert joi("POST", "/readings/store", body=json.dumps(paired).encode()) == (200, paired)


# The hypothesis tests: the WSGI app as waitress calls it (in process), and the real server.

from hypothesis import HealthCheck, event, given, settings, strategies as st  # noqa: E402

from pvsim.daemons.httpaccess import Access  # noqa: E402
from pvsim.daemons.httpserver import Endpoint  # noqa: E402

METERS = ["m-1", "m-2", "smart-meter-0"]
JOI_PATHS = ["/readings/store", "/readings/read/m-1", "/readings/read/smart-meter-0",
             "/price-plans/compare-all/m-1", "/price-plans/recommend/m-1", "/healthz", "/metrics",
             "/readings/read/", "/readings/read/m-1/x", "/", "//readings//store"]
TIMES = st.integers(1_700_000_000, 1_700_000_000 + 3 * 86400)  # 2023-11-14..17: three days
NASTY = ["\ud800", "x\udfff", "\ud83d\ude00", "\x00", "-m", "9" * 5000, "0" * 4400 + "7", "1e999",
         "NaN", "2020-11-29", "2020-11-29T08:00:00+01:00", "9999-12-31", "0001-01-01", " 12 ",
         "\u0663\u0663", "true", "%ff", "+1", "-0", "1606636800", "-1", "99999999999999999999"]
ODD_TEXT = st.one_of(st.text(max_size=12), st.sampled_from(NASTY))
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10 ** 30), 10 ** 30),
                         st.floats(allow_nan=False, allow_infinity=False), ODD_TEXT,
                         st.sampled_from([10 ** 400, -(10 ** 400), 1e308, -1, 0, 32_503_680_001]))
ANY_JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(ODD_TEXT, inner, max_size=4)), max_leaves=12)


@st.composite
def joi_bodies(draw) -> bytes:
    """A valid POST body, then (mostly) mutated: a field replaced or added, a reading broken,
    something appended; sent as ASCII with escapes or as UTF-8 (surrogates as CESU bytes)."""
    doc = {"smartMeterId": draw(st.sampled_from(METERS)),
           "electricityReadings": [{"time": draw(TIMES), "reading": draw(st.floats(0, 20))}
                                   for _ in range(draw(st.integers(0, 4)))]}
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(["doc", "reading", "reading", "list"]))
        readings = doc.get("electricityReadings")
        if target == "doc":
            doc[draw(st.sampled_from(["smartMeterId", "electricityReadings"]) | ODD_TEXT)] = draw(ANY_JSON)
        elif target == "reading" and isinstance(readings, list) and readings:
            item = draw(st.sampled_from(readings))
            if isinstance(item, dict):
                item[draw(st.sampled_from(["time", "reading"]) | ODD_TEXT)] = draw(ANY_JSON)
        elif isinstance(readings, list):
            readings.append(draw(ANY_JSON))
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def queries(draw) -> str:
    names = draw(st.lists(st.sampled_from(["from", "to", "limit", "withPv", "details"]) | ODD_TEXT,
                          max_size=3))
    pairs = [(n, draw(ODD_TEXT | st.integers(-5, 2_000_000_000).map(str))) for n in names]
    raw = "&".join(f"{urllib.parse.quote(n, errors='surrogatepass')}="
                   f"{urllib.parse.quote(v, errors='surrogatepass')}" for n, v in pairs)
    return draw(st.sampled_from([raw, raw, raw.replace("%", ""), raw + "&&=&x"]))


LATIN1 = st.characters(max_codepoint=255)
PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)
TOKEN = st.sampled_from("abcXYZ019-!#$%&'*+.^`|~\x7f\xe9")  # header-name characters, and two not


@st.composite
def requests_(draw) -> tuple[str, str, str, dict, bytes]:
    """(method, path, query, headers, body): two in three a JOI request a client might send
    (method and path that match, accepted Host, JSON) with a fuzzed query or body; else anything."""
    if draw(st.integers(0, 2)):
        meter = draw(st.sampled_from(METERS) | ODD_TEXT.map(
            lambda t: urllib.parse.quote(t, errors="surrogatepass")))
        method, path = draw(st.sampled_from([
            ("POST", "/readings/store"), ("POST", "/readings/store"), ("GET", "/readings/read/"),
            ("GET", "/price-plans/compare-all/"), ("GET", "/price-plans/recommend/"),
            ("HEAD", "/readings/read/")]))
        if method != "POST":
            path += urllib.parse.unquote(meter, encoding="latin-1")  # as waitress decodes it
        headers = {"Host": "127.0.0.1:9762", "Content-Type": "application/json"}
        body = draw(joi_bodies()) if method == "POST" else b""
        return method, path, draw(queries()), headers, body
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "get"])
                  | st.text(st.characters(min_codepoint=33, max_codepoint=255), max_size=8))
    path = draw(st.sampled_from(JOI_PATHS) | st.text(LATIN1, max_size=30).map(lambda p: "/" + p))
    headers = {"Host": draw(st.sampled_from(["127.0.0.1:9762", "localhost", "evil.example", "",
                                             "[::1]", "[", "a" * 300]))}
    if draw(st.booleans()):
        headers["Content-Type"] = draw(st.sampled_from(
            ["application/json", "application/json; charset=utf-8", "text/plain", ""]))
    for _ in range(draw(st.integers(0, 2))):
        headers[draw(st.sampled_from(["Authorization", "Content-Length", "X-Odd"]))] = \
            draw(st.text(LATIN1, max_size=20))
    body = draw(st.one_of(joi_bodies(), st.binary(max_size=200),
                          ANY_JSON.map(lambda d: json.dumps(d).encode())))
    return method, path, draw(queries()), headers, body


def call_wsgi(endpoint, method, path, query, headers, body):
    """One request as waitress hands it to the app: PATH_INFO and headers latin-1 text."""
    import io
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "9762", "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1"}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(response_headers)
    payload = b"".join(endpoint(environ, start_response))
    return int(answer["status"].split()[0]), answer["headers"], payload


def check_answer(status, headers, payload, stored_before, stored_after, context):
    """What every answer must be: no 5xx but a storage 503, no traceback, JSON or a problem
    body, and the store unchanged unless the answer is 200."""
    assert status < 500 or (status == 503 and b"could not be stored" in payload), context
    assert b"Traceback" not in payload and b"File \"" not in payload, context
    if status != 200:
        assert stored_after == stored_before, (status, payload, context)
    if status >= 400:
        assert headers.get("Content-Type") == "application/problem+json", (status, context)
        doc = json.loads(payload)
        assert doc["status"] == status and doc["title"] and isinstance(doc["detail"], str), context
    elif not headers.get("Content-Type", "").startswith("text/plain"):  # /metrics
        json.loads(payload)


@settings(max_examples=1500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_endpoint_never_answers_5xx_and_stores_only_what_it_accepts(data, tmp_path_factory):
    """Arbitrary methods, paths, query strings, headers and bodies, and mutations of valid POSTs,
    through the endpoint as waitress calls it (in process), against a real pipeline: never a 5xx
    (but a storage 503), never a traceback, always a problem body for an error, nothing stored
    unless the answer is 200, and a 200 POST answers its own request."""
    directory = ENDPOINT_DIR.setdefault("dir", tmp_path_factory.mktemp("fuzz"))
    pipeline = ENDPOINT_DIR.get("pipeline") or ENDPOINT_DIR.setdefault("pipeline", Pipeline(directory))
    endpoint = ENDPOINT_DIR.get("endpoint") or ENDPOINT_DIR.setdefault("endpoint", Endpoint(
        CollectorRegistry(), lambda: (True, "fine"), pipeline.api,
        Access(frozenset({"localhost"})), 64 * 1024))
    method, path, query, headers, body = data.draw(requests_())
    before = snapshot(directory)
    status, response_headers, payload = call_wsgi(endpoint, method, path, query, headers, body)
    check_answer(status, response_headers, payload, before, snapshot(directory),
                 (method, path, query, headers, body[:300]))
    event(f"{method if method in ('GET', 'POST') else 'other'} {status}")
    if status == 200 and method == "POST":
        assert json.loads(payload) == json.loads(body)


ENDPOINT_DIR: dict = {}  # one pipeline for all examples: what one example stores, the next reads


@st.composite
def raw_requests(draw) -> bytes:
    """The bytes of one or more requests as a client may put them on the wire: a request of
    `requests_()` framed with Content-Length (right or wrong), chunked, an odd Transfer-Encoding
    or nothing, an odd version or header, then perhaps cut, spliced or flipped."""
    method, path, query, headers, body = draw(requests_())
    target = urllib.parse.quote(path, safe="/%", encoding="latin-1", errors="replace")
    if query:
        target += "?" + query
    version = draw(st.sampled_from([" HTTP/1.1"] * 4 + [" HTTP/1.0", " HTTP/2.0", "", " HTTP/1.1 x"]))
    framing = draw(st.sampled_from(["length"] * 3 + ["chunked", "chunked", "none", "short", "long",
                                                     "gzip", "chunked-gzip", "two-lengths"]))
    lines = [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"{draw(st.text(TOKEN, min_size=1, max_size=10))}: "
              f"{draw(st.text(PRINTABLE, max_size=20) | st.text(LATIN1, max_size=20))}"
              for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2])))]
    payload = body
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
    elif framing == "short":
        lines.append(f"Content-Length: {max(0, len(body) - draw(st.integers(1, 20)))}")
    elif framing == "long":
        lines.append(f"Content-Length: {len(body) + draw(st.integers(1, 10 ** 8))}")
    elif framing == "two-lengths":
        lines += [f"Content-Length: {len(body)}", "Content-Length: 1"]
    elif framing.startswith("chunked") or framing == "gzip":
        lines.append({"chunked": "Transfer-Encoding: chunked", "gzip": "Transfer-Encoding: gzip",
                      "chunked-gzip": "Transfer-Encoding: chunked, gzip"}[framing])
        cut = draw(st.integers(0, len(body)))
        payload = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n"
                           for part in (body[:cut], body[cut:]) if part) + b"0\r\n\r\n"
    head = "\r\n".join([f"{method} {target}{version}", *lines]) + "\r\n\r\n"
    data = head.encode("latin-1", "replace") + payload
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["cut", "insert", "flip", "repeat"]))
        if how == "cut":
            data = data[:at] + data[at + draw(st.integers(1, 40)):]
        elif how == "insert":
            inserted = st.sampled_from([b"\r\n", b"\n", b"\r", b"\x00", b" ", b":", b"\r\n\r\n",
                                        b"\xff\xfe"]) | st.binary(max_size=8)
            data = data[:at] + draw(inserted) + data[at:]
        elif how == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1:]
        else:
            data = data + data[:at]  # a second, partial request pipelined behind
    return data


def read_answers(data: bytes) -> list[tuple[int, dict, bytes]]:
    """The answers on a connection, one after the other, by their Content-Length."""
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"HTTP/1."), data[:300]
        status, headers, _ = parse_answer(head + b"\r\n\r\n")
        length = int(headers.get("content-length", "0"))
        if rest[:length].startswith(b"HTTP/1.") and length:  # a HEAD answer: no body sent
            length = 0
        answers.append((status, {"Content-Type": headers.get("content-type", "")}, rest[:length]))
        data = rest[length:]
    return answers


def parse_answer(answer: bytes) -> tuple[int, dict, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


SERVER: dict = {}  # one pipeline and server for all examples


@settings(max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=raw_requests())
def test_the_real_server_never_answers_5xx_to_any_bytes(data, tmp_path_factory):
    """The same over loopback to the real waitress server, as raw bytes: waitress's own parser
    (request line, headers, chunked framing, Content-Length, Transfer-Encoding) is reached too.
    An incomplete request may get no answer; every answer given must pass `check_answer`, and the
    store may change only when some answer on the connection is 200."""
    import socket

    if "server" not in SERVER:
        directory = tmp_path_factory.mktemp("fuzz-raw")
        pipeline = Pipeline(directory)
        SERVER.update(dir=directory, server=HttpServer(
            "127.0.0.1", 0, CollectorRegistry(), lambda: (True, "fine"), pipeline.api,
            max_body=64 * 1024).start())
    server, directory = SERVER["server"], SERVER["dir"]
    before = snapshot(directory)
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as c:
        try:  # the server may refuse (and close) before it has read everything
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)  # an unfinished request is then closed, unanswered
        except OSError:
            pass
        try:
            while chunk := c.recv(65536):
                received += chunk
        except ConnectionResetError:  # closed with bytes of ours unread: what came is kept
            pass
    answers = read_answers(received)
    after = snapshot(directory)
    if after != before:
        assert any(status == 200 for status, _, _ in answers), (data[:300], answers)
    for status, headers, payload in answers:
        check_answer(status, headers, payload, before, before if status != 200 else after, data[:300])
        event(f"status {status}")
    event(f"{len(answers)} answers")
