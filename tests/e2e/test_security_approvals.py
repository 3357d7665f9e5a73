"""Attacks on approvals and on the audit trail: bypassing a review, approving one's own work,
an agent editing more than its work, deleting the history."""

from __future__ import annotations

import json

from .kubeutil import apply, kget, kubectl, wait_for
from .secutil import bind, create, patch, refused, settle, task_body
from .taskutil import blocked, cli, phase_is

NO_REVIEW_GATE = [{"transition": "InProgress->Review", "gates": []}]


def agent(ns: str, name: str) -> str:
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: {name}, namespace: {ns}}}
spec: {{role: developer, image: registry.example/dev:1, maxConcurrentTasks: 5}}
""")
    kubectl("create", "rolebinding", f"sa-{name}", "--clusterrole=agentops-agent",
            f"--serviceaccount={ns}:agent-{name}", "-n", ns)
    return f"system:serviceaccount:{ns}:agent-{name}"


def test_agent_cannot_remove_its_approval_gate_take_tasks_or_edit_others(ns: str, operator) -> None:
    dev1, dev2 = agent(ns, "dev-1"), agent(ns, "dev-2")
    bind(ns, "alice", "agentops-editor")
    settle(ns, dev1, "patch", "agenttasks.agentops.dev")
    assert create(ns, task_body("t1", assignee="dev-1", gates=NO_REVIEW_GATE), "alice")[0]
    assert create(ns, task_body("free", role="nobody-has-it"), "alice")[0]  # stays in the Backlog
    phase_is(ns, "t1", "Assigned")
    # dev-1 removes the approval its own move would need.
    refused(patch(ns, "agenttask", "t1", {"spec": {"gates": [{"transition": "Review->Done", "gates": []}]}}, dev1),
            "spec.gates", "may only change spec.requestedPhase")
    refused(patch(ns, "agenttask", "t1", {"spec": {"priority": 1000}}, dev1), "spec.priority")
    refused(patch(ns, "agenttask", "t1", {"metadata": {"labels": {"team": "none"}}}, dev1), "metadata.labels")
    refused(patch(ns, "agenttask", "t1", {"metadata": {"annotations": {"team": "none"}}}, dev1), "metadata.labels")
    # Progress notes (the worker library's annotation) are work: on its own task only.
    refused(patch(ns, "agenttask", "t1", {"metadata": {"annotations": {"agentops.dev/progress": "[]"}}}, dev2),
            "metadata.annotations", "only on tasks assigned to it")
    assert patch(ns, "agenttask", "t1", {"metadata": {"annotations": {"agentops.dev/progress": "[]"}}}, dev1)[0]
    # dev-1 takes a Backlog task by naming itself.
    refused(patch(ns, "agenttask", "free", {"spec": {"assignee": "dev-1"}}, dev1), "spec.assignee")
    # dev-2 edits dev-1's deliverable.
    refused(patch(ns, "agenttask", "t1", {"spec": {"output": "https://evil.example/pr"}}, dev2),
            "assigned to it")
    # dev-1 may do its work on its own task.
    assert patch(ns, "agenttask", "t1", {"spec": {"requestedPhase": "InProgress", "by": dev1}}, dev1)[0]
    phase_is(ns, "t1", "InProgress")
    assert patch(ns, "agenttask", "t1", {"spec": {"requestedPhase": "Review", "by": dev1, "output": "pr/1",
                                                  "notes": "done"}}, dev1)[0]
    phase_is(ns, "t1", "Review")
    assert patch(ns, "agenttask", "t1", {"spec": {"requestedPhase": "Done", "by": dev1}}, dev1)[0]
    blocked(ns, "t1", "AwaitingApproval")
    t = kget("agenttask", "t1", ns)
    assert t["spec"]["gates"] == NO_REVIEW_GATE and t["status"]["phase"] == "Review"


def test_namespace_required_gate_beats_a_task_override(ns: str, operator) -> None:
    bind(ns, "alice", "agentops-editor", "edit")
    bind(ns, "bob", "agentops-approver")
    bind(ns, "carol", "agentops-approver")
    agent(ns, "dev-1")
    apply(f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: review-floor
  namespace: {ns}
  labels: {{agentops.dev/gate-policy: "true"}}
data:
  policy.yaml: |
    - transition: Review->Done
      gates:
      - name: two-reviewers
        type: Approval
        required: true
        approval: {{required: 2, approvers: {{users: [bob, carol]}}}}
""")
    settle(ns, "alice", "create", "agenttasks.agentops.dev")
    # The task tries to drop every Review->Done gate, and to replace the floor by a weaker namesake.
    weak = {"transition": "Review->Done", "gates": [
        {"name": "two-reviewers", "type": "Approval", "approval": {"required": 1}}]}
    assert create(ns, task_body("t2", assignee="dev-1", gates=[*NO_REVIEW_GATE, weak]), "alice")[0]
    phase_is(ns, "t2", "Assigned")
    for step in ("InProgress", "Review", "Done"):
        cli(ns, "task", "move", "t2", step, as_user="alice")
        if step != "Done":
            phase_is(ns, "t2", step)
    assert "0/2 approvals" in blocked(ns, "t2", "AwaitingApproval")["message"]
    cli(ns, "task", "approve", "t2", as_user="bob")
    assert "1/2 approvals (by bob)" in blocked(ns, "t2", "AwaitingApproval")["message"]
    # Overriding it again from the task changes nothing.
    assert patch(ns, "agenttask", "t2", {"spec": {"gates": [{"transition": "Review->Done", "gates": []}]}},
                 "alice")[0]
    blocked(ns, "t2", "AwaitingApproval")
    assert kget("agenttask", "t2", ns)["status"]["phase"] == "Review"
    cli(ns, "task", "approve", "t2", as_user="carol")
    phase_is(ns, "t2", "Done")
    # A task cannot mark its own gates required (only a namespace policy can).
    refused(patch(ns, "agenttask", "t2", {"spec": {"gates": [{"transition": "Done->Deployed", "gates": [
        {"name": "x", "type": "Approval", "required": True}]}]}}, "alice"), "namespace gate policies only")


