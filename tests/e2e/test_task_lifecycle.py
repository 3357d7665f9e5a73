"""AgentTask lifecycle on the real cluster: gates run as Jobs, approvals, identity, audit trail."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .kubeutil import ROOT, apply, kget, kubectl, wait_for
from .taskutil import APPROVER, EDITOR, OUTSIDER, blocked, cli, events, phase_is, task


def test_forward_path_with_default_gates(team: str, operator) -> None:
    ns = team
    task(ns, "t1")
    phase_is(ns, "t1", "Assigned")
    cli(ns, "task", "move", "t1", "InProgress", as_user=EDITOR)
    phase_is(ns, "t1", "InProgress")
    # InProgress -> Review: the deliverable gate needs an output, then runs as a Job.
    cli(ns, "task", "move", "t1", "Review", as_user=EDITOR)
    assert "spec.output" in blocked(ns, "t1", "MissingInput")["message"]
    cli(ns, "task", "move", "t1", "Review", "--output", "https://git.example/pr/1", as_user=EDITOR)
    t = phase_is(ns, "t1", "Review", timeout=90)
    gate = t["status"]["history"][-1]["gates"][0]
    assert gate["name"] == "deliverable" and gate["state"] == "Passed"
    job = kget("job", gate["job"], ns)
    assert job["metadata"]["ownerReferences"][0]["name"] == "t1"
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["automountServiceAccountToken"] is False
    # Review -> Done waits for a human.
    cli(ns, "task", "move", "t1", "Done", as_user=EDITOR)
    assert "0/1 approvals" in blocked(ns, "t1", "AwaitingApproval")["message"]
    cli(ns, "task", "approve", "t1", "--reason", "looks good", as_user=APPROVER)
    t = phase_is(ns, "t1", "Done")
    assert t["status"]["approvals"][0]["approver"] == APPROVER
    # Done -> Deployed runs the deploy command and records the reference.
    cli(ns, "task", "move", "t1", "Deployed", "--deploy-version", "1.2.3",
        "--deploy-image", "registry.example/app@sha256:abc", as_user=EDITOR)
    t = phase_is(ns, "t1", "Deployed", timeout=90)
    assert t["status"]["deployRef"] == "1.2.3@registry.example/app@sha256:abc"
    cli(ns, "task", "move", "t1", "RolledBack", as_user=EDITOR)
    t = phase_is(ns, "t1", "RolledBack")
    moves = [(h["from"], h["to"], h["by"]) for h in t["status"]["history"]]
    assert moves == [
        ("Backlog", "Assigned", "system:agentops-operator"),
        ("Assigned", "InProgress", EDITOR),
        ("InProgress", "Review", EDITOR),
        ("Review", "Done", EDITOR),
        ("Done", "Deployed", EDITOR),
        ("Deployed", "RolledBack", EDITOR),
    ]
    # Events are written just after the status they describe.
    reasons = wait_for(lambda: (r := [e["reason"] for e in events(ns, "t1")]).count("Transitioned") == 6 and r,
                       timeout=15, what="six Transitioned events")
    assert "ApprovalRecorded" in reasons and "GateStarted" in reasons


@pytest.mark.kwok
def test_failing_gate_blocks_with_reason_then_retry(team: str, operator) -> None:
    ns = team
    # The task's own gate override makes its deliverable check fail (kwok fails annotated pods).
    task(ns, "t2", """  gates:
  - transition: InProgress->Review
    gates:
    - name: tests
      type: Job
      job:
        podAnnotations: {agentops.dev/kwok-fail: "true", agentops.dev/kwok-fail-message: "3 tests failed"}
""")
    phase_is(ns, "t2", "Assigned")
    cli(ns, "task", "move", "t2", "InProgress", as_user=EDITOR)
    phase_is(ns, "t2", "InProgress")
    cli(ns, "task", "move", "t2", "Review", "--output", "pr/2", as_user=EDITOR)
    cond = blocked(ns, "t2", "GateFailed", timeout=90)
    assert "3 tests failed" in cond["message"] and "exit code 1" in cond["message"]
    t = kget("agenttask", "t2", ns)
    assert t["status"]["phase"] == "InProgress"
    assert t["spec"]["requestedPhase"] == "Review"  # nothing of the request is lost
    wait_for(lambda: "GateFailed" in [e["reason"] for e in events(ns, "t2") if e["type"] == "Warning"],
             timeout=15, what="GateFailed warning event")
    # A retry makes attempt 2 (which fails the same way here: same annotation).
    cli(ns, "task", "retry", "t2", as_user=EDITOR)
    wait_for(lambda: any(g.get("attempt") == 2 and g["state"] == "Failed"
                         for g in kget("agenttask", "t2", ns)["status"].get("gates", [])),
             timeout=90, what="attempt 2 to fail")
    jobs = json.loads(kubectl("get", "jobs", "-n", ns, "-l", "agentops.dev/task=t2", "-o", "json").stdout)["items"]
    assert sorted(j["metadata"]["labels"]["agentops.dev/attempt"] for j in jobs) == ["1", "2"]


def test_reject_rework_review_done(team: str, operator) -> None:
    ns = team
    task(ns, "t3", """  pipeline:
  - {name: dev, phases: [Assigned, InProgress, Rejected], agent: dev-1}
  - {name: qa, phases: [Review], agent: qa-1}
  - {name: ship, phases: [Done, Deployed], agent: dev-1}
