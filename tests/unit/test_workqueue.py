"""The work queue: de-duplication, in-flight keys, priorities, timers, backoff."""

from __future__ import annotations

import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from agentops_operator.workqueue import HIGH, LOW, WorkQueue


def drain(q: WorkQueue) -> list[object]:
    out = []
    while (k := q.get(timeout=0)) is not None:
        out.append(k)
        q.done(k)
    return out


def test_waiting_key_is_deduplicated() -> None:
    q = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert drain(q) == ["a", "b"]
    assert q.deduplicated == 4


def test_key_changed_in_flight_runs_once_more_afterwards_never_concurrently() -> None:
    q = WorkQueue()
    q.add("a")
    k = q.get(timeout=0)
    assert k == "a"
    q.add("a")
    q.add("a")
    assert q.get(timeout=0) is None  # not handed out while in flight
    q.done("a")
    assert q.get(timeout=0) == "a"  # exactly once more
    q.done("a")
    assert q.get(timeout=0) is None


def test_high_priority_goes_first_and_lifts_a_waiting_low_key() -> None:
    q = WorkQueue()
    q.add("resync-1", LOW)
    q.add("resync-2", LOW)
    q.add("event", HIGH)
    q.add("resync-2", HIGH)
    assert drain(q) == ["event", "resync-2", "resync-1"]


def test_timers_fire_in_order_and_the_earliest_wins() -> None:
    q = WorkQueue()
    q.add("late", delay=0.2)
    q.add("soon", delay=0.05)
    q.add("late", delay=0.1)  # earlier than the pending timer: replaces it
    q.add("soon", delay=5)  # later than the pending timer: ignored
    t0 = time.monotonic()
    assert q.get(timeout=1) == "soon"
    q.done("soon")
    assert q.get(timeout=1) == "late"
    q.done("late")
    assert 0.09 <= time.monotonic() - t0 < 0.5
    assert q.get(timeout=0.3) is None  # the superseded timers do not fire again


def test_backoff_grows_exponentially_is_capped_and_resets() -> None:
    q = WorkQueue(backoff_base=0.1, backoff_cap=1.0)
    delays = [q.backoff("k") for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.1 <= delays[1] <= 0.2
    assert all(d <= 1.0 for d in delays) and delays[-1] >= 0.5
    q.forget_failures("k")
    assert q.backoff("k") <= 0.1


def test_blocking_get_wakes_on_add_from_another_thread() -> None:
    q = WorkQueue()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=2)))
    t.start()
    time.sleep(0.05)
    q.add("x")
    t.join(2)
    assert got == ["x"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "addlow", "get", "done"]), st.integers(0, 4)), max_size=60))
def test_property_no_key_twice_in_flight_and_nothing_lost(ops: list[tuple[str, int]]) -> None:
    q = WorkQueue()
    inflight: set[int] = set()
    wanted: set[int] = set()  # keys added since they were last handed out
    for op, k in ops:
        if op in ("add", "addlow"):
            q.add(k, HIGH if op == "add" else LOW)
            wanted.add(k)
        elif op == "get":
            got = q.get(timeout=0)
            if got is not None:
                assert got not in inflight
                inflight.add(got)  # type: ignore[arg-type]
                wanted.discard(got)  # type: ignore[arg-type]
        elif op == "done" and k in inflight:
            inflight.discard(k)
            q.done(k)
    for k in list(inflight):
        q.done(k)
    # Every key added and not yet handed out is handed out exactly once now.
    assert sorted(drain(q)) == sorted(wanted)  # type: ignore[type-var]
