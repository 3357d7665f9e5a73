"""Worker library: the pure views (Task, actionable, handoff context). The API paths run in
tests/e2e/test_workers.py against the real cluster."""

from __future__ import annotations

import time
from typing import Any

from agentops_operator import taskrouting
from agentops_operator.taskoutcomes import revision_annotation
from agentops_operator.worker import Task, Worker


def task(phase: str, requested: str, assignee: str | None = "dev-1", **status: Any) -> Task:
    return Task({"metadata": {"name": "t1", "resourceVersion": "7"},
                 "spec": {"requestedPhase": requested, "description": "do it"},
                 "status": {"phase": phase, "assignee": assignee, **status}})


def worker(revision: str | None = None, agent_status: dict[str, Any] | None = None) -> Worker:
    w = Worker.__new__(Worker)
    w.agent = "dev-1"
    w.revision = revision
    w._routing = (time.monotonic() + 3600, agent_status or {})  # a fresh read of the Agent's status
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


def test_during_a_canary_each_revision_acts_on_its_share_and_stamps_what_it_works_on() -> None:
    status = {"stableRevision": "r1", "currentRevision": "r2", "canaryWeight": 50}
    stable, canary = worker("r1", status), worker("r2", status)
    tasks = [Task({"metadata": {"name": f"t{i}", "uid": f"uid-{i}"}, "spec": {"requestedPhase": "Assigned"},
                   "status": {"phase": "Assigned", "assignee": "dev-1"}}) for i in range(200)]
    for t in tasks:
        assert stable.is_actionable(t) != canary.is_actionable(t)  # exactly one revision takes it
        want = taskrouting.owner(t.obj["metadata"]["uid"], None, status)
        assert canary.is_actionable(t) == (want == "r2")
    assert 60 < sum(canary.is_actionable(t) for t in tasks) < 140
    # Without a known revision (an external process) or a canary, every worker takes everything.
    assert all(worker(None, status).is_actionable(t) for t in tasks)
    assert all(worker("r1", {"stableRevision": "r1"}).is_actionable(t) for t in tasks)
    # The stamp: this Agent's annotation, written once per revision change.
    obj: dict[str, Any] = {"metadata": {"name": "t"}}
    assert canary._stamp(obj) and obj["metadata"]["annotations"] == {revision_annotation("dev-1"): "r2"}
    assert not canary._stamp(obj)
    assert not worker(None)._stamp({"metadata": {}})
    assert stable.stamped(Task(obj)) == "r2"