""")
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: qa-1, namespace: {ns}}}
spec: {{role: qa, image: registry.example/qa:1}}
""")
    phase_is(ns, "t3", "Assigned")
    cli(ns, "task", "move", "t3", "InProgress", as_user=EDITOR)
    phase_is(ns, "t3", "InProgress")
    cli(ns, "task", "move", "t3", "Review", "--output", "pr/3", "--notes", "first try", as_user=EDITOR)
    t = phase_is(ns, "t3", "Review", timeout=90)
    assert t["status"]["assignee"] == "qa-1"
    assert t["status"]["handoffs"][-1]["outputs"] == ["pr/3"]
    cli(ns, "task", "move", "t3", "Done", as_user=EDITOR)
    blocked(ns, "t3", "AwaitingApproval")
    cli(ns, "task", "reject", "t3", "--reason", "missing tests", as_user=APPROVER)
    t = phase_is(ns, "t3", "Rejected")
    assert t["status"]["history"][-1]["by"] == APPROVER
    handoff = t["status"]["handoffs"][-1]
    assert handoff["toAgent"] == "dev-1" and handoff["fromAgent"] == "qa-1"
    assert any("missing tests" in r for r in handoff["rejections"])
    # Asking for Done again is illegal from Rejected and says how to rework.
    assert "request InProgress to rework" in blocked(ns, "t3", "IllegalTransition")["message"]
    cli(ns, "task", "move", "t3", "InProgress", as_user=EDITOR)
    phase_is(ns, "t3", "InProgress")
    cli(ns, "task", "move", "t3", "Review", "--output", "pr/3-v2", as_user=EDITOR)
    phase_is(ns, "t3", "Review", timeout=90)
    cli(ns, "task", "move", "t3", "Done", as_user=EDITOR)
    # The old rejection belongs to the previous round and does not count now.
    blocked(ns, "t3", "AwaitingApproval")
    cli(ns, "task", "approve", "t3", "--reason", "tests added", as_user=APPROVER)
    t = phase_is(ns, "t3", "Done")
    assert t["status"]["assignee"] == "dev-1" and t["status"]["stage"] == "ship"


@pytest.mark.parametrize("start", ["Backlog", "Assigned", "InProgress", "Review", "Rejected", "Done"])
def test_cancel_from_each_open_phase(team: str, operator, start: str) -> None:
    ns = team
    # Backlog: no role match, so the task stays there. The others reach their phase without gates,
    # except Rejected, which needs the approval gate to reject.
    extra = "" if start == "Rejected" else """  gates:
  - {transition: InProgress->Review, gates: []}
  - {transition: Review->Done, gates: []}
"""
    if start == "Backlog":
        apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: c, namespace: {ns}}}
