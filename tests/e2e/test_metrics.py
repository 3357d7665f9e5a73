"""/metrics of a running operator: state gauges from the cache, monitoring results (Stale tasks as a
condition, one Warning Event and a gauge), histograms, and every metric the dashboard queries."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from tests import promnames

from .kubeutil import apply, kget, kubectl, wait_for
from .taskutil import EDITOR, cli, events, phase_is, task


def _scrape(operator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = promnames.scrape(f"http://127.0.0.1:{operator.metrics_port}/metrics")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _series(m: dict, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {k[1]: v for k, v in m.items() if k[0] == name and all(dict(k[1]).get(a) == b for a, b in labels.items())}


def _value(operator, name: str, **labels: str) -> float | None:
    found = _series(_scrape(operator), name, **labels)
    return sum(found.values()) if found else None


def _stale_cond(ns: str, name: str) -> dict | None:
    for c in kget("agenttask", name, ns).get("status", {}).get("conditions", []):
        if c["type"] == "Stale":
            return c
    return None


def test_gauges_and_a_stale_task(team: str, operator) -> None:
    ns = team
    # The namespace policy: InProgress is stale after 2 s (the gate-policy ConfigMaps, key monitoring.yaml).
    apply(f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: policy, namespace: {ns}, labels: {{agentops.dev/gate-policy: "true"}}}}
data:
  monitoring.yaml: |
    staleAfter: {{InProgress: 2s}}
""")
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: tokens, namespace: {ns}}}
spec: {{resource: tokens, limit: 10, window: daily, warningPercent: 50}}
""")
    wait_for(lambda: kget("quotas.agentops.dev", "tokens", ns).get("status", {}).get("resetAt"), what="quota")
    # a task that costs 6 of 10 tokens when assigned (Warning at 50 %), one that will go stale, and one
    # that waits in Backlog for a role nobody has.
    task(ns, "costly", "  costs:\n  - {resource: tokens, amount: 6, phase: Assigned}")
    task(ns, "slow")
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: orphan, namespace: {ns}}}
spec: {{title: orphan, role: nobody-has-this-role}}
""", as_user=EDITOR)
    phase_is(ns, "costly", "Assigned")
    phase_is(ns, "slow", "Assigned")
    cli(ns, "task", "move", "slow", "InProgress", as_user=EDITOR)
    moved = time.monotonic()
    phase_is(ns, "slow", "InProgress")

    # Stale: the condition, once the 2 s have passed (the reconcile wakes itself at that moment)
    cond = wait_for(lambda: (c := _stale_cond(ns, "slow")) and c["status"] == "True" and c, timeout=20,
                    what="slow to be Stale")
    assert time.monotonic() - moved < 12, "the task should be looked at when it becomes stale, not at a resync"
    assert cond["reason"] == "PhaseTooLong" and "InProgress" in cond["message"] and "2s" in cond["message"]
    stale = wait_for(lambda: _value(operator, "agentops_task_stale", namespace=ns, task="slow", phase="InProgress"),
                     timeout=10, what="the stale gauge")
    assert stale >= 2
    assert _series(_scrape(operator), "agentops_task_stale", namespace=ns, task="costly") == {}

    # the state gauges
    m = _scrape(operator)
    assert _series(m, "agentops_build_info")
    assert _series(m, "agentops_tasks", namespace=ns, phase="Assigned") == {
        (("namespace", ns), ("phase", "Assigned")): 1}
    assert sum(_series(m, "agentops_tasks", namespace=ns, phase="InProgress").values()) == 1
    assert sum(_series(m, "agentops_tasks", namespace=ns, phase="Backlog").values()) == 1
    assert sum(_series(m, "agentops_tasks", namespace=ns, phase="Done").values()) == 0
    assert sum(_series(m, "agentops_tasks_blocked", namespace=ns, reason="NoAgentAvailable").values()) == 1
    labels = {"namespace": ns, "quota": "tokens", "resource": "tokens"}
    assert sum(_series(m, "agentops_quota_used", **labels).values()) == 6
    assert sum(_series(m, "agentops_quota_reserved", **labels).values()) == 0
    assert sum(_series(m, "agentops_quota_limit", **labels).values()) == 10
    wait_for(lambda: _value(operator, "agentops_quota_warning", level="Warning", **labels), timeout=20,
             what="the quota warning gauge")
    wait_for(lambda: _value(operator, "agentops_agents", namespace=ns, role="developer", ready="true") == 1,
             timeout=30, what="dev-1 counted ready")
    phase = wait_for(lambda: _series(_scrape(operator), "agentops_agent_rollout_phase", namespace=ns, agent="dev-1"),
                     timeout=30, what="dev-1's rollout phase")
    assert list(phase.values()) == [1]
    assert _series(_scrape(operator), "agentops_agent_degraded", namespace=ns) == {}

    # one Warning Event for the episode, however often the task is looked at meanwhile
    cli(ns, "task", "move", "slow", "InProgress", "--notes", "still working", as_user=EDITOR)  # a spec change
    time.sleep(3)
    stale_events = [e for e in events(ns, "slow") if e["reason"] == "TaskStale"]
    assert len(stale_events) == 1 and stale_events[0]["type"] == "Warning"
    assert stale_events[0].get("count", 1) == 1

    # moved on: the condition clears and the series goes away; the histograms saw the moves
    cli(ns, "task", "move", "slow", "Review", "--output", "pr/1", as_user=EDITOR)
    phase_is(ns, "slow", "Review")
    wait_for(lambda: (c := _stale_cond(ns, "slow")) and c["status"] == "False", timeout=20, what="Stale cleared")
    wait_for(lambda: _value(operator, "agentops_task_stale", namespace=ns) is None, timeout=10,
             what="the stale series to go")
    m = _scrape(operator)
    key = ("agentops_task_phase_duration_seconds_count", (("namespace", ns), ("phase", "InProgress")))
    assert m[key] == 1
    assert m[("agentops_move_latency_seconds_count", (("namespace", ns),))] >= 2
    assert m[("agentops_move_latency_seconds_sum", (("namespace", ns),))] < 30


