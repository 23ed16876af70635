"""Both daemons' /metrics pass `promtool check metrics`, and a real Prometheus scrapes them."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse

import pytest

from tests.support.daemons import http_get
from tests.support.net import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


@pytest.fixture
def both(pvsim_config, daemons):
    pvsim_config.write(meter={"id": ["smart-meter-0", "smart-meter-1"]})
    pv = daemons.start("pv", pvsim_config)
    meter = daemons.start("meter", pvsim_config)
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") >= 2, message="rows")
    return meter, pv


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_check_metrics_passes_on_a_real_scrape(both):
    for d in both:
        text = d.metrics()
        assert "pvsim_build_info{" in text
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, f"{d.name}: {r.stdout}{r.stderr}"


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed")
def test_prometheus_scrapes_both_daemons(both, pvsim_config, tmp_path):
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "pvsim-meter",
             "static_configs": [{"targets": [f"127.0.0.1:{pvsim_config.meter_port}"]}]},
            {"job_name": "pvsim-pv",
             "static_configs": [{"targets": [f"127.0.0.1:{pvsim_config.pv_port}"]}]},
        ]}))
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log)
    try:
        def query(expr: str) -> list:
            status, body = http_get(port, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
            if status != 200:
                return []
            return json.loads(body)["data"]["result"]

        def values(expr: str) -> dict[str, float]:
            return {r["metric"].get("meter", r["metric"].get("job")): float(r["value"][1])
                    for r in query(expr)}

        def scraped() -> bool:
            try:
                return (len(values("pvsim_meter_readings_published_total")) == 2
                        and values("pvsim_pv_readings_written_total"))
            except OSError:
                return False
        wait_for(scraped, timeout=30, interval=0.5, message="Prometheus to scrape both daemons")
        published = values("pvsim_meter_readings_published_total")
        assert set(published) == {"smart-meter-0", "smart-meter-1"}
        assert all(v >= 1 for v in published.values())
        assert values("pvsim_pv_readings_written_total")["pvsim-pv"] >= 2
        up = values("up")
        assert up == {"pvsim-meter": 1.0, "pvsim-pv": 1.0}
        assert values("pvsim_broker_connected") == {"pvsim-meter": 1.0, "pvsim-pv": 1.0}
    finally:
        prom.terminate()
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
        log.close()