spec: {{title: c, role: nobody-has-this-role}}
""", as_user=EDITOR)
    else:
        task(ns, "c", extra)
    path = {"Backlog": [], "Assigned": [], "InProgress": ["InProgress"], "Review": ["InProgress", "Review"],
            "Rejected": ["InProgress", "Review"], "Done": ["InProgress", "Review", "Done"]}[start]
    phase_is(ns, "c", "Backlog" if start == "Backlog" else "Assigned")
    for step in path:
        cli(ns, "task", "move", "c", step, "--output", "x", as_user=EDITOR)
        phase_is(ns, "c", step, timeout=90)
    if start == "Rejected":
        cli(ns, "task", "move", "c", "Done", as_user=EDITOR)
        blocked(ns, "c", "AwaitingApproval")
        cli(ns, "task", "reject", "c", "--reason", "no", as_user=APPROVER)
        phase_is(ns, "c", "Rejected")
    cli(ns, "task", "cancel", "c", as_user=EDITOR)
    t = phase_is(ns, "c", "Cancelled")
    assert t["status"]["history"][-1]["from"] == start
    proc = cli(ns, "task", "move", "c", "InProgress", as_user=EDITOR, check=False)
    assert proc.returncode != 0 and "none (terminal phase)" in proc.stderr


def test_identity_cannot_be_forged(team: str, operator) -> None:
    ns = team
    task(ns, "t5")
    phase_is(ns, "t5", "Assigned")
    # mallory asks for a move in alice's name.
    proc = kubectl("patch", "agenttask", "t5", "-n", ns, "--type=merge",
                   "-p", '{"spec":{"requestedPhase":"InProgress","by":"alice"}}', as_user=OUTSIDER, check=False)
    assert proc.returncode != 0 and "spec.by must be the requesting user (mallory)" in proc.stderr
    # mallory may edit tasks but not approve them, even in her own name.
    proc = kubectl("patch", "agenttask", "t5", "-n", ns, "--type=merge", "-p",
                   '{"spec":{"approvals":[{"id":"m1","approver":"mallory","decision":"Approved"}]}}',
                   as_user=OUTSIDER, check=False)
    assert proc.returncode != 0 and "mallory may not approve agenttasks" in proc.stderr
    # bob may approve, but not in alice's name.
    proc = kubectl("patch", "agenttask", "t5", "-n", ns, "--type=merge", "-p",
                   '{"spec":{"approvals":[{"id":"b1","approver":"alice","decision":"Approved"}]}}',
                   as_user=APPROVER, check=False)
    assert proc.returncode != 0 and "must name the requesting user (bob)" in proc.stderr
    # Recorded decisions cannot be removed.
    cli(ns, "task", "approve", "t5", "--reason", "ok", as_user=APPROVER)
    proc = kubectl("patch", "agenttask", "t5", "-n", ns, "--type=merge", "-p", '{"spec":{"approvals":[]}}',
                   as_user=APPROVER, check=False)
    assert proc.returncode != 0 and "append-only" in proc.stderr
    # Replaying bob's decision is refused: the same id is a duplicate, a new id is mallory's own.
    bobs = kget("agenttask", "t5", ns)["spec"]["approvals"][0]
    replay = [bobs, dict(bobs)]
    proc = kubectl("patch", "agenttask", "t5", "-n", ns, "--type=merge", "-p",
                   json.dumps({"spec": {"approvals": replay}}), as_user=OUTSIDER, check=False)
    assert proc.returncode != 0 and "Duplicate value" in proc.stderr
    replay[1] = {**bobs, "id": "replayed"}
    proc = kubectl("patch", "agenttask", "t5", "-n", ns, "--type=merge", "-p",
                   json.dumps({"spec": {"approvals": replay}}), as_user=OUTSIDER, check=False)
    assert proc.returncode != 0 and "requesting user (mallory)" in proc.stderr


def test_agent_service_account_moves_only_its_own_tasks(team: str, operator) -> None:
    ns = team
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: dev-2, namespace: {ns}}}
spec: {{role: developer, image: registry.example/dev:1}}
""")
    for agent in ("dev-1", "dev-2"):
        kubectl("create", "rolebinding", f"sa-{agent}", "--clusterrole=agentops-agent",
                f"--serviceaccount={ns}:agent-{agent}", "-n", ns)
    task(ns, "t6")
    phase_is(ns, "t6", "Assigned")
    other = f"system:serviceaccount:{ns}:agent-dev-2"
    proc = kubectl("patch", "agenttask", "t6", "-n", ns, "--type=merge",
                   "-p", json.dumps({"spec": {"requestedPhase": "InProgress", "by": other}}),
                   as_user=other, check=False)
    assert proc.returncode != 0 and "may only request moves on tasks assigned to it" in proc.stderr
    owner = f"system:serviceaccount:{ns}:agent-dev-1"
    kubectl("patch", "agenttask", "t6", "-n", ns, "--type=merge",
            "-p", json.dumps({"spec": {"requestedPhase": "InProgress", "by": owner}}), as_user=owner)
    t = phase_is(ns, "t6", "InProgress")
    assert t["status"]["history"][-1]["by"] == owner


