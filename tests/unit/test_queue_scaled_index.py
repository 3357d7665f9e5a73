"""The queue-scaled Agents of a namespace are an index kept by the agents' cache listener, not a scan of
every Agent per task move; it answers the same as the scan."""

from __future__ import annotations

from typing import Any

import pytest

from agentops_operator.cache import notify, store
from agentops_operator.handlers import agent as agent_handler

NS = "qs-ns"


def agent(name: str, rv: int, queue: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"role": "dev"}
    if queue:
        spec["autoscaling"] = {"queue": {"tasksPerReplica": 1}}
    return {"metadata": {"namespace": NS, "name": name, "resourceVersion": str(rv), "uid": name}, "spec": spec}


def change(new: dict[str, Any] | None, name: str = "") -> None:
    if new is None:
        old = store.delete("agents", NS, name)
        notify("agents", old, None, False)
        return
    changed, old = store.upsert("agents", new)
    if changed:
        notify("agents", old, new, False)


def scan() -> list[str]:
    return sorted(a["metadata"]["name"] for a in store.list("agents", NS) if agent_handler._scales_by_queue(a))


def test_index_follows_agent_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_handler, "_queue_scaled", None)
    try:
        store.upsert("agents", agent("a", 1, True))  # primed before first use (no listener call)
        store.upsert("agents", agent("b", 1, False))
        assert agent_handler.queue_scaled_agents(NS) == ["a"] == scan()
        change(agent("b", 2, True))
        change(agent("c", 1, False))
        assert agent_handler.queue_scaled_agents(NS) == ["a", "b"] == scan()
        change(agent("a", 2, False))
        change(None, "b")
        assert agent_handler.queue_scaled_agents(NS) == [] == scan()
        assert agent_handler.queue_scaled_agents("elsewhere") == []
    finally:
        for n in ("a", "b", "c"):
            store.delete("agents", NS, n)
