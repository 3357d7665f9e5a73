"""Deployed means rolled out: tasks deployed through an Agent's rollout, on the real cluster.

GitOps is played by a spec patch of the Agent as the cluster admin (the operator never writes it);
the task's Rollout gate follows the Agent's rollout, fails with the rollout's reason, and a Deployed
task follows the Agent's undo to RolledBack by itself; `task rollback` runs that undo.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from .agentutil import IMAGE, analysis, api, create_agent, get_agent, job_metric, patch_spec, record_timing
from .agentutil import cli as agent_cli
from .kubeutil import kget, kubectl, wait_for
from .secutil import bind, create, patch, refused, role, settle, task_body
from .taskutil import EDITOR, blocked, cli, events, phase_is, task

pytestmark = [pytest.mark.e2e, pytest.mark.kwok]

NO_GATES = """  gates:
  - {transition: InProgress->Review, gates: []}
  - {transition: Review->Done, gates: []}
  - {transition: Done->Deployed, gates: []}
"""


def canary(*metric: dict[str, Any]) -> dict[str, Any]:
    return {"type": "canary", "progressDeadlineSeconds": 30,
            "canary": {"steps": [{"setWeight": 50}, {"pause": {"durationSeconds": 1}},
                                 {"analysis": analysis(*metric)}]}}


def to_done(ns: str, *names: str) -> None:
    """Walk tasks (created without gates but the implicit Rollout gate) to Done."""
    for name in names:
        task(ns, name, NO_GATES)
    for phase, extra in (("InProgress", ()), ("Review", ("--output", "pr/1")), ("Done", ())):
        for name in names:
            phase_is(ns, name, {"InProgress": "Assigned", "Review": "InProgress", "Done": "Review"}[phase])
            cli(ns, "task", "move", name, phase, *extra, as_user=EDITOR)
    for name in names:
        phase_is(ns, name, "Done")


def task_now(ns: str, name: str) -> dict[str, Any]:
    """Through the API client (kubectl costs ~100 ms a call: too coarse for the timing)."""
    obj: dict[str, Any] = client.CustomObjectsApi(api()).get_namespaced_custom_object(
        "agentops.dev", "v1alpha1", ns, "agenttasks", name)
    return obj


def rollout_gate(ns: str, name: str) -> dict[str, Any] | None:
    t = kget("agenttask", name, ns)
    return next((g for g in t.get("status", {}).get("gates", []) if g["type"] == "Rollout"), None)


def test_task_goes_deployed_with_the_rollout_fails_with_it_and_follows_the_undo(team: str, operator) -> None:
    ns = team
    first = create_agent(ns, "coder", canary(job_metric()), replicas=2)
    to_done(ns, "t1", "t2")
    cli(ns, "task", "move", "t1", "Deployed", "--deploy-image", f"{IMAGE}:1.1", "--deploy-agent", "coder",
        as_user=EDITOR)
    # Nothing reached the Agent yet: the gate waits and says what the Agent's spec asks for.
    g = wait_for(lambda: (g := rollout_gate(ns, "t1")) and g["state"] == "Pending" and g, timeout=30,
                 what="t1's Rollout gate pending")
    assert f"{IMAGE}:1.0" in g["message"] and g["rollout"]["summary"] == "waiting for the change"
    # GitOps: the commit reaches the Agent's spec; the gate follows the rollout step by step.
    patch_spec(ns, "coder", {"image": f"{IMAGE}:1.1"})
    summaries: list[str] = []

    def deployed() -> dict[str, Any] | None:
        t = task_now(ns, "t1")
        g = next((g for g in t.get("status", {}).get("gates", []) if g["type"] == "Rollout"), {})
        summaries.append((g.get("rollout") or {}).get("summary", ""))
        return t if t["status"].get("phase") == "Deployed" else None

    t1 = wait_for(deployed, timeout=90, interval=0.1, what="t1 Deployed")
    assert any("weight 50%" in s for s in summaries), summaries
    agent = get_agent(ns, "coder")
    assert agent["status"]["phase"] == "Healthy" and agent["status"]["stableRevision"] != first["status"][
        "stableRevision"]
    passed = next(g for g in t1["status"]["history"][-1]["gates"] if g["type"] == "Rollout")
    assert passed["state"] == "Passed" and passed["rollout"]["revision"] == agent["status"]["stableRevision"]
    assert t1["status"]["deployRef"] == f"{IMAGE}:1.1"

    # A second task: its image's rollout fails analysis -> the gate fails with the rollout's reason.
    cli(ns, "task", "move", "t2", "Deployed", "--deploy-image", f"{IMAGE}:1.2", "--deploy-agent", "coder",
        as_user=EDITOR)
    patch_spec(ns, "coder", {"image": f"{IMAGE}:1.2",
                             "strategy": canary(job_metric(fail=True, message="rejection rate 40% > 5%"))})
    cond = blocked(ns, "t2", "GateFailed", timeout=90)
    assert "AnalysisFailed" in cond["message"] and "rejection rate 40%" in cond["message"]
    assert kget("agenttask", "t2", ns)["status"]["phase"] == "Done"
    row = kubectl("get", "agenttask", "t2", "-n", ns).stdout
    assert "rolled back: AnalysisFailed" in row, row
    wait_for(lambda: any(e["reason"] == "GateFailed" and "AnalysisFailed" in e["message"]
                         for e in events(ns, "t2")), timeout=15, what="GateFailed event")
    # The failed rollout of another image leaves t1 alone.
    assert kget("agenttask", "t1", ns)["status"]["phase"] == "Deployed"

    # An undo of the Agent (back from 1.1 to 1.0) moves t1 to RolledBack by itself.
    agent_cli(ns, "agent", "undo", "coder", "--timeout", "0")
    t_recorded = t_rolled = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and t_rolled is None:
        if t_recorded is None and any(a["verb"] == "undo" and a.get("applied")
                                      for a in get_agent(ns, "coder")["status"].get("acknowledgedCommands", [])):
            t_recorded = time.monotonic()
        if task_now(ns, "t1")["status"].get("phase") == "RolledBack":
            t_rolled = time.monotonic()
        time.sleep(0.02)
    assert t_rolled is not None, "t1 did not follow the Agent's undo"
    delay = t_rolled - (t_recorded or t_rolled)
    record_timing("agent_undo_recorded_to_task_rolled_back", delay)
    last = kget("agenttask", "t1", ns)["status"]["history"][-1]
    assert (last["from"], last["to"], last["by"]) == ("Deployed", "RolledBack", "agentops-operator")
    assert "UndoneByUser" in str(last)


def test_task_rollback_runs_the_agents_undo(team: str, operator) -> None:
    ns = team
    first = create_agent(ns, "api", {"type": "rolling", "progressDeadlineSeconds": 30}, replicas=1)
    to_done(ns, "t3")
    cli(ns, "task", "move", "t3", "Deployed", "--deploy-image", f"{IMAGE}:2.0", "--deploy-agent", "api",
        as_user=EDITOR)
    patch_spec(ns, "api", {"image": f"{IMAGE}:2.0"})
    phase_is(ns, "t3", "Deployed", timeout=90)
    out = cli(ns, "task", "rollback", "t3", as_user=EDITOR)
    assert "running its undo" in out.stdout and "RolledBack by agentops-operator" in out.stdout, out.stdout
    assert kget("agenttask", "t3", ns)["status"]["phase"] == "RolledBack"
    wait_for(lambda: get_agent(ns, "api")["status"].get("stableRevision") == first["status"]["stableRevision"],
             timeout=60, what="api back on its first revision")
    # A task without an Agent behind it is rolled back on the task only, as before.
    to_done(ns, "t4")
    cli(ns, "task", "move", "t4", "Deployed", "--deploy-image", f"{IMAGE}:9", as_user=EDITOR)
    phase_is(ns, "t4", "Deployed")
    cli(ns, "task", "rollback", "t4", "--reason", "bad", as_user=EDITOR)
    assert phase_is(ns, "t4", "RolledBack")["status"]["history"][-1]["by"] == EDITOR


def test_deploy_agent_needs_get_on_that_agent(ns: str) -> None:
    """The attack: someone who may not read an Agent points a task at it to read its rollout."""
    role(ns, "peeker", "tasks-only", "get,list,create,update,patch", "agenttasks.agentops.dev")
    bind(ns, "alice", "agentops-editor")
    settle(ns, "peeker", "create", "agenttasks.agentops.dev")
    settle(ns, "alice", "get", "agents.agentops.dev")
    refused(create(ns, task_body("peek", deploy={"image": "x:1", "agent": "prod"}), "peeker"),
            "spec.deploy.agent", "peeker may not get that Agent")
    assert create(ns, task_body("plain", deploy={"image": "x:1"}), "peeker")[0]
    refused(patch(ns, "agenttask", "plain", {"spec": {"deploy": {"agent": "prod"}}}, "peeker"),
            "spec.deploy.agent")
    assert create(ns, task_body("ok", deploy={"image": "x:1", "agent": "prod"}), "alice")[0]
    # Unrelated edits of a task that names the Agent stay open to the peeker.
    assert patch(ns, "agenttask", "ok", {"spec": {"description": "typo"}}, "peeker")[0]
