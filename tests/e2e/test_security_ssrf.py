"""SSRF through analysis: an Agent author points HTTP analysis or a Prometheus address at what the
operator can reach and the author cannot (cloud metadata, the API server), or reads a body back.

The session's operator allows exactly 127.0.0.1 (tests/e2e/conftest.py ANALYSIS_ALLOW_LOOPBACK),
as an installation would allow its own Prometheus; the API server stays refused even there.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from .agentutil import condition, create_agent, get_agent, patch_spec, serve, wait_agent
from .kubeutil import kubectl

SECRET = "s3cr3t-token-do-not-leak"


def canary_with(metric: dict[str, Any]) -> dict[str, Any]:
    metric = {"count": 1, "intervalSeconds": 1, "consecutiveErrorLimit": 0, **metric}
    return {"type": "canary", "canary": {"steps": [{"setWeight": 50}, {"analysis": {"metrics": [metric]}}]}}


def roll_back_reason(ns: str, name: str, metric: dict[str, Any], tag: str) -> dict[str, Any]:
    create_agent(ns, name, canary_with(metric), replicas=1)
    patch_spec(ns, name, {"image": f"registry.example/agents/coder:{tag}"})
    a = wait_agent(ns, name, lambda a: a["status"].get("phase") == "Degraded", what=f"{name} analysis refused")
    return a


def api_server_url() -> str:
    cfg = json.loads(kubectl("config", "view", "--minify", "-o", "json").stdout)
    return str(cfg["clusters"][0]["cluster"]["server"])


def test_analysis_urls_outside_the_policy_are_refused_naming_the_field(ns: str, operator) -> None:
    a = roll_back_reason(ns, "meta", {"name": "steal", "successCondition": "true",
                                      "http": {"url": "http://169.254.169.254/latest/meta-data/iam/"}}, "2")
    rb = condition(a, "RolledBack")
    assert rb["status"] == "True" and rb["reason"] == "AnalysisError"
    assert "metric steal: http.url" in rb["message"] and "refused" in rb["message"]
    # The API server, although on the allowed loopback address here: never a target.
    server = urllib.parse.urlsplit(api_server_url())
    a = roll_back_reason(ns, "apisrv", {"name": "prom", "successCondition": "true", "prometheus": {
        "address": f"{server.scheme}://{server.hostname}:{server.port}", "query": "up"}}, "3")
    rb = condition(a, "RolledBack")
    assert "metric prom: prometheus.address" in rb["message"] and "API server" in rb["message"]
    # Another namespace's Service is not this Agent's to probe.
    a = roll_back_reason(ns, "other", {"name": "peek", "http": {
        "url": "http://agentops.kube-system.svc.cluster.local/"}}, "4")
    assert "http.url" in condition(a, "RolledBack")["message"]
    assert "kube-system" in condition(a, "RolledBack")["message"]


def test_bodies_are_not_copied_into_status_and_redirects_not_followed(ns: str, operator) -> None:
    def body() -> tuple[int, str, str]:
        return 200, "application/json", json.dumps({"ok": True, "token": SECRET})

    def redirect() -> tuple[int, str, str]:
        return 302, "text/plain", ""

    with serve({"/body": body, "/redirect": redirect}) as port:
        metric = {"name": "whole", "successCondition": "result.ok == true",
                  "http": {"url": f"http://127.0.0.1:{port}/body"}}
        create_agent(ns, "leak", canary_with(metric), replicas=1)
        old = get_agent(ns, "leak")["status"]["stableRevision"]
        patch_spec(ns, "leak", {"image": "registry.example/agents/coder:2"})
        a = wait_agent(ns, "leak", lambda a: a["status"].get("phase") == "Healthy"
                       and a["status"].get("stableRevision") != old, what="analysis on the whole body passes")
        assert a["status"]["lastAnalysis"]["metrics"][0]["measurements"][-1]["value"] == ""
        assert SECRET not in json.dumps(a["status"])
        a = roll_back_reason(ns, "redir", {"name": "hop", "http": {"url": f"http://127.0.0.1:{port}/redirect"}},
                             "2")
        assert "redirects are not followed" in condition(a, "RolledBack")["message"]