def test_namespace_gate_policy(team: str, operator) -> None:
    ns = team
    apply(f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: gates
  namespace: {ns}
  labels: {{agentops.dev/gate-policy: "true"}}
data:
  policy.yaml: |
    - transition: InProgress->Review
      gates: []
    - transition: Assigned->InProgress
      gates:
      - name: two-approvers
        type: Approval
        approval: {{required: 2, approvers: {{users: [bob, carol]}}}}
""")
    task(ns, "p1")
    phase_is(ns, "p1", "Assigned")
    cli(ns, "task", "move", "p1", "InProgress", as_user=EDITOR)
    assert "0/2 approvals" in blocked(ns, "p1", "AwaitingApproval")["message"]
    cli(ns, "task", "approve", "p1", "--transition", "Assigned->InProgress", as_user=APPROVER)
    assert "1/2 approvals (by bob)" in blocked(ns, "p1", "AwaitingApproval")["message"]
    # The task's own override wins over the namespace policy.
    kubectl("patch", "agenttask", "p1", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"gates": [{"transition": "Assigned->InProgress", "gates": []}]}}), as_user=EDITOR)
    phase_is(ns, "p1", "InProgress")
    cli(ns, "task", "move", "p1", "Review", as_user=EDITOR)  # no output needed under this policy
    phase_is(ns, "p1", "Review")
    # A broken policy blocks with a message naming the field, and nothing else moves.
    kubectl("patch", "configmap", "gates", "-n", ns, "--type=merge", "-p", json.dumps(
        {"data": {"policy.yaml": "- transition: Review->Done\n  gates: [{name: x, type: Magic}]\n"}}))
    cli(ns, "task", "move", "p1", "Done", as_user=EDITOR)
    msg = blocked(ns, "p1", "InvalidPolicy")["message"]
    assert "ConfigMap gates" in msg and "type" in msg
    assert kget("agenttask", "p1", ns)["status"]["phase"] == "Review"


def to_review_then_request_done(ns: str, name: str, review_gate: str) -> None:
    """A task with one Review->Done gate, moved to Review, with Done requested."""
    task(ns, name, f"""  gates:
  - transition: Review->Done
    gates: [{review_gate}]
  - {{transition: InProgress->Review, gates: []}}
""")
    phase_is(ns, name, "Assigned")
    for step in ("InProgress", "Review", "Done"):
        cli(ns, "task", "move", name, step, as_user=EDITOR)
        if step != "Done":
            phase_is(ns, name, step)


def test_group_approvers_and_timeout_reject(team: str, operator) -> None:
    ns = team
    kubectl("create", "rolebinding", "reviewers-approve", "--clusterrole=agentops-approver", "--group=reviewers",
            "-n", ns)
    to_review_then_request_done(ns, "g1", "{name: review-board, type: Approval, "
                                "approval: {required: 1, approvers: {groups: [reviewers]}}}")
    blocked(ns, "g1", "AwaitingApproval")
    # bob may approve in general, but is not in the board's group: his decision does not count.
    cli(ns, "task", "approve", "g1", "--reason", "fine by me", as_user=APPROVER)
    assert "not allowed to approve: bob" in blocked(ns, "g1", "AwaitingApproval")["message"]
    # Claiming a group one is not in is refused at admission.
    proc = cli(ns, "task", "approve", "g1", "--group", "reviewers", as_user=APPROVER, check=False)
    assert proc.returncode != 0 and "groups the requesting user belongs to" in proc.stderr
    cmd = [sys.executable, "-m", "agentops_operator.cli", "-n", ns, "--as", "carol", "--as-group", "reviewers",
           "task", "approve", "g1", "--group", "reviewers", "--reason", "board ok"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    t = phase_is(ns, "g1", "Done")
    assert t["status"]["history"][-1]["gates"][0]["message"] == "approved by carol"

    to_review_then_request_done(ns, "g2", "{name: quick, type: Approval, "
                                "approval: {required: 1, timeoutSeconds: 3, onTimeout: Reject}}")
    t = phase_is(ns, "g2", "Rejected", timeout=30)
    last = t["status"]["history"][-1]
    assert last["by"] == "system:agentops-operator" and "timed out" in last["notes"]


def test_agent_role_approver(team: str, operator) -> None:
    ns = team
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: qa-bot, namespace: {ns}}}
spec: {{role: qa, image: registry.example/qa:1}}
""")
    sa = f"system:serviceaccount:{ns}:agent-qa-bot"
    kubectl("create", "rolebinding", "qa-bot-approves", "--clusterrole=agentops-approver",
            f"--serviceaccount={ns}:agent-qa-bot", "-n", ns)
    to_review_then_request_done(ns, "r1", "{name: qa-signoff, type: Approval, "
                                "approval: {required: 1, approvers: {roles: [qa]}}}")
    blocked(ns, "r1", "AwaitingApproval")
    cli(ns, "task", "approve", "r1", "--reason", "suite green", as_user=sa)
    t = phase_is(ns, "r1", "Done")
    assert t["status"]["history"][-1]["gates"][0]["message"] == f"approved by {sa}"
