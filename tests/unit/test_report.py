"""Pure analytics behind `monitor` and `report` (agentops_operator.cli.analytics)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentops_operator.cli import analytics as an

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def at(minutes: float) -> str:
    return iso(T0 + timedelta(minutes=minutes))


def pipeline_task(name: str = "t1", rejected: bool = True) -> dict[str, Any]:
    """dev-1 works, qa-1 reviews (rejects once), dev-1 reworks, qa-1 approves, ops-1 deploys."""
    moves = [("Backlog", "Assigned", 0), ("Assigned", "InProgress", 1), ("InProgress", "Review", 11)]
    # As the operator records them: no handoff for the first assignment, one per stage change.
    handoffs = [("qa", "dev-1", "qa-1", 11)]
    if rejected:
        moves += [("Review", "Rejected", 15), ("Rejected", "InProgress", 16), ("InProgress", "Review", 26)]
        handoffs += [("dev", "qa-1", "dev-1", 15), ("qa", "dev-1", "qa-1", 26)]
    end = moves[-1][2]
    moves += [("Review", "Done", end + 4), ("Done", "Deployed", end + 6)]
    handoffs += [("deploy", "qa-1", "ops-1", end + 4)]
    history = []
    for frm, to, m in moves:
        h: dict[str, Any] = {"from": frm, "to": to, "at": at(m), "by": "x"}
        if to == "Rejected":
            h["gates"] = [{"name": "approval", "type": "Approval", "transition": "Review->Done", "state": "Failed"}]
        history.append(h)
    return {
        "metadata": {"namespace": "ns", "name": name, "creationTimestamp": at(-1)},
        "spec": {"title": name},
        "status": {"phase": "Deployed", "assignee": "ops-1", "history": history,
                   "handoffs": [{"stage": s, "fromAgent": f, "toAgent": a, "at": at(m)}
                                for s, f, a, m in handoffs]},
    }


def test_holder_before_and_after_a_handoff() -> None:
    t = pipeline_task()
    submit = T0 + timedelta(minutes=11)
    assert an.holder_at(t, submit, before=True) == "dev-1"
    assert an.holder_at(t, submit, before=False) == "qa-1"
    assert an.holder_at(t, T0, before=True) is None  # Backlog -> Assigned: nobody held it before
    assert an.holder_at(t, T0, before=False) == "dev-1"  # the first holder has no handoff record
    assert an.holder_at(t, T0 + timedelta(minutes=1), before=True) == "dev-1"


def test_stage_credit_goes_to_every_agent_of_the_pipeline() -> None:
    rep = an.build_report([pipeline_task()], [], None, T0 + timedelta(days=1))
    by_agent = {r["agent"]: r for r in rep["agents"]}
    # dev hands on twice (two submissions), qa hands on to deploy once (its rejection hands back: not a
    # finished stage), ops reaches Deployed once. The dev agent is credited although it never held Done.
    assert by_agent["dev-1"]["throughput"] == 2
    assert by_agent["qa-1"]["throughput"] == 1
    assert by_agent["ops-1"]["throughput"] == 1


def test_rejection_rate_and_gate_failures_credit_the_submitter() -> None:
    rep = an.build_report([pipeline_task()], [], None, T0 + timedelta(days=1))
    dev = next(r for r in rep["agents"] if r["agent"] == "dev-1")
    assert (dev["submissions"], dev["rejections"], dev["rejectionRate"]) == (2, 1, 0.5)
    qa = next(r for r in rep["agents"] if r["agent"] == "qa-1")
    assert qa["gateFailures"] == 1 and qa["submissions"] == 0 and qa["rejectionRate"] is None


def test_cycle_time_per_phase() -> None:
    rep = an.build_report([pipeline_task()], [], None, T0 + timedelta(days=1))
    dev = next(r for r in rep["agents"] if r["agent"] == "dev-1")
    # InProgress twice, 10 min each; Assigned 1 min; Rejected 1 min.
    assert dev["cycleTime"]["InProgress"] == {"count": 2, "meanSeconds": 600.0, "medianSeconds": 600.0}
    assert dev["cycleTime"]["Assigned"]["meanSeconds"] == 60.0
    qa = next(r for r in rep["agents"] if r["agent"] == "qa-1")
    assert qa["cycleTime"]["Review"]["count"] == 2  # 4 min, then 4 min


def test_since_and_period_split_rows() -> None:
    late = pipeline_task("t2", rejected=False)
    for h in late["status"]["history"]:
        h["at"] = iso(an.ts(h["at"]) + timedelta(days=1))  # type: ignore[operator]
    for h in late["status"]["handoffs"]:
        h["at"] = iso(an.ts(h["at"]) + timedelta(days=1))  # type: ignore[operator]
    rep = an.build_report([pipeline_task(), late], [], None, T0 + timedelta(days=3), period="day")
    periods = {(r["period"], r["agent"]) for r in rep["agents"]}
    assert ("2026-03-02", "dev-1") in periods and ("2026-03-03", "dev-1") in periods
    week = an.build_report([pipeline_task(), late], [], None, T0 + timedelta(days=3), period="week")
    assert {r["period"] for r in week["agents"]} == {"2026-03-02"}
    only_late = an.build_report([pipeline_task(), late], [], T0 + timedelta(hours=20), T0 + timedelta(days=3))
    dev = next(r for r in only_late["agents"] if r["agent"] == "dev-1")
    assert dev["throughput"] == 1 and dev["rejections"] == 0


def test_task_without_pipeline_credits_the_assignee_once_per_finish() -> None:
    t = {"metadata": {"namespace": "n", "name": "solo"}, "spec": {},
         "status": {"assignee": "dev-1", "history": [
             {"from": "Backlog", "to": "Assigned", "at": at(0)}, {"from": "Assigned", "to": "InProgress", "at": at(1)},
             {"from": "InProgress", "to": "Review", "at": at(2)}, {"from": "Review", "to": "Done", "at": at(3)}]}}
    rep = an.build_report([t], [], None, T0 + timedelta(days=1), agent="dev-1")
    assert [r["throughput"] for r in rep["agents"]] == [1]  # Done; no hand-on inside one agent


def test_empty_inputs_and_quota_use() -> None:
    q = {"metadata": {"namespace": "n", "name": "publish"}, "spec": {"resource": "publish", "limit": 8},
         "status": {"used": 6, "reserved": 1}}
    rep = an.build_report([], [q], None, T0)
    assert rep["agents"] == []
    assert rep["quotas"][0]["percent"] == 75.0 and rep["quotas"][0]["reserved"] == 1
    text = an.report_table(rep)
    assert "publish" in text and "75.0%" in text
    md = an.report_table(rep, markdown=True)
    assert md.startswith("# agentops report") and "| n | publish |" in md


def test_parse_duration() -> None:
    assert an.parse_duration("90s") == timedelta(seconds=90)
    assert an.parse_duration("7d") == timedelta(days=7)
    with pytest.raises(ValueError, match="not a duration"):
        an.parse_duration("soon")


def _cond(type_: str, status: str, reason: str = "", when: datetime = T0) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": reason, "lastTransitionTime": iso(when)}


def test_monitor_checks_fire_and_stay_quiet() -> None:
    now = T0 + timedelta(hours=5)
    stale = {"metadata": {"namespace": "n", "name": "old", "creationTimestamp": iso(T0)}, "spec": {},
             "status": {"phase": "InProgress", "lastTransitionTime": iso(T0), "assignee": "dev-1"}}
    fresh = {"metadata": {"namespace": "n", "name": "new", "creationTimestamp": iso(now)}, "spec": {},
             "status": {"phase": "InProgress", "lastTransitionTime": iso(now)}}
    deployed = {**stale, "metadata": {**stale["metadata"], "name": "done"},
                "status": {**stale["status"], "phase": "Deployed"}}
    assert [a.name for a in an.stale_alerts([stale, fresh, deployed], now, timedelta(hours=4))] == ["old"]
    assert an.stale_alerts([stale], now, timedelta(hours=6)) == []
    # The operator's own result (namespace thresholds, e.g. Deployed 1h) is reported whatever --stale-after says.
    marked = {**deployed, "status": {**deployed["status"], "conditions": [
        {"type": "Stale", "status": "True", "reason": "PhaseTooLong", "message": "Deployed for 5h (threshold 1h)"}]}}
    (alert,) = an.stale_alerts([marked], now, timedelta(days=30))
    assert alert.name == "done" and "Deployed for 5h (threshold 1h) (operator)" in alert.message

    failed_deploy = {"metadata": {"namespace": "n", "name": "d"}, "spec": {"requestedPhase": "Deployed"},
                     "status": {"conditions": [_cond("TransitionBlocked", "True", "GateFailed")],
                                "gates": [{"transition": "Done->Deployed", "state": "Failed"}]}}
    failed_gate = {"metadata": {"namespace": "n", "name": "g"}, "spec": {"requestedPhase": "Review"},
                   "status": {"conditions": [_cond("TransitionBlocked", "True", "GateFailed")]}}
    waiting = {"metadata": {"namespace": "n", "name": "w"}, "spec": {},
               "status": {"conditions": [_cond("TransitionBlocked", "True", "AwaitingApproval")]}}
    assert {(a.check, a.name) for a in an.failure_alerts([failed_deploy, failed_gate, waiting])} == {
        ("deploys", "d"), ("gates", "g")}

    q_ok = {"metadata": {"namespace": "n", "name": "a"}, "spec": {"limit": 10}, "status": {"conditions": []}}
    q_warn = {"metadata": {"namespace": "n", "name": "b"}, "spec": {"limit": 10},
              "status": {"conditions": [_cond("Warning", "True")]}}
    q_full = {"metadata": {"namespace": "n", "name": "c"}, "spec": {"limit": 10},
              "status": {"conditions": [_cond("Warning", "True"), _cond("Exhausted", "True")]}}
    assert [(a.name, a.severity) for a in an.quota_alerts([q_ok, q_warn, q_full])] == [
        ("b", "warning"), ("c", "critical")]

    degraded = {"metadata": {"namespace": "n", "name": "x", "creationTimestamp": iso(T0)}, "spec": {},
                "status": {"phase": "Degraded", "reason": "HeartbeatExpired"}}
    starting = {"metadata": {"namespace": "n", "name": "y", "creationTimestamp": iso(now - timedelta(seconds=5))},
                "spec": {}, "status": {}}
    lost = {"metadata": {"namespace": "n", "name": "z", "creationTimestamp": iso(T0)}, "spec": {},
            "status": {"conditions": [_cond("Ready", "False", "HeartbeatExpired", now - timedelta(minutes=10))]}}
    ready = {"metadata": {"namespace": "n", "name": "r", "creationTimestamp": iso(T0)}, "spec": {},
             "status": {"conditions": [_cond("Ready", "True", "", T0)]}}
    got = an.agent_alerts([degraded, starting, lost, ready], now, timedelta(minutes=2))
    assert [(a.name, a.severity) for a in got] == [("x", "critical"), ("z", "warning")]

    alerts = an.run_checks(("quota",), [degraded], [stale], [q_full], now, timedelta(hours=1), timedelta(minutes=1))
    assert [a.check for a in alerts] == ["quota"]
    wire = alerts[0].wire(now)
    assert wire["at"].endswith("Z") and wire["severity"] == "critical"
