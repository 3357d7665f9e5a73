"""AgentTask operations that span restarts and many objects: restart safety, auto-assignment."""

from __future__ import annotations

import json
import time

import pytest

from .kubeutil import apply, kget, kubectl, wait_for
from .taskutil import EDITOR, cli, phase_is, task

pytestmark = pytest.mark.kwok  # delayed, failing and fake-image pods


def _jobs(ns: str, task_name: str) -> list[dict]:
    out = kubectl("get", "jobs", "-n", ns, "-l", f"agentops.dev/task={task_name}", "-o", "json").stdout
    return json.loads(out)["items"]


def test_operator_restart_mid_gate_makes_no_second_job(team: str, operator) -> None:
    ns = team
    task(ns, "slow", """  gates:
  - transition: InProgress->Review
    gates:
    - name: slow-check
      type: Job
      job:
        podAnnotations: {agentops.dev/kwok-delay: "6s"}
""")
    phase_is(ns, "slow", "Assigned")
    cli(ns, "task", "move", "slow", "InProgress", as_user=EDITOR)
    phase_is(ns, "slow", "InProgress")
    cli(ns, "task", "move", "slow", "Review", "--output", "pr/9", as_user=EDITOR)
    wait_for(lambda: len(_jobs(ns, "slow")) == 1, timeout=30, what="gate job to start")
    operator.kill()  # crash, not a graceful stop
    try:
        # While the operator is down the request waits; nothing moves.
        time.sleep(1)
        assert kget("agenttask", "slow", ns)["status"]["phase"] == "InProgress"
    finally:
        operator.start()
    t = phase_is(ns, "slow", "Review", timeout=90)
    jobs = _jobs(ns, "slow")
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    assert t["status"]["history"][-1]["gates"][0]["job"] == jobs[0]["metadata"]["name"]


def test_fifty_tasks_auto_assigned_by_priority_within_capacity(ns: str, operator) -> None:
    agents = "\n---\n".join(f"""
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: dev-{i}, namespace: {ns}}}
spec: {{role: developer, image: registry.example/dev:1, replicas: 0, maxConcurrentTasks: {cap},
        capabilities: [python]}}""" for i, cap in ((1, 5), (2, 10), (3, 15)))
    apply(agents)

    # No agent has a replica yet, so all 50 tasks queue first; only then does capacity appear, and
    # the order of assignment is decided by priority rather than by arrival.
    prios = [(i * 17) % 50 for i in range(50)]
    docs = "\n---\n".join(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: job-{i:02d}, namespace: {ns}}}
spec: {{title: job {i}, priority: {p}, role: developer, capabilities: [python]}}""" for i, p in enumerate(prios))
    apply(docs)

    def all_queued() -> bool:
        items = json.loads(kubectl("get", "agenttasks", "-n", ns, "-o", "json").stdout)["items"]
        return len(items) == 50 and all(
            any(c["type"] == "Assigned" and c["reason"] == "NoAgentAvailable"
                for c in (t.get("status") or {}).get("conditions", [])) for t in items)

    wait_for(all_queued, timeout=120, what="50 queued tasks")
    for i in (1, 2, 3):
        kubectl("scale", "agent", f"dev-{i}", "-n", ns, "--replicas=1")

    def assigned() -> list[dict] | None:
        items = json.loads(kubectl("get", "agenttasks", "-n", ns, "-o", "json").stdout)["items"]
        done = [t for t in items if (t.get("status") or {}).get("phase") == "Assigned"]
        return items if len(done) == 30 else None

    items = wait_for(assigned, timeout=120, what="30 assigned tasks")
    time.sleep(2)  # let any over-assignment show itself
    items = json.loads(kubectl("get", "agenttasks", "-n", ns, "-o", "json").stdout)["items"]
    by_agent: dict[str, int] = {}
    got = set()
    for t in items:
        st = t.get("status") or {}
        if st.get("phase") == "Assigned":
            by_agent[st["assignee"]] = by_agent.get(st["assignee"], 0) + 1
            got.add(t["spec"]["priority"])
    assert by_agent == {"dev-1": 5, "dev-2": 10, "dev-3": 15}
    assert got == set(range(20, 50)), "the 30 highest priorities are assigned first"
    waiting = [t for t in items if (t.get("status") or {}).get("phase") == "Backlog"]
    assert len(waiting) == 20
    assert all(any(c["type"] == "Assigned" and c["reason"] == "NoAgentAvailable"
                   for c in t["status"]["conditions"]) for t in waiting)
    wait_for(lambda: {a: kget("agent", a, ns)["status"].get("activeTasks") for a in by_agent} == by_agent,
             timeout=15, what="agents' activeTasks")
    # Freeing capacity lets the next-highest task in: cancel one of dev-1's tasks.
    victim = next(t for t in items if (t.get("status") or {}).get("assignee") == "dev-1")
    kubectl("patch", "agenttask", victim["metadata"]["name"], "-n", ns, "--type=merge",
            "-p", json.dumps({"spec": {"requestedPhase": "Cancelled", "by": "admin"}}), as_user="admin",
            as_groups=("system:masters",))
    nxt = next(t["metadata"]["name"] for t in items if t["spec"]["priority"] == 19)
    wait_for(lambda: kget("agenttask", nxt, ns)["status"].get("assignee") == "dev-1", timeout=60,
             what="priority 19 to take the freed slot")
