"""metrics.py: state gauges from a cache at scrape time, the agent-label flag, histograms from changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agentops_operator import metrics
from agentops_operator.cache import Store
from agentops_operator.conditions import set_condition
from agentops_operator.timeutil import format_time

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _obj(kind_ns: str, name: str, spec: dict[str, object], status: dict[str, object], rv: int = 1) -> dict[str, object]:
    return {"metadata": {"namespace": kind_ns, "name": name, "uid": f"uid-{name}", "resourceVersion": str(rv),
                         "creationTimestamp": format_time(T0)}, "spec": spec, "status": status}


def _store() -> Store:
    s = Store()
    stale = set_condition([], "Stale", True, "PhaseTooLong", "m", 1, T0)
    blocked = set_condition([], "TransitionBlocked", True, "GateFailed", "m", 1, T0)
    s.upsert("agenttasks", _obj("a", "t1", {}, {"phase": "Backlog"}))
    s.upsert("agenttasks", _obj("a", "t2", {"requestedPhase": "Review"},
                                {"phase": "InProgress", "lastTransitionTime": format_time(T0), "conditions": stale}))
    s.upsert("agenttasks", _obj("a", "t3", {"requestedPhase": "Deployed"}, {"phase": "Done", "conditions": blocked}))
    s.upsert("agenttasks", _obj("b", "t4", {}, {"phase": "Done"}))
    ready = set_condition([], "Ready", True, "x", "", 1, T0)
    expired = set_condition([], "Ready", False, "HeartbeatExpired", "", 1, T0)
    s.upsert("agents", _obj("a", "dev1", {"role": "dev"}, {"phase": "Healthy", "conditions": ready,
                                                            "canaryWeight": 20}))
    s.upsert("agents", _obj("a", "dev2", {"role": "dev"}, {"phase": "Degraded", "canaryWeight": 40}))
    s.upsert("agents", _obj("a", "ext", {"role": "rev"}, {"phase": "Degraded", "conditions": expired}))
    warn = set_condition([], "Warning", True, "AboveThreshold", "", 1, T0)
    s.upsert("quotas", _obj("a", "q", {"resource": "tokens", "limit": 100}, {"used": 85, "reserved": 5,
                                                                            "conditions": warn}))
    return s


def _scrape(per_agent: bool) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reg = CollectorRegistry()
    reg.register(metrics.StateCollector(_store(), lambda: per_agent, lambda: T0 + timedelta(seconds=30)))
    out = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_state_gauges() -> None:
    m = _scrape(True)
    assert m[("agentops_build_info", (("version", metrics.__version__),))] == 1
    assert m[("agentops_tasks", (("namespace", "a"), ("phase", "Backlog")))] == 1
    assert m[("agentops_tasks", (("namespace", "a"), ("phase", "Review")))] == 0
    assert m[("agentops_tasks", (("namespace", "b"), ("phase", "Done")))] == 1
    assert m[("agentops_tasks_blocked", (("namespace", "a"), ("reason", "GateFailed")))] == 1
    assert m[("agentops_task_stale", (("namespace", "a"), ("phase", "InProgress"), ("task", "t2")))] == 30
    assert m[("agentops_task_deploy_failed", (("namespace", "a"), ("task", "t3")))] == 1
    assert [k for k in m if k[0] == "agentops_task_stale"] == [
        ("agentops_task_stale", (("namespace", "a"), ("phase", "InProgress"), ("task", "t2")))]
    assert m[("agentops_agents", (("namespace", "a"), ("ready", "true"), ("role", "dev")))] == 1
    assert m[("agentops_agents", (("namespace", "a"), ("ready", "false"), ("role", "dev")))] == 1
    assert m[("agentops_agent_rollout_phase", (("agent", "dev2"), ("namespace", "a"), ("phase", "Degraded")))] == 1
    assert m[("agentops_agent_canary_weight", (("agent", "dev1"), ("namespace", "a")))] == 20
    assert m[("agentops_agent_degraded", (("agent", "dev2"), ("namespace", "a")))] == 1
    assert m[("agentops_agent_heartbeat_expired", (("agent", "ext"), ("namespace", "a")))] == 1
    assert ("agentops_agent_heartbeat_expired", (("agent", "dev2"), ("namespace", "a"))) not in m
    q = (("namespace", "a"), ("quota", "q"), ("resource", "tokens"))
    assert (m[("agentops_quota_used", q)], m[("agentops_quota_reserved", q)], m[("agentops_quota_limit", q)]) == \
        (85, 5, 100)
    assert m[("agentops_quota_warning", (("level", "Warning"), *q))] == 1


def test_agent_label_dropped() -> None:
    m = _scrape(False)
    assert not any(dict(labels).get("agent") for _, labels in m)
    assert m[("agentops_agent_rollout_phase", (("namespace", "a"), ("phase", "Degraded")))] == 2
    assert m[("agentops_agent_canary_weight", (("namespace", "a"),))] == 40
    assert m[("agentops_agent_degraded", (("namespace", "a"),))] == 2


def _hist(name: str, labels: dict[str, str]) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name + "_count", labels) or 0.0


def test_move_latency_observed_once_per_request() -> None:
    clock = iter([10.0, 10.4, 99.0])
    ml = metrics.MoveLatency(clock=lambda: next(clock))
    before = _hist("agentops_move_latency_seconds", {"namespace": "lat"})
    t = _obj("lat", "t", {"requestedPhase": "InProgress"}, {"phase": "Assigned"})
    ml.change(None, t)
    assert ml.pending() == 1
    ml.change(t, t)  # seen again: the first sighting counts
    done = _obj("lat", "t", {"requestedPhase": "InProgress"}, {"phase": "InProgress"})
    ml.change(t, done)
    ml.change(done, done)
    assert ml.pending() == 0
    assert _hist("agentops_move_latency_seconds", {"namespace": "lat"}) == before + 1
    ml.change(None, t)
    ml.change(t, None)  # deleted: forgotten
    assert ml.pending() == 0


def test_job_and_phase_histograms() -> None:
    job = {"metadata": {"namespace": "jh", "name": "j", "labels": {metrics.GATE_LABEL: "tests"}},
           "status": {"startTime": format_time(T0)}}
    done = {**job, "status": {"startTime": format_time(T0), "completionTime": format_time(T0 + timedelta(seconds=2)),
                              "conditions": [{"type": "Complete", "status": "True"}]}}
    before = _hist("agentops_gate_job_duration_seconds", {"namespace": "jh", "result": "passed"})
    metrics.job_changed(job, done, False)
    metrics.job_changed(done, done, False)  # already finished: not again
    assert _hist("agentops_gate_job_duration_seconds", {"namespace": "jh", "result": "passed"}) == before + 1
    entries = [{"from": "Backlog", "to": "Assigned", "at": format_time(T0 + timedelta(seconds=4))},
               {"from": "Assigned", "to": "Done", "at": format_time(T0 + timedelta(seconds=9))}]
    new = _obj("ph", "t", {}, {"transitions": 2, "history": entries, "phase": "Done"})
    metrics.task_changed(None, new, False)
    assert _hist("agentops_task_phase_duration_seconds", {"namespace": "ph", "phase": "Assigned"}) == 1
    assert _hist("agentops_task_cycle_time_seconds", {"namespace": "ph"}) == 1


def test_agent_label_flag() -> None:
    import pytest

    from agentops_operator.settings import Settings

    assert Settings.from_args([]).metrics_agent_label is True
    assert Settings.from_args(["--metrics-agent-label=false"]).metrics_agent_label is False
    assert Settings.from_args(["--metrics-agent-label"]).metrics_agent_label is True
    with pytest.raises(SystemExit):
        Settings.from_args(["--metrics-agent-label=maybe"])
