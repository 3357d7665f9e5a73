"""Canaries judged by the tasks they do: the `tasks` analysis provider on the real cluster.

An Agent `coder` (the operator runs its pods) rolls out a canary; example agent processes on the
worker library stand in for its pods, one per revision (each stamped with its revision as a pod's
AGENTOPS_AGENT_REVISION would), and a qa agent process reviews. Tasks are split between the
revisions by the canary weight. A canary whose work is rejected in review more often than the
stable revision's fails the analysis and is rolled back; with equal outcomes it is promoted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentops_operator.taskoutcomes import revision_annotation

from .agentutil import (
    create_agent,
    get_agent,
    json_lines,
    patch_spec,
    record_timing,
    replicas_by_revision,
    wait_agent,
    worker_process,
)
from .kubeutil import ROOT, apply, kget, kubectl, wait_for
from .taskutil import APPROVER, EDITOR, cli
from .test_workers import agent_kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.kwok]

TASKS = 16  # at 50%: P(one side < MIN) ~ 0.4%
MIN = 3
METRIC = {
    "name": "outcomes", "tasks": {"minCount": MIN},
    # Too few decided tasks is Inconclusive: tolerated while they accumulate (up to ~45 s); with
    # enough, a failed measurement decides at once, a pass needs all `count` measurements.
    "initialDelaySeconds": 5, "intervalSeconds": 3, "count": 14, "inconclusiveLimit": 13,
    "successCondition": "result.canary.rejectionRate <= result.stable.rejectionRate + 0.05",
}
STRATEGY = {"type": "canary", "progressDeadlineSeconds": 60,
            "canary": {"steps": [{"setWeight": 50}, {"analysis": {"metrics": [METRIC]}}]}}


class Proc:
    def __init__(self, ns: str, agent: str, kubeconfig: Path, log: Path, *args: str) -> None:
        self.log = log
        self.proc = worker_process(ns, agent, kubeconfig, log, *args)

    def lines(self) -> list[dict[str, Any]]:
        return json_lines(self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-2000:]
        return any(x.get("action") == "ready" for x in self.lines())


@pytest.fixture
def team(ns: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """coder (run by the operator, canary strategy), qa-1 (external, reviews), and a way to start
    workers of coder for a given revision."""
    cli(ns, "init", "--editor", EDITOR, "--approver", APPROVER, "--agent", "coder", "--agent", "qa-1",
        "--no-gate-policy")
    kubectl("create", "rolebinding", "qa-1-approves", "--clusterrole=agentops-approver",
            f"--serviceaccount={ns}:agent-qa-1", "-n", ns)
    cli(ns, "agent", "add", "qa-1", "--role", "qa", "--heartbeat-timeout", "20", "--max-concurrent", "50")
    first = create_agent(ns, "coder", STRATEGY, replicas=2, maxConcurrentTasks=50)
    procs: list[Proc] = []
    configs: dict[str, Path] = {}
    logs = ROOT / ".cluster" / "canary-tasks" / ns  # the workers' JSON lines, kept for a failed run
    logs.mkdir(parents=True, exist_ok=True)

    def start(agent: str, *args: str) -> Proc:
        if agent not in configs:
            configs[agent] = agent_kubeconfig(ns, agent, tmp_path)
        p = Proc(ns, agent, configs[agent], logs / f"{agent}-{len(procs)}.log", *args)
        procs.append(p)
        wait_for(p.ready, timeout=60, what=f"{agent} {' '.join(args)} ready")
        return p

    start("qa-1", "--behaviour", "qa", "--approve")
    yield {"stable": first["status"]["stableRevision"], "start": start}
    for p in procs:
        p.stop()


def canary_with_workers(ns: str, team: dict[str, Any], canary_careful: bool) -> tuple[str, str, Proc, Proc]:
    r1 = team["stable"]
    stable = team["start"]("coder", "--behaviour", "dev", "--revision", r1, "--careful")
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:2"})
    a = wait_agent(ns, "coder", lambda a: (a["status"].get("currentStep") or "").startswith("analysis"),
                   what="canary at its analysis step")
    r2 = a["status"]["currentRevision"]
    assert r2 != r1 and a["status"]["canaryWeight"] == 50
    canary = team["start"]("coder", "--behaviour", "dev", "--revision", r2, *(["--careful"] if canary_careful else []))
    docs = [f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: t{i:02d}, namespace: {ns}}}
spec:
  title: Task {i}
  pipeline:
  - {{name: dev, role: developer, phases: [Assigned, InProgress, Rejected]}}
  - {{name: qa, role: qa, phases: [Review, Done, Deployed]}}
  gates:
  - {{transition: "InProgress->Review", gates: []}}
  - transition: "Review->Done"
    gates:
    - {{name: review, type: Approval, approval: {{approvers: {{roles: [qa]}}, allowSelfApproval: true}}}}
""" for i in range(TASKS)]
    apply("---".join(docs), ns, as_user=EDITOR)
    return r1, r2, stable, canary