def test_dashboard_metrics_exist(operator) -> None:
    """Every metric name the Grafana dashboard queries is exposed by the running operator."""
    have = promnames.exposed(promnames.scrape(f"http://127.0.0.1:{operator.metrics_port}/metrics"))
    names = promnames.dashboard_metric_names()
    assert len(names) >= 15
    assert promnames.missing(names, have) == []
    # and a name that does not exist would be caught
    assert promnames.missing({"agentops_no_such_metric"}, have) == ["agentops_no_such_metric"]


NO_GATES_UNTIL_DONE = """  gates:
  - {transition: InProgress->Review, gates: []}
  - {transition: Review->Done, gates: []}
  - transition: Done->Deployed
    gates:
    - name: deploy
      type: Job
      job: {podAnnotations: {"agentops.dev/kwok-fail": "true"}}
"""


def test_problem_gauges_for_a_failed_deploy_and_an_expired_heartbeat(team: str, operator) -> None:
    ns = team
    # an external Agent whose heartbeat Lease was last renewed a minute ago (timeout 5 s): expired, Degraded
    renewed = (datetime.now(UTC) - timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    apply(f"""
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {{name: ext-1, namespace: {ns}, labels: {{agentops.dev/agent: ext-1}}}}
spec: {{holderIdentity: ext-1, renewTime: "{renewed}", leaseDurationSeconds: 5}}
---
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: ext-1, namespace: {ns}}}
spec: {{role: reviewer, heartbeat: {{timeoutSeconds: 5}}}}
""")
    # a task whose deploy gate fails (kwok fails its pod)
    task(ns, "d", NO_GATES_UNTIL_DONE)
    phase_is(ns, "d", "Assigned")
    for step in ("InProgress", "Review", "Done"):
        cli(ns, "task", "move", "d", step, "--output", "pr/1", as_user=EDITOR)
        phase_is(ns, "d", step)
    assert _value(operator, "agentops_task_deploy_failed", namespace=ns) is None
    cli(ns, "task", "move", "d", "Deployed", "--deploy-version", "1.0", as_user=EDITOR)
    wait_for(lambda: _value(operator, "agentops_task_deploy_failed", namespace=ns, task="d") == 1, timeout=60,
             what="the failed deploy gauge")
    m = _scrape(operator)
    assert sum(_series(m, "agentops_tasks_blocked", namespace=ns, reason="GateFailed").values()) == 1
    assert m[("agentops_gate_job_duration_seconds_count", (("namespace", ns), ("result", "failed")))] == 1
    assert m[("agentops_task_cycle_time_seconds_count", (("namespace", ns),))] == 1
    assert _series(m, "agentops_agent_heartbeat_expired", namespace=ns) == {
        (("agent", "ext-1"), ("namespace", ns)): 1}
    assert _series(m, "agentops_agent_degraded", namespace=ns) == {(("agent", "ext-1"), ("namespace", ns)): 1}
    assert _series(m, "agentops_agents", namespace=ns, role="reviewer", ready="false") == {
        (("namespace", ns), ("ready", "false"), ("role", "reviewer")): 1}
    assert sum(_series(m, "agentops_agent_heartbeat_expired", namespace=ns, agent="dev-1").values()) == 0


def test_chart_ships_the_dashboard_opt_in(ns: str) -> None:
    """The chart's dashboard ConfigMap: off by default; on, labelled for Grafana's sidecar, holding the
    very JSON the checks above read, accepted by the API server; metrics.agentLabel=false passes the flag."""
    import json

    from .test_helm import by_kind, helm, render

    assert not any(d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {})
                   for d in render("r", ns))
    docs = render("r", ns, "--set", f"metrics.grafanaDashboard.enabled=true,metrics.agentLabel=false,"
                  f"metrics.grafanaDashboard.namespace={ns}",
                  "--set-string", "metrics.grafanaDashboard.annotations.grafana_folder=agentops")
    cm = by_kind(docs, "ConfigMap")["r-agentops-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == ns and cm["metadata"]["annotations"] == {"grafana_folder": "agentops"}
    assert json.loads(cm["data"]["agentops.json"]) == json.loads(promnames.DASHBOARD.read_text())
    args = by_kind(docs, "Deployment")["r-agentops"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--metrics-agent-label=false" in args
    out = helm("template", "r", str(promnames.DASHBOARD.parents[1]), "--namespace", ns, "--set",
               "metrics.grafanaDashboard.enabled=true", "--show-only", "templates/grafana-dashboard.yaml").stdout
    proc = kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=out)
    assert "configured" in proc.stdout or "created" in proc.stdout
    bad = helm("template", "r", str(promnames.DASHBOARD.parents[1]), "--set", "metrics.grafanaDashboard.bogus=1",
               check=False)
    assert bad.returncode != 0 and "bogus" in bad.stderr


def test_invalid_monitoring_policy_is_named_on_the_task(team: str, operator) -> None:
    ns = team
    policy = """
apiVersion: v1
kind: ConfigMap
metadata: {{name: policy, namespace: {ns}, labels: {{agentops.dev/gate-policy: "true"}}}}
data:
  monitoring.yaml: |
    staleAfter: {{{phase}: 1h}}
"""
    apply(policy.format(ns=ns, phase="Working"))
    task(ns, "t")
    cond = wait_for(lambda: (c := _stale_cond(ns, "t")) and c["reason"] == "InvalidPolicy" and c, timeout=30,
                    what="the InvalidPolicy condition")
    assert cond["status"] == "False"
    assert cond["message"].startswith("ConfigMap policy data.monitoring.yaml: staleAfter.Working: not a task phase")
    phase_is(ns, "t", "Assigned")  # a bad monitoring policy stops no work
    warned = [e for e in events(ns, "t") if e["reason"] == "InvalidPolicy"]
    assert len(warned) == 1 and warned[0]["type"] == "Warning"
    # fixed: every task of the namespace is looked at again and the condition says so
    apply(policy.format(ns=ns, phase="Review"))
    wait_for(lambda: (c := _stale_cond(ns, "t")) and c["reason"] == "WithinThreshold", timeout=30,
             what="the condition after the fix")
