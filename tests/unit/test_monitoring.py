"""monitoring.py: thresholds from the namespace policy, the Stale condition's episodes, durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from agentops_operator import monitoring as mon
from agentops_operator.conditions import set_condition
from agentops_operator.lifecycle import Phase
from agentops_operator.timeutil import format_time

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("4h", 14400), ("1d2h", 93600),
                                               ("2.5s", 2.5), (3, 3), ("1h30m", 5400)])
def test_parse_duration(text: object, seconds: float) -> None:
    assert mon.parse_duration(text, "x") == seconds


@pytest.mark.parametrize("bad", ["", "4", "h", "0s", "-1h", "1x", True, None, "367d", "1h 2m", [1]])
def test_parse_duration_refuses_and_names_the_field(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^where: "):
        mon.parse_duration(bad, "where")


@given(hs.integers(0, 365), hs.integers(0, 23), hs.integers(0, 59), hs.integers(0, 59))
def test_format_parse_round_trip(d: int, h: int, m: int, s: int) -> None:
    seconds = d * 86400 + h * 3600 + m * 60 + s
    if seconds == 0:
        return
    assert mon.parse_duration(mon.format_duration(seconds), "x") == seconds


def test_policy_defaults_override_and_off() -> None:
    assert mon.parse_policy([]).stale_after == mon.DEFAULT_STALE_AFTER
    p = mon.parse_policy([("a", {"staleAfter": {"InProgress": "2s"}}), ("b", {"staleAfter": {"Review": "1h"}})])
    assert p.stale_after == {"InProgress": 2.0, "Review": 3600.0}
    assert mon.parse_policy([("a", {"staleAfter": {}})]).stale_after == {}
    assert mon.parse_policy([("a", None)]).stale_after == mon.DEFAULT_STALE_AFTER


@pytest.mark.parametrize(("doc", "field"), [
    ({"staleAfter": {"Working": "1h"}}, "staleAfter.Working: not a task phase"),
    ({"staleAfter": {"Review": "soon"}}, "staleAfter.Review: expected a duration"),
    ({"staleAfer": {}}, "unknown field 'staleAfer'"),
    ({"staleAfter": ["InProgress"]}, "staleAfter: expected a mapping"),
    ("staleAfter", "expected a mapping"),
])
def test_policy_errors_name_the_configmap_and_field(doc: object, field: str) -> None:
    with pytest.raises(ValueError) as exc:
        mon.parse_policy([("ConfigMap p data.monitoring.yaml", doc)])
    assert str(exc.value).startswith("ConfigMap p data.monitoring.yaml: ")
    assert field in str(exc.value)


def _status(phase: str, entered: datetime | None,
            conditions: list[dict[str, object]] | None = None) -> dict[str, object]:
    st: dict[str, object] = {"phase": phase, "conditions": conditions or []}
    if entered is not None:
        st["lastTransitionTime"] = format_time(entered)
    return st


POLICY = mon.MonitoringPolicy({"InProgress": 10.0, "Review": 5.0})


def test_staleness_and_due_time() -> None:
    st = _status("InProgress", T0)
    s = mon.task_staleness(st, T0 - timedelta(hours=1), T0 + timedelta(seconds=4), POLICY)
    assert not s.stale and s.due_in == pytest.approx(6 + mon.DUE_SLACK)
    s = mon.task_staleness(st, T0, T0 + timedelta(seconds=10), POLICY)
    assert s.stale and s.due_in is None and s.in_phase == 10
    # Backlog is not watched by this policy; a task without moves counts from its creation
    s = mon.task_staleness({}, T0, T0 + timedelta(days=9), POLICY)
    assert s.phase == "Backlog" and s.threshold is None and not s.stale and s.due_in is None


def _apply(conds: list[dict[str, object]], u: mon.ConditionUpdate | None, now: datetime) -> list[dict[str, object]]:
    if u is None:
        return conds
    return set_condition(conds, mon.STALE, u.status, u.reason, u.message, 1, now)


def test_one_event_per_episode() -> None:
    conds: list[dict[str, object]] = []
    events = []
    # healthy task: no condition at all
    s = mon.task_staleness(_status("InProgress", T0), T0, T0 + timedelta(seconds=3), POLICY)
    assert mon.stale_update(conds, s) is None
    # many looks while stale: one update with an Event
    for k in range(10, 20):
        s = mon.task_staleness(_status("InProgress", T0), T0, T0 + timedelta(seconds=k), POLICY)
        u = mon.stale_update(conds, s)
        if u and u.event:
            events.append(u)
        conds = _apply(conds, u, T0 + timedelta(seconds=k))
    assert len(events) == 1 and events[0].status and "InProgress" in events[0].message
    # moved on: cleared without an Event, once
    t1 = T0 + timedelta(seconds=30)
    s = mon.task_staleness(_status("Review", t1), T0, t1, POLICY)
    u = mon.stale_update(conds, s)
    assert u is not None and not u.status and u.event is None
    conds = _apply(conds, u, t1)
    assert mon.stale_update(conds, s) is None
    # stale again in Review: a new episode, a new Event
    s = mon.task_staleness(_status("Review", t1), T0, t1 + timedelta(seconds=6), POLICY)
    u = mon.stale_update(conds, s)
    assert u is not None and u.status and u.event == "Warning" and "Review" in u.message


@given(hs.lists(hs.tuples(hs.sampled_from(["InProgress", "Review", "Backlog"]), hs.integers(0, 40)),
                min_size=1, max_size=30))
def test_property_events_equal_false_to_true_flips(moves: list[tuple[str, int]]) -> None:
    """Whatever the sequence of phases and look times: the condition is True exactly when the task
    is stale, and Warning Events = number of episodes (flips to True, or a stale phase changing)."""
    conds: list[dict[str, object]] = []
    now = T0
    entered = T0
    phase = "Backlog"
    events = 0
    episodes = 0
    was = False
    last_msg = ""
    for new_phase, wait in moves:
        if new_phase != phase:
            phase, entered = new_phase, now
        now = now + timedelta(seconds=wait)
        s = mon.task_staleness(_status(phase, entered), T0, now, POLICY)
        u = mon.stale_update(conds, s)
        if u and u.event:
            events += 1
        conds = _apply(conds, u, now)
        cond = next((c for c in conds if c["type"] == mon.STALE), None)
        assert (cond is not None and cond["status"] == "True") == s.stale
        if s.stale and (not was or last_msg != mon.stale_message(s)):
            episodes += 1
        was = s.stale
        last_msg = mon.stale_message(s) if s.stale else ""
        # idempotent: looking again at the same moment changes nothing
        assert mon.stale_update(conds, s) is None
    assert events == episodes


def test_invalid_policy_once() -> None:
    u = mon.invalid_policy_update([], "ConfigMap p: staleAfter.X: not a task phase")
    assert u is not None and u.event == "Warning" and not u.status
    conds = _apply([], u, T0)
    assert mon.invalid_policy_update(conds, "ConfigMap p: staleAfter.X: not a task phase") is None


def test_problem_readers() -> None:
    blocked = set_condition([], "TransitionBlocked", True, "GateFailed", "gate deploy: failed", 1, T0)
    assert mon.deploy_failed({"requestedPhase": "Deployed"}, {"phase": "Done", "conditions": blocked})
    assert not mon.deploy_failed({"requestedPhase": "Review"}, {"phase": "InProgress", "conditions": blocked})
    assert mon.blocked_reason({"phase": "Done", "conditions": blocked}) == "GateFailed"
    waiting = set_condition([], "Assigned", False, "NoAgentAvailable", "no agent", 1, T0)
    assert mon.blocked_reason({"conditions": waiting}) == "NoAgentAvailable"
    assert mon.blocked_reason({"phase": "InProgress", "conditions": waiting}) is None
    q = set_condition([], "Warning", True, "AboveThreshold", "", 1, T0)
    assert mon.quota_level({"conditions": q}) == "Warning"
    q = set_condition(q, "Exhausted", True, "LimitReached", "", 1, T0)
    assert mon.quota_level({"conditions": q}) == "Exhausted"
    assert mon.quota_level({}) is None
    assert mon.agent_degraded({"phase": "Degraded"}) and not mon.agent_degraded({"phase": "Healthy"})
    hb = set_condition([], "Ready", False, "HeartbeatExpired", "", 1, T0)
    assert mon.heartbeat_expired({"conditions": hb})
    assert not mon.heartbeat_expired({"conditions": set_condition([], "Ready", True, "HeartbeatFresh", "", 1, T0)})


def _task(history: list[tuple[str, str, int]], uid: str = "u1") -> dict[str, object]:
    entries = [{"from": f, "to": t, "at": format_time(T0 + timedelta(seconds=s)), "by": "x"} for f, t, s in history]
    return {"metadata": {"namespace": "ns", "name": "t", "uid": uid, "creationTimestamp": format_time(T0)},
            "status": {"transitions": len(entries), "history": entries, "phase": entries[-1]["to"] if entries else
                       "Backlog", "lastTransitionTime": entries[-1]["at"] if entries else None}}


def test_new_moves_phase_durations_and_cycle_time() -> None:
    h = [("Backlog", "Assigned", 5), ("Assigned", "InProgress", 7), ("InProgress", "Review", 20),
         ("Review", "Done", 26)]
    old = _task(h[:1])
    new = _task(h)
    obs = mon.new_moves(old, new)
    assert [(o.phase, o.seconds, o.cycle) for o in obs] == [("Assigned", 2, None), ("InProgress", 13, None),
                                                            ("Review", 6, 26)]
    assert [(o.phase, o.seconds) for o in mon.new_moves(None, _task(h[:1]))] == [("Backlog", 5)]
    assert mon.new_moves(new, new) == []  # nothing new: nothing observed twice


def test_job_finished() -> None:
    start = format_time(T0)
    ok = {"status": {"startTime": start, "completionTime": format_time(T0 + timedelta(seconds=3)),
                     "conditions": [{"type": "Complete", "status": "True"}]}}
    bad = {"status": {"startTime": start, "conditions": [
        {"type": "Failed", "status": "True", "lastTransitionTime": format_time(T0 + timedelta(seconds=8))}]}}
    assert mon.job_finished(ok) == ("passed", 3)
    assert mon.job_finished(bad) == ("failed", 8)
    assert mon.job_finished({"status": {"startTime": start}}) is None


def test_phase_names_are_the_lifecycle_phases() -> None:
    assert set(mon.DEFAULT_STALE_AFTER) <= {p.value for p in Phase}
