"""Hostile and careless input: refused at admission naming the field, or reported on the object,
and never able to grow the operator's memory or make it trace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .agentutil import condition, create_agent, patch_spec, serve, wait_agent
from .kubeutil import kubectl
from .secutil import agent_body, task_body


def quota_body(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "agentops.dev/v1alpha1", "kind": "Quota", "metadata": {"name": name},
            "spec": {"resource": "publish", "limit": 5, **spec}}


def refused_create(ns: str, body: dict[str, Any], *needles: str) -> str:
    proc = kubectl("create", "-n", ns, "-f", "-", input=json.dumps(body), check=False)
    assert proc.returncode != 0, f"accepted: {json.dumps(body)[:300]}"
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
    return proc.stderr


def operator_rss_mib(operator) -> float:
    status = Path(f"/proc/{operator.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


@pytest.mark.parametrize(("body", "needles"), [
    (quota_body("tz-dir", timeZone="America"), ("spec.timeZone", "not a directory")),
    (quota_body("tz-posix", timeZone="posix/Europe/Berlin"), ("spec.timeZone",)),
    (quota_body("long-window", window="367d"), ("spec.window", "at most 366d")),
    (quota_body("long-window2", window="8785h"), ("spec.window", "at most 366d")),
    (task_body("dup-gates", gates=[{"transition": "InProgress->Review", "gates": [
        {"name": "a", "type": "Job"}, {"name": "a", "type": "Job"}]}]), ("spec.gates[0].gates[1]", "Duplicate")),
    (task_body("dup-moves", gates=[{"transition": "Review->Done"}, {"transition": "Review->Done"}]),
     ("spec.gates[1]", "Duplicate")),
    (task_body("many-gates", gates=[{"transition": "InProgress->Review", "gates": [
        {"name": f"g{i}", "type": "Job"} for i in range(10_000)]}]), ("spec.gates[0].gates", "must have at most")),
    (task_body("huge", description="x" * 100_000), ("spec.description", "Too long")),
    (task_body("bad-sa", gates=[{"transition": "InProgress->Review", "gates": [
        {"name": "a", "type": "Job", "job": {"serviceAccountName": "Not_A_Name"}}]}]),
     ("spec.gates[0].gates[0].job.serviceAccountName",)),
    (task_body("bad-pvc", gates=[{"transition": "InProgress->Review", "gates": [
        {"name": "a", "type": "Job", "job": {"workspaceClaim": "UPPER/case"}}]}]),
     ("spec.gates[0].gates[0].job.workspaceClaim",)),
    (task_body("bad-annotation", gates=[{"transition": "InProgress->Review", "gates": [
        {"name": "a", "type": "Job", "job": {"podAnnotations": {"not a key!": "x"}}}]}]),
     ("spec.gates[0].gates[0].job.podAnnotations", "qualified names")),
    (agent_body("empty-image", image=""), ("spec.image",)),
    (agent_body("space-image", image="busybox latest"), ("spec.image",)),
    (agent_body("bad-label", podLabels={"app": "not a value"}), ("spec.podLabels",)),
    (agent_body("bad-qty", resources={"limits": {"memory": "lots"}}), ("spec.resources.limits", "quantities")),
    (agent_body("host-header", strategy={"type": "canary", "canary": {"steps": [{"analysis": {"metrics": [
        {"name": "m", "http": {"url": "http://x.y.svc/", "headers": [{"name": "Host", "value": "kubernetes"}]}}]}}]}}),
     ("Host header",)),
    (agent_body("many-env", env=[{"name": f"E{i}", "value": "v"} for i in range(1000)]), ("spec.env",)),
])
def test_hostile_specs_are_refused_naming_the_field(ns: str, body: dict[str, Any], needles: tuple[str, ...]) -> None:
    refused_create(ns, body, *needles)


def test_condition_bombs_end_as_errors_with_bounded_memory(ns: str, operator) -> None:
    """`'a' * 10**11` and nested macros: CEL has no string repetition, and the cost meter stops the rest."""
    l10 = "[0,1,2,3,4,5,6,7,8,9]"
    bombs = {
        "repeat": "size('a' * 100000000000) > 0",
        "macros": f"size({l10}.map(a,{l10}.map(b,{l10}.map(c,{l10}.map(d,{l10}.map(e,{l10})))))) > 0",
    }
    before = operator_rss_mib(operator)
    with serve({"/": lambda: (200, "application/json", '{"ok": true}')}) as port:
        for i, (name, expr) in enumerate(bombs.items()):
            metric = {"name": name, "count": 1, "intervalSeconds": 1, "consecutiveErrorLimit": 0,
                      "successCondition": expr, "http": {"url": f"http://127.0.0.1:{port}/"}}
            create_agent(ns, f"bomb-{i}", {"type": "rolling", "rolling": {"analysis": {"metrics": [metric]}}},
                         replicas=1)
            patch_spec(ns, f"bomb-{i}", {"image": "registry.example/agents/coder:2"})
            a = wait_agent(ns, f"bomb-{i}", lambda a: a["status"].get("phase") == "Degraded",
                           what=f"{name} errors")
            rb = condition(a, "RolledBack")
            assert rb["reason"] == "AnalysisError" and "condition" in rb["message"], rb
    after = operator_rss_mib(operator)
    assert after - before < 64, (before, after)
