"""kube.py: Event bodies, Events yielding to reconciles (bounded), memory release after priming."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from agentops_operator import kube

TASK = {"apiVersion": "agentops.dev/v1alpha1", "kind": "AgentTask",
        "metadata": {"name": "t1", "namespace": "ns", "uid": "u-1", "resourceVersion": "42"}}


def test_event_body_names_the_object_and_is_deterministic_when_named() -> None:
    now = datetime(2026, 11, 22, 7, 0, 1, 123456, tzinfo=UTC)
    body = kube.event_body(TASK, "Normal", "Transitioned", "Backlog -> Assigned", name="t1.move-1", now=now)
    assert body["metadata"] == {"namespace": "ns", "name": "t1.move-1"}
    assert body["involvedObject"] == {"apiVersion": "agentops.dev/v1alpha1", "kind": "AgentTask", "name": "t1",
                                      "namespace": "ns", "uid": "u-1", "resourceVersion": "42"}
    assert (body["reason"], body["type"], body["count"]) == ("Transitioned", "Normal", 1)
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-11-22T07:00:01.123456Z"
    assert body["source"] == {"component": kube.COMPONENT} and body["reportingComponent"] == kube.COMPONENT
    assert body == kube.event_body(TASK, "Normal", "Transitioned", "Backlog -> Assigned", name="t1.move-1", now=now)


def test_event_body_without_a_name_is_generated_and_the_message_bounded() -> None:
    body = kube.event_body(TASK, "Warning", "GateFailed", "x" * 5000)
    assert body["metadata"] == {"namespace": "ns", "generateName": "t1."}
    assert len(body["message"]) == 1024


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    got: list[tuple[str, float]] = []
    lock = threading.Lock()

    def post(body: dict[str, Any]) -> None:
        with lock:
            got.append((body["reason"], time.monotonic()))

    monkeypatch.setattr(kube, "_post_event", post)
    yield got
    kube.events_yield_to(lambda: False)


def wait_for(got: list[Any], n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_events_wait_while_reconciles_are_queued(posted: list[tuple[str, float]]) -> None:
    busy = threading.Event()
    busy.set()
    kube.events_yield_to(busy.is_set)
    kube.emit_event(TASK, "Normal", "Waited", "m")
    time.sleep(0.3)
    assert posted == []  # work is waiting: the Event waits too
    released = time.monotonic()
    busy.clear()
    wait_for(posted, 1)
    assert [r for r, _ in posted] == ["Waited"] and posted[0][1] >= released


def test_an_event_waits_at_most_the_bound(posted: list[tuple[str, float]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "EVENT_MAX_DELAY", 0.4)
    kube.events_yield_to(lambda: True)  # always busy
    started = time.monotonic()
    kube.emit_event(TASK, "Normal", "Bounded", "m")
    wait_for(posted, 1)
    assert [r for r, _ in posted] == ["Bounded"]
    assert 0.35 <= posted[0][1] - started < 2.0


def test_flush_sends_what_waits(posted: list[tuple[str, float]]) -> None:
    kube.events_yield_to(lambda: True)
    for i in range(3):
        kube.emit_event(TASK, "Normal", f"E{i}", "m")
    kube.flush_events(timeout=3.0)
    assert sorted(r for r, _ in posted) == ["E0", "E1", "E2"]


def test_release_memory_freezes_what_survives_out_of_the_collectors_view() -> None:
    import gc

    try:
        kube.release_memory()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_release_memory_reclaims_cycles_frozen_the_time_before() -> None:
    import gc
    import weakref

    class Node:
        pass

    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a reference cycle, alive while frozen
        alive = weakref.ref(a)
        kube.release_memory()
        del a, b  # now garbage, but frozen: the automatic collector does not see it
        gc.collect()
        assert alive() is not None
        kube.release_memory()  # the next period unfreezes and collects first
        assert alive() is None
    finally:
        gc.unfreeze()