def test_requester_and_assignee_cannot_approve_their_own_move(ns: str, operator) -> None:
    rita = "rita"  # edits and may approve
    bind(ns, rita, "agentops-editor", "agentops-approver")
    bind(ns, "bob", "agentops-approver")
    dev1 = agent(ns, "dev-1")
    kubectl("create", "rolebinding", "dev-1-approves", "--clusterrole=agentops-approver",
            f"--serviceaccount={ns}:agent-dev-1", "-n", ns)
    settle(ns, rita, "approve", "agenttasks.agentops.dev")
    settle(ns, dev1, "approve", "agenttasks.agentops.dev")
    # The task's own gate: refused at admission.
    own_gate = [*NO_REVIEW_GATE, {"transition": "Review->Done", "gates": [{"name": "review", "type": "Approval"}]}]
    assert create(ns, task_body("s1", assignee="dev-1", gates=own_gate), rita)[0]
    phase_is(ns, "s1", "Assigned")
    for step in ("InProgress", "Review", "Done"):
        cli(ns, "task", "move", "s1", step, as_user=rita)
        if step != "Done":
            phase_is(ns, "s1", step)
    blocked(ns, "s1", "AwaitingApproval")
    proc = cli(ns, "task", "approve", "s1", as_user=rita, check=False)
    assert proc.returncode != 0 and "separation of duties" in proc.stderr
    proc = cli(ns, "task", "approve", "s1", as_user=dev1, check=False)
    assert proc.returncode != 0 and "separation of duties" in proc.stderr
    # The default policy's gate (not in the task): accepted at admission, not counted by the operator.
    assert create(ns, task_body("s2", assignee="dev-1", gates=NO_REVIEW_GATE), rita)[0]
    phase_is(ns, "s2", "Assigned")
    for step in ("InProgress", "Review", "Done"):
        cli(ns, "task", "move", "s2", step, as_user=rita)
        if step != "Done":
            phase_is(ns, "s2", step)
    cli(ns, "task", "approve", "s2", as_user=rita)
    cli(ns, "task", "approve", "s2", as_user=dev1)
    msg = wait_for(lambda: (c := blocked(ns, "s2", "AwaitingApproval"))["message"].count("separation of duties")
                   and c["message"], timeout=30, what="self-approvals reported as not counted")
    assert "rita (requested the move)" in msg and f"{dev1} (did the work)" in msg and "0/1 approvals" in msg
    assert kget("agenttask", "s2", ns)["status"]["phase"] == "Review"
    cli(ns, "task", "approve", "s2", as_user="bob")
    t = phase_is(ns, "s2", "Done")
    assert t["status"]["history"][-1]["gates"][0]["message"] == "approved by bob"
    # Opting out per gate is explicit.
    opt_out = [*NO_REVIEW_GATE, {"transition": "Review->Done", "gates": [
        {"name": "solo", "type": "Approval", "approval": {"allowSelfApproval": True}}]}]
    assert create(ns, task_body("s3", assignee="dev-1", gates=opt_out), rita)[0]
    phase_is(ns, "s3", "Assigned")
    for step in ("InProgress", "Review", "Done"):
        cli(ns, "task", "move", "s3", step, as_user=rita)
        if step != "Done":
            phase_is(ns, "s3", step)
    cli(ns, "task", "approve", "s3", as_user=rita)
    phase_is(ns, "s3", "Done")


def test_deleting_a_task_with_history_needs_purge(ns: str, operator) -> None:
    bind(ns, "alice", "agentops-editor", "edit")
    bind(ns, "ada", "agentops-admin")
    agent(ns, "dev-1")
    settle(ns, "alice", "delete", "agenttasks.agentops.dev")
    settle(ns, "ada", "purge", "agenttasks.agentops.dev")
    for name in ("fresh", "worked"):
        assert create(ns, task_body(name, assignee="dev-1", gates=NO_REVIEW_GATE), "alice")[0]
        phase_is(ns, name, "Assigned")
    cli(ns, "task", "move", "worked", "InProgress", as_user="alice")
    phase_is(ns, "worked", "InProgress")
    cli(ns, "task", "cancel", "worked", as_user="alice")
    phase_is(ns, "worked", "Cancelled")
    # Terminal, but it has a history: alice cannot make it disappear.
    proc = kubectl("delete", "agenttask", "worked", "-n", ns, as_user="alice", check=False)
    assert proc.returncode != 0 and "purge" in proc.stderr and "3 recorded moves" in proc.stderr
    # Nothing but the automatic assignment: nothing to lose.
    kubectl("delete", "agenttask", "fresh", "-n", ns, as_user="alice")
    # A namespace admin (agentops-admin: purge) may.
    kubectl("delete", "agenttask", "worked", "-n", ns, as_user="ada")
    assert kubectl("get", "agenttask", "worked", "-n", ns, check=False).returncode != 0
    assert json.loads(kubectl("get", "agenttasks", "-n", ns, "-o", "json").stdout)["items"] == []
