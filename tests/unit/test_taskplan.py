"""plan_task: the AgentTask reconcile's decision as a pure function (no cluster, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentops_operator import crdgen, taskplan
from agentops_operator.handlers.task import check_status
from agentops_operator.lifecycle import Phase, is_legal
from agentops_operator.models import task as task_models
from agentops_operator.models.task import AgentTaskSpec, AgentTaskStatus

NOW = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
NO_GATES = [{"transition": t, "gates": []} for t in ("InProgress->Review", "Review->Done", "Done->Deployed")]
SCHEMA = crdgen.render(task_models.CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def task(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "t1", "namespace": "ns", "uid": "uid-1", "generation": 3, "resourceVersion": "9",
                         "creationTimestamp": "2026-11-22T04:00:00Z"},
            "spec": {"title": "t", **spec}, "status": status or {}}


def inputs(spec: dict[str, Any], status: dict[str, Any] | None = None, **kw: Any) -> taskplan.MoveInputs:
    obj = task(spec, status)
    return taskplan.MoveInputs(obj=obj, spec=AgentTaskSpec.model_validate(obj["spec"]),
                               status=AgentTaskStatus.model_validate(obj["status"]), now=NOW, **kw)


def cond(plan: taskplan.MovePlan, type_: str) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


def test_backlog_is_left_to_the_assignment_pass() -> None:
    plan = taskplan.plan_task(inputs({}))
    assert plan.assign and plan.actions == () and plan.transitions == ()


def test_move_with_a_cost_reserves_then_commits_in_one_plan() -> None:
    i = inputs({"requestedPhase": "Review", "gates": NO_GATES, "costs": [{"resource": "publish", "phase": "Review"}]},
               {"phase": "InProgress", "transitions": 2, "assignee": "dev-1"},
               quotas=(("team", "publish"), ("other", "tokens")))
    plan = taskplan.plan_task(i)
    holder = "AgentTask/t1/uid-1/InProgress->Review/2"
    assert plan.actions == (taskplan.Reserve("team", "publish", 1, holder, "t1: InProgress->Review"),
                            taskplan.Commit("team", holder, "publish", 1))
    assert plan.status["phase"] == "Review" and plan.status["reservations"] == []
    assert plan.transitions == (("InProgress", "Review"),)
    assert [e[1] for e in plan.events] == ["QuotaReserved", "QuotaCommitted", "Transitioned"]
    assert plan.status["observedGeneration"] == 3


def test_refused_reservation_releases_what_the_pass_was_granted() -> None:
    i = inputs({"requestedPhase": "Review", "gates": NO_GATES, "costs": [{"resource": "publish", "phase": "Review"}]},
               {"phase": "InProgress", "transitions": 2}, quotas=(("a", "publish"), ("b", "publish")),
               refusal=taskplan.Refusal("b", "limit 5 reached", NOW + timedelta(seconds=30),
                                        granted=(("a", "publish", 1),)))
    plan = taskplan.plan_task(i)
    assert plan.actions == (taskplan.Release("a", "AgentTask/t1/uid-1/InProgress->Review/2", "publish", 1),)
    assert plan.status["phase"] == "InProgress" and plan.status["reservations"] == []
    blocked = cond(plan, "TransitionBlocked")
    assert (blocked["status"], blocked["reason"]) == ("True", "QuotaExceeded")
    assert "quota b: limit 5 reached" in blocked["message"]
    assert plan.requeue == pytest.approx(31.0)


def test_job_gate_is_created_once_then_a_missing_reference_fails_it_naming_the_field() -> None:
    gates = [{"transition": "InProgress->Review",
              "gates": [{"name": "ci", "type": "Job", "job": {"image": "busybox", "serviceAccountName": "ci"}}]}]
    i = inputs({"requestedPhase": "Review", "gates": gates}, {"phase": "InProgress", "transitions": 2})
    plan = taskplan.plan_task(i)
    (create,) = plan.actions
    assert isinstance(create, taskplan.CreateJob) and (create.gate, create.attempt, create.round) == ("ci", 1, 2)
    assert plan.status["gates"][0]["state"] == "Running" and plan.requeue == taskplan.JOB_POLL_SECONDS
    again = taskplan.plan_task(i.__class__(**{**i.__dict__, "missing_refs": {
        "ci": "gate ci: job.serviceAccountName: ServiceAccount ci not found"}}))
    assert again.actions == ()
    assert "job.serviceAccountName" in cond(again, "TransitionBlocked")["message"]
    assert cond(again, "TransitionBlocked")["reason"] == "GateFailed"


def test_system_request_is_recorded_with_who_why_and_key_then_cleared() -> None:
    i = inputs({"requestedPhase": "Deployed", "gates": NO_GATES},
               {"phase": "Deployed", "transitions": 5,
                "systemRequest": {"phase": "RolledBack", "by": "alertmanager", "reason": "HighErrorRate",
                                  "key": "fp-1"}})
    plan = taskplan.plan_task(i)
    last = plan.status["history"][-1]
    assert (last["from"], last["to"], last["by"], last["reason"], last["key"]) == (
        "Deployed", "RolledBack", "alertmanager", "HighErrorRate", "fp-1")
    assert "systemRequest" not in plan.status
    # Afterwards the user's request (Deployed) is history, not an illegal move.
    after = taskplan.plan_task(inputs({"requestedPhase": "Deployed", "gates": NO_GATES}, plan.status))
    assert after.transitions == () and cond(after, "TransitionBlocked")["status"] != "True"


def test_illegal_system_request_is_dropped_with_a_warning() -> None:
    plan = taskplan.plan_task(inputs({"requestedPhase": "InProgress"}, {
        "phase": "Assigned", "systemRequest": {"phase": "Deployed", "by": "x", "key": "k"}}))
    assert "systemRequest" not in plan.status and plan.status["phase"] == "Assigned"
    assert plan.events[-1][:2] == ("Warning", "SystemMoveRefused")


def test_cancel_stops_running_gate_jobs_only() -> None:
    running = {"metadata": {"name": "j-run", "labels": {}}, "status": {}}
    finished = {"metadata": {"name": "j-done", "labels": {}},
                "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    plan = taskplan.plan_task(inputs({"requestedPhase": "Cancelled"}, {"phase": "InProgress"},
                                     jobs=(running, finished)))
    assert plan.status["phase"] == "Cancelled" and plan.actions == (taskplan.StopJob("j-run"),)


def test_status_round_trips_through_the_model_unchanged() -> None:
    plan = taskplan.plan_task(inputs({"requestedPhase": "Review", "gates": NO_GATES},
                                     {"phase": "InProgress", "transitions": 2, "assignee": "dev-1"}))
    assert taskplan.wire_status(AgentTaskStatus.model_validate(plan.status)) == plan.status


def test_a_status_field_the_crd_does_not_know_fails_the_write() -> None:
    check_status({"phase": "Review", "history": [{"from": "A", "to": "B", "at": "2026-01-01T00:00:00Z"}]})
    with pytest.raises(ValueError, match=r"status.histroy"):
        check_status({"phase": "Review", "histroy": []})
    with pytest.raises(ValueError, match=r"status.history\[0\].bye"):
        check_status({"history": [{"from": "A", "to": "B", "bye": "x"}]})


PHASES = [p.value for p in Phase]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(PHASES), min_size=1, max_size=12),
       st.lists(st.sampled_from(["publish", "tokens"]), max_size=2))
def test_any_request_sequence_moves_only_legally_and_writes_only_known_fields(
        requests: list[str], resources: list[str]) -> None:
    status: dict[str, Any] = {"phase": "Assigned", "transitions": 1, "assignee": "dev-1"}
    costs = [{"resource": r, "phase": p} for r in resources for p in ("Review", "Done")]
    for req in requests:
        i = inputs({"requestedPhase": req, "gates": NO_GATES, "costs": costs}, status,
                   quotas=(("q", "publish"), ("q2", "tokens")))
        plan = taskplan.plan_task(i)
        assert plan == taskplan.plan_task(i)  # pure: same inputs, same plan
        assert crdgen.unknown_keys(plan.status, SCHEMA) == []
        # read with the model and written from it, the status is what the planner meant (no spurious write)
        typed = AgentTaskStatus.model_validate(plan.status)
        assert AgentTaskStatus.model_validate(taskplan.wire_status(typed)) == typed
        for frm, to in plan.transitions:
            assert is_legal(frm, to)
        reserved = sum(a.amount for a in plan.actions if isinstance(a, taskplan.Reserve))
        committed = sum(a.amount for a in plan.actions if isinstance(a, taskplan.Commit))
        assert committed <= reserved + sum(r["amount"] for r in status.get("reservations") or [])
        if not plan.assign:
            status = plan.status
