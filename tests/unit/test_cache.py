"""The watch-fed cache: newer versions win, our own writes are recognised, owner index."""

from __future__ import annotations

from agentops_operator import cache
from agentops_operator.cache import Store
from agentops_operator.taskflow import agent_statistics


def obj(name: str, rv: int, uid: str = "u1", owner: str | None = None, ns: str = "ns",
        labels: dict[str, str] | None = None) -> dict:
    meta: dict = {"name": name, "namespace": ns, "uid": uid, "resourceVersion": str(rv), "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "kind": "AgentTask", "name": "t"}]
    return {"metadata": meta}


def test_newer_versions_replace_older_and_echoes_are_not_changes() -> None:
    s = Store()
    assert s.upsert("jobs", obj("a", 5))[0]
    assert not s.upsert("jobs", obj("a", 5))[0]  # the watch echo of a write we already stored
    assert not s.upsert("jobs", obj("a", 3))[0]  # a late event
    assert s.peek("jobs", "ns", "a")["metadata"]["resourceVersion"] == "5"
    changed, old = s.upsert("jobs", obj("a", 9))
    assert changed and old["metadata"]["resourceVersion"] == "5"


def test_a_recreated_object_replaces_the_old_one_whatever_its_version() -> None:
    s = Store()
    s.upsert("jobs", obj("a", 50, uid="old"))
    assert s.upsert("jobs", obj("a", 7, uid="new"))[0]


def test_get_returns_a_copy() -> None:
    s = Store()
    s.upsert("agenttasks", obj("t", 1))
    got = s.get("agenttasks", "ns", "t")
    got["metadata"]["name"] = "changed"
    assert s.peek("agenttasks", "ns", "t")["metadata"]["name"] == "t"


def test_owner_index_follows_updates_and_deletes() -> None:
    s = Store()
    s.upsert("jobs", obj("j1", 1, owner="T"))
    s.upsert("jobs", obj("j2", 1, uid="u2", owner="T"))
    s.upsert("jobs", obj("j3", 1, uid="u3", owner="X"))
    assert [j["metadata"]["name"] for j in s.owned("jobs", "T")] == ["j1", "j2"]
    s.upsert("jobs", obj("j2", 2, uid="u2", owner="X"))
    assert [j["metadata"]["name"] for j in s.owned("jobs", "T")] == ["j1"]
    s.delete("jobs", "ns", "j1")
    assert s.owned("jobs", "T") == []
    assert {j["metadata"]["name"] for j in s.owned("jobs", "X")} == {"j2", "j3"}


def test_lists_by_namespace_and_label() -> None:
    s = Store()
    s.upsert("configmaps", obj("p", 1, labels={"agentops.dev/gate-policy": "true"}))
    s.upsert("configmaps", obj("q", 1, uid="2", labels={"other": "x"}))
    s.upsert("configmaps", obj("p", 1, uid="3", ns="other", labels={"agentops.dev/gate-policy": "true"}))
    assert [c["metadata"]["name"] for c in s.labelled("configmaps", "ns", "agentops.dev/gate-policy", "true")] == ["p"]
    assert len(s.list("configmaps")) == 3
    assert s.namespaces("configmaps") == ["ns", "other"]


def test_listeners_hear_changes() -> None:
    heard: list[tuple] = []
    cache.listen("testkind", lambda old, new, own: heard.append((old is None, new is None, own)))
    cache.notify("testkind", None, obj("a", 1), True)
    assert heard == [(True, False, True)]


def test_agent_statistics_count_from_tasks() -> None:
    stats = agent_statistics([
        {"assignee": "dev", "phase": "InProgress", "lastTransitionTime": "2026-01-01T00:00:02Z"},
        {"assignee": "dev", "phase": "Review", "lastTransitionTime": "2026-01-01T00:00:05Z"},
        {"assignee": "qa", "phase": "Done", "completedBy": "qa", "lastTransitionTime": "2026-01-01T00:00:09Z"},
        {"assignee": "dev", "phase": "Cancelled", "lastTransitionTime": "2026-01-01T00:00:07Z"},
        {"phase": "Backlog"},
    ])
    assert stats["dev"].active_tasks == 2 and stats["dev"].tasks_completed == 0
    assert stats["dev"].last_active == "2026-01-01T00:00:07Z"
    assert stats["qa"].active_tasks == 0 and stats["qa"].tasks_completed == 1
    assert set(stats) == {"dev", "qa"}


def test_completed_counts_finished_stages_not_hand_backs() -> None:
    dev_qa_deploy = {
        "phase": "Deployed", "assignee": "deploy", "completedBy": "qa", "lastTransitionTime": "2026-01-01T00:09:00Z",
        "handoffs": [
            {"stage": "dev", "toAgent": "dev1", "at": "2026-01-01T00:01:00Z"},
            {"stage": "dev", "fromAgent": "dev1", "toAgent": "dev2", "at": "2026-01-01T00:02:00Z"},  # hand-back
            {"stage": "qa", "fromAgent": "dev2", "toAgent": "qa", "at": "2026-01-01T00:03:00Z"},
            {"stage": "dev", "fromAgent": "qa", "toAgent": "dev2", "at": "2026-01-01T00:04:00Z"},  # rejected
            {"stage": "qa", "fromAgent": "dev2", "toAgent": "qa", "at": "2026-01-01T00:05:00Z"},
            {"stage": "deploy", "fromAgent": "qa", "toAgent": "deploy", "at": "2026-01-01T00:06:00Z"},
        ],
    }
    stats = agent_statistics([dev_qa_deploy])
    assert stats["dev2"].tasks_completed == 2  # handed on to qa twice
    assert stats["qa"].tasks_completed == 3  # handed back once, on once, and completed (Done)
    assert stats["deploy"].tasks_completed == 1  # Deployed
    assert "dev1" not in stats  # its hand-back finished nothing


def test_the_cache_keeps_no_managed_fields_or_last_applied_copy() -> None:
    s = Store()
    o = obj("t", 1)
    o["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    o["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "keep": "me"}
    s.upsert("agenttasks", o)
    kept = s.peek("agenttasks", "ns", "t")
    assert "managedFields" not in kept["metadata"] and kept["metadata"]["annotations"] == {"keep": "me"}
    assert "managedFields" in o["metadata"]  # the caller's object is untouched