def check_routing_and_stamps(ns: str, r1: str, r2: str, stable: Proc, canary: Proc, until: datetime) -> None:
    """Until the verdict each task was worked on by one revision only (the split by weight), and a task
    only one revision ever worked on carries that revision's stamp. (After a rollback or promotion the
    split ends: a canary's task in rework may move to the stable revision, and is then re-stamped.)"""
    stable.stop()  # nobody stamps anything any more: the logs and the tasks can be compared
    canary.stop()
    acted: dict[str, set[str]] = {}
    early: dict[str, set[str]] = {}
    for p, rev in ((stable, r1), (canary, r2)):
        for x in p.lines():
            if x.get("action") in ("start", "submit"):
                assert x["revision"] == rev
                acted.setdefault(x["task"], set()).add(rev)
                if x["at"] < until.timestamp():
                    early.setdefault(x["task"], set()).add(rev)
    assert {r1, r2} <= {r for revs in early.values() for r in revs}, early
    assert all(len(revs) == 1 for revs in early.values()), early
    checked = 0
    for name, revs in acted.items():
        t = kget("agenttask", name, ns)
        if len(revs) == 1 and t["status"].get("phase") == "Done":  # finished: nobody stamps it any more
            ann = t["metadata"].get("annotations") or {}
            assert ann.get(revision_annotation("coder")) in revs, (name, ann)
            checked += 1
    assert checked >= MIN


def test_canary_rejected_more_in_review_fails_tasks_analysis_and_rolls_back(ns: str, operator,
                                                                            team: dict[str, Any]) -> None:
    r1, r2, stable, canary = canary_with_workers(ns, team, canary_careful=False)
    # The decisive measurement -> the canary scaled to 0 (polled every 50 ms).
    deadline = time.monotonic() + 120
    while replicas_by_revision(ns, "coder").get(r2) != 0:
        assert time.monotonic() < deadline, get_agent(ns, "coder")["status"]
        time.sleep(0.05)
    seen = datetime.now(UTC)
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Degraded", what="Degraded")
    assert a["status"]["reason"] == "AnalysisFailed" and a["status"]["stableRevision"] == r1
    metric = a["status"]["lastAnalysis"]["metrics"][0]
    decisive = metric["measurements"][-1]
    assert metric["failed"] == 1 and decisive["phase"] == "Failed", metric
    assert f"canary {r2}:" in decisive["message"] and "successCondition" in decisive["message"]
    value = json.loads(decisive["value"])
    assert value["canary"]["count"] >= MIN and value["stable"]["count"] >= MIN
    assert value["canary"]["rejectionRate"] == 1.0 and value["stable"]["rejectionRate"] == 0.0
    assert "outcomes" in a["status"]["message"]
    measured = datetime.fromisoformat(decisive["at"].replace("Z", "+00:00"))
    record_timing("canary tasks: decisive measurement -> canary at 0 (seen by a client)",
                  (seen - measured).total_seconds())
    rb = next(c for c in a["status"]["conditions"] if c["type"] == "RolledBack")
    assert rb["status"] == "True" and rb["reason"] == "AnalysisFailed"
    record_timing("canary tasks: decisive measurement -> RolledBack condition (operator clock)",
                  (datetime.fromisoformat(rb["lastTransitionTime"].replace("Z", "+00:00")) - measured).total_seconds())
    check_routing_and_stamps(ns, r1, r2, stable, canary, measured)

    # --- the stamp cannot be forged: only agent-coder sets revision.agentops.dev/coder, on its own tasks ---
    done = wait_for(lambda: next((t for t in json.loads(kubectl("get", "agenttasks", "-n", ns, "-o", "json").stdout)
                                  ["items"] if t["status"].get("assignee") == "qa-1"), None),
                    timeout=60, what="a task held by qa-1")["metadata"]["name"]
    key = revision_annotation("coder")
    sa = {a: f"system:serviceaccount:{ns}:agent-{a}" for a in ("coder", "qa-1")}
    for who, args, why in (
        (EDITOR, (f"{key}=forged", "--overwrite"), "may not set it"),  # a person re-labels the work
        (EDITOR, (f"{key}-",), "may not set it"),  # or removes the stamp
        (sa["qa-1"], (f"{key}=forged", "--overwrite"), "may not set it"),  # another agent, on a task it holds
        (sa["coder"], (f"{key}=forged", "--overwrite"), "may not set it"),  # the agent, on a task it no longer holds
    ):
        proc = kubectl("annotate", "agenttask", done, "-n", ns, *args, as_user=who, check=False)
        assert proc.returncode != 0 and why in proc.stderr and "revision.agentops.dev/coder" in proc.stderr, \
            (who, args, proc.stderr)
    proc = apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: forged, namespace: {ns}, annotations: {{"{key}": "{r2}"}}}}
spec: {{title: forged}}
""", ns, as_user=EDITOR, check=False)
    assert proc.returncode != 0 and "may not set it" in proc.stderr, proc.stderr


def test_canary_with_equal_task_outcomes_is_promoted(ns: str, operator, team: dict[str, Any]) -> None:
    r1, r2, stable, canary = canary_with_workers(ns, team, canary_careful=True)
    a = wait_agent(ns, "coder", lambda a: a["status"].get("stableRevision") == r2
                   and a["status"].get("phase") == "Healthy", timeout=120, what="promoted to the canary revision")
    last = a["status"]["lastAnalysis"]
    assert last["phase"] == "Successful", last
    metric = last["metrics"][0]
    assert metric["failed"] == 0 and metric["successful"] >= 1
    ok = [m for m in metric["measurements"] if m["phase"] == "Successful"]
    value = json.loads(ok[-1]["value"])
    assert value["canary"]["count"] >= MIN and value["stable"]["count"] >= MIN
    assert value["canary"]["rejectionRate"] == value["stable"]["rejectionRate"] == 0.0
    verdict = datetime.fromisoformat(ok[0]["at"].replace("Z", "+00:00"))
    check_routing_and_stamps(ns, r1, r2, stable, canary, verdict)
