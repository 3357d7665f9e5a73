"""Worker library: the pure views (Task, actionable, handoff context). The API paths run in
tests/e2e/test_workers.py against the real cluster."""

from __future__ import annotations

from typing import Any

from agentops_operator.worker import Task, Worker


def task(phase: str, requested: str, assignee: str | None = "dev-1", **status: Any) -> Task:
    return Task({"metadata": {"name": "t1", "resourceVersion": "7"},
                 "spec": {"requestedPhase": requested, "description": "do it"},
                 "status": {"phase": phase, "assignee": assignee, **status}})


def worker() -> Worker:
    w = Worker.__new__(Worker)
    w.agent = "dev-1"
    return w


def test_actionable_only_when_ours_and_nothing_pending() -> None:
    w = worker()
    assert w.is_actionable(task("Assigned", "Assigned"))
    assert not w.is_actionable(task("Assigned", "InProgress"))  # our request is pending
    assert not w.is_actionable(task("Assigned", "Assigned", assignee="dev-2"))
    assert not w.is_actionable(task("Deployed", "Deployed"))
    assert w.is_actionable(task("Rejected", "Rejected"))
    # After a rejection the old request for Done is illegal from Rejected: stale, so the rework is due.
    assert w.is_actionable(task("Rejected", "Done"))


def test_blocked_condition() -> None:
    t = task("Review", "Done", conditions=[{"type": "TransitionBlocked", "status": "True",
                                            "reason": "AwaitingApproval"}])
    assert t.pending and t.blocked and t.blocked["reason"] == "AwaitingApproval"


def test_context_collects_outputs_notes_and_rejections_once() -> None:
    t = task("Rejected", "Rejected",
             handoffs=[{"stage": "qa", "outputs": ["pr/1"], "notes": "first"},
                       {"stage": "dev", "outputs": ["pr/1"], "rejections": ["qa: missing tests"]}],
             history=[{"from": "InProgress", "to": "Review", "output": "pr/1", "notes": "first"},
                      {"from": "Review", "to": "Rejected", "notes": "missing tests"}],
             approvals=[{"approver": "qa", "decision": "Rejected", "reason": "missing tests"}])
    ctx = worker().context(t)
    assert ctx.description == "do it"
    assert ctx.outputs == ["pr/1"]
    assert ctx.notes == ["first", "missing tests"]
    assert ctx.rejections == ["qa: missing tests"]
    no_handoffs = task("Rejected", "Rejected", approvals=[{"approver": "bob", "decision": "Rejected", "reason": "x"},
                                                          {"approver": "bob", "decision": "Approved", "reason": "y"}])
    assert worker().context(no_handoffs).rejections == ["bob: x"]
