"""Agent statistics kept incrementally from task deltas: the same figures as counting every task, and a
flush that looks only at the agents whose figures changed."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentops_operator import kube, taskflow
from agentops_operator.cache import store
from agentops_operator.handlers.stats import AgentStats

NS = "stats-ns"
AGENTS = ("dev", "qa", "ops")
PHASES = ("Backlog", "Assigned", "InProgress", "Review", "Rejected", "Done", "Deployed", "Cancelled")


def task(name: str, rv: int, **status: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": name, "resourceVersion": str(rv)}, "status": status}


def agent(name: str, rv: int = 1, **status: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": name, "resourceVersion": str(rv)}, "status": status}


statuses = st.fixed_dictionaries({
    "phase": st.sampled_from(PHASES),
    "assignee": st.one_of(st.none(), st.sampled_from(AGENTS)),
    "completedBy": st.one_of(st.none(), st.sampled_from(AGENTS)),
    "lastTransitionTime": st.sampled_from([f"2026-01-01T00:00:0{i}Z" for i in range(10)]),
    "handoffs": st.lists(st.fixed_dictionaries({
        "stage": st.sampled_from(("dev", "qa", "deploy")), "fromAgent": st.sampled_from(AGENTS),
        "toAgent": st.sampled_from(AGENTS), "at": st.sampled_from(("2026-01-01T00:00:01Z", "2026-01-01T00:00:04Z")),
    }), max_size=4),
})
# A sequence of changes: (task index, new status or None for a deletion).
changes = st.lists(st.tuples(st.integers(0, 4), st.one_of(st.none(), statuses)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(changes)
def test_incremental_figures_equal_counting_every_task(seq: list[tuple[int, dict[str, Any] | None]]) -> None:
    s = AgentStats()
    current: dict[str, dict[str, Any]] = {}
    for rv, (i, status) in enumerate(seq, start=1):
        name = f"t{i}"
        old = current.get(name)
        if status is None:
            if old is not None:
                s.task_changed(old, None)
                del current[name]
            continue
        new = task(name, rv, **{k: v for k, v in status.items() if v is not None})
        s.task_changed(old, new)
        current[name] = new
    full = taskflow.agent_statistics([t["status"] for t in current.values()])
    for a in AGENTS:
        got, want = s.figures(NS, a), full.get(a, taskflow.AgentStatistics())
        assert (got.active_tasks, got.tasks_completed) == (want.active_tasks, want.tasks_completed)
        # lastActive never moves back (the written value does not either), so it may be ahead of a
        # recount that no longer sees a deleted or reassigned task.
        assert want.last_active is None or (got.last_active or "") >= want.last_active


def test_a_stale_version_never_counts_twice() -> None:
    s = AgentStats()
    newer = task("t", 5, phase="InProgress", assignee="dev")
    s.task_changed(None, newer)
    s.task_changed(None, task("t", 4, phase="Done", assignee="dev", completedBy="dev"))  # late, older
    s.task_changed(task("t", 4), newer)  # the watch event of the same write again
    assert (s.figures(NS, "dev").active_tasks, s.figures(NS, "dev").tasks_completed) == (1, 0)


def test_a_task_deleted_after_its_agent_was_forgotten_counts_nothing() -> None:
    """Namespace teardown: the Agent goes first (its figures were 0, 0), then its cancelled task."""
    s = AgentStats()
    cancelled = task("c", 3, phase="Cancelled", assignee="dev", lastTransitionTime="2026-11-22T06:40:54Z")
    s.task_changed(None, cancelled)
    s.forget(NS, "dev")
    s.task_changed(cancelled, None)  # raised KeyError before
    assert (s.figures(NS, "dev").active_tasks, s.figures(NS, "dev").tasks_completed) == (0, 0)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(kube, "patch_status", lambda plural, ns, name, body, **kw: out.append((name, body)))
    for a in AGENTS:
        store.upsert("agents", agent(a))
    yield out
    for a in AGENTS:
        store.delete("agents", NS, a)


def test_flush_writes_only_changed_agents_and_reads_no_tasks(
        writes: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    s = AgentStats()
    s.task_changed(None, task("a", 1, phase="InProgress", assignee="dev", lastTransitionTime="2026-01-01T00:00:01Z"))
    real_list = store.list

    def no_task_scans(kind: str, *args: Any, **kw: Any) -> list[dict[str, Any]]:
        assert kind != "agenttasks", "the flush must not pass over all tasks"
        return real_list(kind, *args, **kw)

    monkeypatch.setattr(store, "list", no_task_scans)
    assert s.flush_once() == 1
    assert writes == [("dev", {"activeTasks": 1, "tasksCompleted": 0, "lastActive": "2026-01-01T00:00:01Z"})]
    assert s.flush_once() == 0  # nothing changed since
    # A change that does not alter any figure (labels, spec) marks no agent.
    old = task("a", 1, phase="InProgress", assignee="dev", lastTransitionTime="2026-01-01T00:00:01Z")
    same = task("a", 2, phase="InProgress", assignee="dev", lastTransitionTime="2026-01-01T00:00:01Z")
    s.task_changed(old, same)
    assert s.flush_once() == 0 and len(writes) == 1
    # A handoff dev -> qa: both agents' figures change, ops' do not.
    moved = task("a", 3, phase="Done", assignee="qa", completedBy="qa", lastTransitionTime="2026-01-01T00:00:05Z")
    s.task_changed(same, moved)
    s.flush_once()
    assert sorted(n for n, _ in writes[1:]) == ["dev", "qa"]


def test_flush_skips_figures_the_status_already_has(writes: list[tuple[str, dict[str, Any]]]) -> None:
    store.upsert("agents", agent("ops", 2, activeTasks=1, tasksCompleted=0, lastActive="2026-01-01T00:00:09Z"))
    s = AgentStats()
    s.task_changed(None, task("b", 1, phase="Assigned", assignee="ops", lastTransitionTime="2026-01-01T00:00:03Z"))
    assert s.flush_once() == 0 and writes == []  # lastActive kept (it only moves forward); nothing to write


def test_rebuild_counts_from_the_cache_once() -> None:
    s = AgentStats()
    s.task_changed(None, task("x", 1, phase="InProgress", assignee="dev"))
    s.rebuild([task("y", 2, phase="Review", assignee="qa"), task("z", 3, phase="Done", completedBy="qa")])
    assert s.figures(NS, "dev").active_tasks == 0
    assert (s.figures(NS, "qa").active_tasks, s.figures(NS, "qa").tasks_completed) == (1, 1)
