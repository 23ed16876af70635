"""What ships for Prometheus and Grafana: the alerting rules pass `promtool check rules` and their
own `promtool test rules` unit tests, the dashboard is valid, and every metric the rules or the
dashboard name is one the daemons really export (so renaming a metric fails here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.paths import ROOT
from pvsim.daemons import metrics

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "pvsim-rules.yml"
DASHBOARD = MONITORING / "pvsim-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool not installed (Debian package prometheus)")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "info": ("_info",), "summary": ("_count", "_sum", "_created")}


def exported_series(tmp_path) -> set[str]:
    """Every series name pvsim-meter and pvsim-pv export, from their own registries."""
    names = set()
    for build in (metrics.MeterMetrics, metrics.PvMetrics):
        reg = metrics.registry()
        build(reg)
        reg.register(metrics.FreeSpace(str(tmp_path)))
        for family in reg.collect():
            names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(pvsim_[a-z0-9_]+)\b", expr))


def rule_expressions() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def dashboard_expressions() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in doc["templating"]["list"]]
    return exprs


@needs_promtool
def test_the_rules_pass_promtool_check():
    proc = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_the_rules_pass_their_unit_tests():
    proc = subprocess.run([PROMTOOL, "test", "rules", "pvsim-rules.test.yml"], cwd=MONITORING,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_every_alert_is_unit_tested():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    cases = yaml.safe_load((MONITORING / "pvsim-rules.test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in cases
              for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert alerts == tested, f"alerts without a firing test: {sorted(alerts - tested)}"


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_named_is_one_the_daemons_export(source, tmp_path):
    exported = exported_series(tmp_path)
    exprs = rule_expressions() if source == "rules" else dashboard_expressions()
    named = set().union(*(names_in(e) for e in exprs))
    assert named, "no pvsim metric found: the pattern is off"
    assert named <= exported, f"not exported: {sorted(named - exported)}"


def test_the_dashboard_is_a_grafana_dashboard_showing_what_an_operator_needs():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "pvsim" and doc["__inputs"][0]["pluginId"] == "prometheus"
    for panel in doc["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    shown = set().union(*(names_in(e) for e in dashboard_expressions()))
    for needed in ("pvsim_pv_last_meter_watts", "pvsim_pv_last_pv_watts", "pvsim_pv_last_net_watts",
                   "pvsim_pv_end_to_end_lag_seconds_bucket", "pvsim_pv_readings_written_total",
                   "pvsim_pv_messages_rejected_total", "pvsim_broker_connected", "pvsim_broker_blocked"):
        assert needed in shown, needed


def test_a_renamed_metric_would_be_caught(tmp_path):
    assert names_in("rate(pvsim_pv_rows_written_total[5m])") - exported_series(tmp_path) == \
        {"pvsim_pv_rows_written_total"}
