"""The Grafana dashboard (helm/agentops/dashboards/agentops.json) loads and queries only what exists.

The e2e test (tests/e2e/test_metrics.py) checks its metric names against a running operator's
/metrics; here: the JSON lints, and the name extraction it relies on (tests/promnames.py) is right.
"""

from __future__ import annotations

import json
import re

import pytest

from tests import promnames

CHART = promnames.DASHBOARD.parents[1]


def _dashboard() -> dict:
    return json.loads(promnames.DASHBOARD.read_text())


def test_dashboard_is_valid_json_with_unique_ids_and_targets() -> None:
    d = _dashboard()
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int)
    ids: list[int] = []
    for panel in d["panels"]:
        for p in [panel, *(panel.get("panels") or [])]:
            ids.append(p["id"])
            if p["type"] == "row":
                continue
            assert p.get("targets"), f"panel {p['title']!r} has no targets"
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]
            for t in p["targets"]:
                assert t["expr"].strip(), p["title"]
                assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
                assert t["expr"].count("{") == t["expr"].count("}"), t["expr"]
            pos = p["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, p["title"]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    names = [v["name"] for v in d["templating"]["list"]]
    assert names == ["datasource", "namespace"]


def test_dashboard_queries_only_agentops_metrics() -> None:
    names = promnames.dashboard_metric_names()
    assert names, "no metric names found"
    assert all(n.startswith("agentops_") for n in names), sorted(names)
    # every section of issue 13's metrics is on the board
    for required in ("agentops_tasks", "agentops_tasks_blocked", "agentops_task_stale", "agentops_quota_used",
                     "agentops_quota_limit", "agentops_agents", "agentops_agent_degraded",
                     "agentops_task_phase_duration_seconds_bucket", "agentops_move_latency_seconds_bucket",
                     "agentops_gate_job_duration_seconds_bucket", "agentops_build_info"):
        assert required in names, required


def test_the_chart_ships_the_file_opt_in() -> None:
    template = (CHART / "templates" / "grafana-dashboard.yaml").read_text()
    assert '.Files.Get "dashboards/agentops.json"' in template
    assert re.search(r'^\s+grafana_dashboard: "1"$', template, re.M)
    assert template.lstrip().startswith("{{- /*") and "if .Values.metrics.grafanaDashboard.enabled" in template


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (phase) (agentops_tasks{namespace=~"$namespace"})', {"agentops_tasks"}),
    ("histogram_quantile(0.9, sum by (le, phase) (rate(agentops_task_phase_duration_seconds_bucket"
     '{namespace=~"$namespace", phase!="by"}[$__rate_interval])))', {"agentops_task_phase_duration_seconds_bucket"}),
    ("(a_used + on(ns, q) group_left(x) b_reserved) / (c_limit > 0) and ignoring(le) d offset 5m",
     {"a_used", "b_reserved", "c_limit", "d"}),
    ('max_over_time(x[5m:1m]) unless y{l="z"} or vector(1) * 2e3', {"x", "y"}),
    ("agentops_task_stale > ${threshold}", {"agentops_task_stale"}),
])
def test_metric_names(expr: str, names: set[str]) -> None:
    assert promnames.metric_names(expr) == names


def test_missing_knows_histogram_and_counter_series() -> None:
    text = "\n".join([
        "# HELP h x", "# TYPE h histogram",  # no observation yet: only the family
        "# HELP c_total x", "# TYPE c_total counter", "c_total 3",
        "# HELP g x", "# TYPE g gauge",
    ])
    have = promnames.exposed(text)
    assert promnames.missing(["h_bucket", "h_count", "c_total", "g", "nope", "g_bucket"], have) == [
        "g_bucket", "nope"]
