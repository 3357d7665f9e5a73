"""External agents on the worker library: three example agent processes (dev, qa, deploy), each with
its own ServiceAccount token and no pod, carry a task from Backlog to Deployed; a killed agent's
Lease expires and its open task goes to another dev agent."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .agentutil import json_lines, worker_process
from .kubeutil import ROOT, apply, kget, kubectl, wait_for
from .taskutil import APPROVER, EDITOR, cli, events

TIMINGS = ROOT / ".cluster" / "worker-timings.json"


def agent_kubeconfig(ns: str, agent: str, where: Path) -> Path:
    """A kubeconfig holding only the ServiceAccount token of agent-<agent> (as an agent off-cluster gets)."""
    wait_for(lambda: kubectl("get", "serviceaccount", f"agent-{agent}", "-n", ns, check=False).returncode == 0,
             timeout=60, what=f"ServiceAccount agent-{agent}")
    token = kubectl("create", "token", f"agent-{agent}", "-n", ns, "--duration", "1h").stdout.strip()
    cfg = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    path = where / f"{agent}.kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "agent",
        "clusters": [{"name": "c", "cluster": cfg["clusters"][0]["cluster"]}],
        "users": [{"name": agent, "user": {"token": token}}],
        "contexts": [{"name": "agent", "context": {"cluster": "c", "user": agent, "namespace": ns}}],
    }))
    return path


class AgentProcess:
    def __init__(self, ns: str, agent: str, behaviour: str, kubeconfig: Path, log: Path) -> None:
        self.agent, self.log = agent, log
        self.proc = worker_process(ns, agent, kubeconfig, log, "--behaviour", behaviour)

    def lines(self) -> list[dict[str, Any]]:
        return json_lines(self.log)

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.agent} exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        return True

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def agents(ns: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    started: dict[str, AgentProcess] = {}

    def start(agent: str, behaviour: str) -> AgentProcess:
        p = AgentProcess(ns, agent, behaviour, agent_kubeconfig(ns, agent, tmp_path), tmp_path / f"{agent}.log")
        started[agent] = p
        return p

    yield {"start": start, "procs": started}
    for p in started.values():
        p.kill()


def ready(ns: str, agent: str) -> dict[str, Any] | None:
    a = kget("agent", agent, ns)
    c = next((c for c in (a.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)
    return a if c and c["status"] == "True" and c["reason"] == "HeartbeatFresh" else None


def test_external_agents_carry_a_task_to_deployed_and_hand_back_when_one_dies(ns: str, operator,
                                                                              agents: dict[str, Any]) -> None:
    sa = {a: f"system:serviceaccount:{ns}:agent-{a}" for a in ("dev-1", "dev-2", "qa-1", "deploy-1")}
    # The team, as the original framework's `init`: people and agents bound, default gate policy.
    out = cli(ns, "init", "--editor", EDITOR, "--approver", APPROVER, *[f"--agent={a}" for a in sa],
              "--quota", "tokens=10/daily").stdout
    assert out.count(" created") == 8, out  # 6 RoleBindings, the gate policy, the Quota
    # The qa agent rejects in review: that is an approval decision, so it needs the approve verb.
    kubectl("create", "rolebinding", "qa-1-approves", "--clusterrole=agentops-approver",
            f"--serviceaccount={ns}:agent-qa-1", "-n", ns)
    for agent, role in (("dev-1", "developer"), ("dev-2", "developer"), ("qa-1", "qa"), ("deploy-1", "deployer")):
        cli(ns, "agent", "add", agent, "--role", role, "--heartbeat-timeout", "3", "--hand-back-after", "2")
    t0 = time.monotonic()
    for agent, behaviour in (("dev-1", "dev"), ("qa-1", "qa"), ("deploy-1", "deploy")):
        agents["start"](agent, behaviour)
    for agent in ("dev-1", "qa-1", "deploy-1"):
        a = wait_for(lambda agent=agent: ready(ns, agent), timeout=60, what=f"{agent} Ready by heartbeat")
        assert a["status"]["lastActive"]
    registered = time.monotonic() - t0
    # dev-2 has no process yet: never heartbeated, so not Ready and not assignable.
    assert kget("agent", "dev-2", ns)["status"]["reason"] == "AwaitingHeartbeat"
    # No workload for external agents: only their ServiceAccounts.
    assert json.loads(kubectl("get", "deployments,pods", "-n", ns, "-o", "json").stdout)["items"] == []

    t1 = time.monotonic()
    cli(ns, "task", "add", "t1", "--title", "Add search", "--stage", "dev=developer", "--stage", "qa=qa",
        "--stage", "deploy=deployer", as_user=EDITOR)

    def awaiting_approval() -> dict[str, Any] | None:
        t = kget("agenttask", "t1", ns)
        blocked = next((c for c in t.get("status", {}).get("conditions", []) if c["type"] == "TransitionBlocked"),
                       {})
        rejected = any(h["to"] == "Rejected" for h in t.get("status", {}).get("history", []))
        return t if rejected and blocked.get("reason") == "AwaitingApproval" else None

    t = wait_for(awaiting_approval, timeout=180, interval=0.5, what="t1 rejected once, then awaiting approval")
    to_approval = time.monotonic() - t1
    assert t["spec"]["by"] == sa["qa-1"] and t["status"]["assignee"] == "qa-1"
    cli(ns, "task", "approve", "t1", as_user=APPROVER)
    t = wait_for(lambda: (x := kget("agenttask", "t1", ns))["status"].get("phase") == "Deployed" and x,
                 timeout=120, what="t1 Deployed")
    total = time.monotonic() - t1

    moves = [(h["from"], h["to"], h["by"]) for h in t["status"]["history"]]
    assert moves == [
        ("Backlog", "Assigned", "system:agentops-operator"),
        ("Assigned", "InProgress", sa["dev-1"]),
        ("InProgress", "Review", sa["dev-1"]),
        ("Review", "Rejected", sa["qa-1"]),
        ("Rejected", "InProgress", sa["dev-1"]),
        ("InProgress", "Review", sa["dev-1"]),
        ("Review", "Done", sa["qa-1"]),
        ("Done", "Deployed", sa["deploy-1"]),
    ], moves
    handoffs = [(h.get("fromAgent"), h.get("toAgent")) for h in t["status"]["handoffs"]]
    assert handoffs == [("dev-1", "qa-1"), ("qa-1", "dev-1"), ("dev-1", "qa-1"), ("qa-1", "deploy-1")], handoffs
    assert t["status"]["handoffs"][1]["rejections"] == [f"{sa['qa-1']}: missing tests"]
    assert t["spec"]["output"] == "pr/t1-v2-with-tests"  # dev read the rejection from its handoff context
    assert [a["approver"] for a in t["status"]["approvals"] if a["decision"] == "Approved"] == [APPROVER]
    assert t["status"]["deployRef"].startswith("t1-")
    assert json.loads(kubectl("get", "deployments", "-n", ns, "-o", "json").stdout)["items"] == []
    # Per-agent figures credit every stage, not only the agent holding the task at the end.
    report = json.loads(cli(ns, "report", "-o", "json").stdout)
    by_agent = {r["agent"]: r for r in report["agents"]}
    assert by_agent["dev-1"]["throughput"] == 2 and by_agent["dev-1"]["rejectionRate"] == 0.5
    assert by_agent["qa-1"]["throughput"] == 1 and by_agent["deploy-1"]["throughput"] == 1
    # ... and so do the Agents' own statistics (status.tasksCompleted: stages finished), kept by the operator.
    def completed() -> dict[str, int]:
        return {a: int(kget("agent", a, ns).get("status", {}).get("tasksCompleted") or 0)
                for a in ("dev-1", "qa-1", "deploy-1")}

    assert wait_for(lambda: all(v >= 1 for v in completed().values()) and completed(), timeout=30,
                    what="every stage's agent credited")["dev-1"] >= 1

    # --- a dev agent dies mid-task: its Lease expires and its task goes to the other dev agent ---
    agents["start"]("dev-2", "dev")
    wait_for(lambda: ready(ns, "dev-2"), timeout=60, what="dev-2 Ready")
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata:
  name: t2
  namespace: {ns}
  annotations: {{agentops.dev/example-work-seconds: "dev-1=600"}}
spec:
  title: Long job
  assignee: dev-1
  role: developer
""", as_user=EDITOR)

    def dev1_working() -> dict[str, Any] | None:
        x = kget("agenttask", "t2", ns)
        return x if x["status"].get("phase") == "InProgress" and \
            "agentops.dev/progress" in (x["metadata"].get("annotations") or {}) else None

    wait_for(dev1_working, timeout=60, what="dev-1 working on t2")
    agents["procs"]["dev-1"].kill()
    killed = time.monotonic()
    wait_for(lambda: any(e["reason"] == "HeartbeatExpired" for e in events(ns, "dev-1")), timeout=30,
             what="HeartbeatExpired event on dev-1")
    expired_after = time.monotonic() - killed
    assert kget("agent", "dev-1", ns)["status"]["phase"] == "Degraded"
    t = wait_for(lambda: (x := kget("agenttask", "t2", ns))["status"].get("assignee") == "dev-2" and x,
                 timeout=60, what="t2 handed to dev-2")
    handed_after = time.monotonic() - killed
    last = t["status"]["handoffs"][-1]
    assert (last["fromAgent"], last["toAgent"]) == ("dev-1", "dev-2") and "no heartbeat" in last["notes"]
    assert any(c["type"] == "HandedBack" and c["status"] == "True" for c in t["status"]["conditions"])
    # dev-2 picks it up from where dev-1 left it (InProgress) and hands in the work.
    t = wait_for(lambda: (x := kget("agenttask", "t2", ns))["status"].get("phase") == "Review" and x,
                 timeout=90, what="t2 submitted by dev-2")
    assert t["status"]["history"][-1]["by"] == sa["dev-2"]
    # dev-2 is the only Ready developer and holds t2: removing it would orphan the task, so it is refused.
    proc = cli(ns, "agent", "remove", "dev-2", check=False)
    assert proc.returncode == 1 and "no other Ready agent with role developer" in proc.stderr, proc.stderr
    for p in agents["procs"].values():
        if p.agent != "dev-1":
            assert p.alive()
    TIMINGS.parent.mkdir(exist_ok=True)
    TIMINGS.write_text(json.dumps({"agentsReadySeconds": round(registered, 2),
                                   "taskToAwaitingApprovalSeconds": round(to_approval, 2),
                                   "taskToDeployedSeconds": round(total, 2),
                                   "killToHeartbeatExpiredSeconds": round(expired_after, 2),
                                   "killToHandedBackSeconds": round(handed_after, 2),
                                   "heartbeatTimeoutSeconds": 3, "handBackAfterSeconds": 2}, indent=2))


def test_an_agent_may_write_only_its_own_lease(ns: str, operator) -> None:
    cli(ns, "init", "--agent", "dev-1", "--agent", "dev-2", "--no-gate-policy")
    lease = """
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {{name: {name}, namespace: {ns}, labels: {{agentops.dev/agent: {name}}}}}
spec: {{holderIdentity: {name}, leaseDurationSeconds: 40}}
"""
    dev2 = f"system:serviceaccount:{ns}:agent-dev-2"
    apply(lease.format(name="dev-2", ns=ns), as_user=dev2)  # its own: allowed
    proc = apply(lease.format(name="dev-1", ns=ns), as_user=dev2, check=False)  # forge dev-1's heartbeat
    assert proc.returncode != 0 and "may only write its own heartbeat Lease" in proc.stderr, proc.stderr
    apply(lease.format(name="dev-1", ns=ns))  # created by an admin; dev-2 still may not renew or delete it
    proc = kubectl("annotate", "lease", "dev-1", "-n", ns, "x=y", as_user=dev2, check=False)
    assert proc.returncode != 0 and "may only write its own heartbeat Lease" in proc.stderr, proc.stderr
    proc = kubectl("delete", "lease", "dev-2", "-n", ns, as_user=dev2, check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stderr
