"""Quota operations are idempotent per holder: a retried reserve/commit/release charges once.

The driver below plays callers as the task operator is: each holder goes reserve -> commit (or
release), and its caller may lose its own record of any step (killed before the task status write,
a 409, a second operator) and start over from the beginning, any number of times, interleaved with
other holders, window resets and the operator's housekeeping. Only after the caller recorded the
outcome ("acknowledged") does it stop retrying, and only then may the operator forget the holder.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentops_operator import quotaledger as ql

from .test_quotaledger import CREATED, at, quota, run


def task_holder(name: str, round_: int, uid: str = "u1", move: str = "Done->Deployed") -> str:
    return f"AgentTask/{name}/{uid}/{move}/{round_}"


# ---- examples ------------------------------------------------------------------------------------


def test_a_retried_reserve_and_commit_after_a_lost_record_charge_once() -> None:
    obj = quota(limit=5)
    h = task_holder("a", 3)
    assert run(obj, ql.Reserve(h, 2), at(1)).granted
    run(obj, ql.Commit(h), at(1))
    # The task's status write was lost: it starts the move over with the same holder.
    again = run(obj, ql.Reserve(h, 2), at(2))
    assert again.granted and again.patch == {} and "already committed 2" in again.message
    assert run(obj, ql.Commit(h), at(2)).patch == {}
    assert run(obj, ql.Release(h), at(2)).patch == {}  # a late release cannot undo a commit either
    s = obj["status"]
    assert (s["used"], s["reserved"], s["reservations"]) == (2, 0, [])
    assert [c["holder"] for c in s["committed"]] == [h]


def test_a_retry_after_a_window_reset_charges_neither_window_twice() -> None:
    obj = quota(limit=5, window="1h")
    h = task_holder("a", 0)
    run(obj, ql.Reserve(h, 4), at(50))
    run(obj, ql.Commit(h), at(55))
    assert obj["status"]["used"] == 4
    assert run(obj, ql.Settle(), at(61)).rolled is not None  # the window ends; memory survives it
    assert obj["status"]["used"] == 0 and obj["status"]["committed"][0]["holder"] == h
    assert run(obj, ql.Reserve(h, 4), at(62)).granted
    run(obj, ql.Commit(h), at(62))
    assert obj["status"]["used"] == 0


def test_forgettable_only_what_no_retry_can_reach() -> None:
    obj = quota(limit=100)
    moved_on, waiting, deleted, recreated = (task_holder("a", 1), task_holder("b", 4), task_holder("c", 0),
                                             task_holder("d", 0, uid="old"))
    client = "script-42"
    for h in (moved_on, waiting, deleted, recreated, client):
        run(obj, ql.Reserve(h, 1), at(1))
        run(obj, ql.Commit(h), at(1))
    tasks = {"a": ql.TaskView("u1", 2), "b": ql.TaskView("u1", 4), "d": ql.TaskView("new", 0)}
    # Within the grace a lagging view of a task could still retry: nothing is forgotten yet.
    assert ql.forgettable(obj["status"], tasks, at(1) + ql.COMMIT_GRACE / 2) == ()
    assert ql.next_forget_in(obj["status"], at(1)) == ql.COMMIT_GRACE.total_seconds()
    assert set(ql.forgettable(obj["status"], tasks, at(2))) == {moved_on, deleted, recreated}
    later = at(1) + ql.COMMIT_MEMORY
    assert set(ql.forgettable(obj["status"], tasks, later)) == {moved_on, deleted, recreated, client}
    run(obj, ql.Forget(ql.forgettable(obj["status"], tasks, at(2))), at(2))
    assert [c["holder"] for c in obj["status"]["committed"]] == [waiting, client]
    assert ql.next_forget_in(obj["status"], at(2)) == 0.0  # `waiting` is old enough, but its task has not moved
    assert ql.next_forget_in({}, at(2)) is None
    assert obj["status"]["used"] == 5  # forgetting never changes usage


def test_stale_reservations_are_those_of_gone_or_moved_on_tasks() -> None:
    obj = quota(limit=100)
    for h in (task_holder("a", 1), task_holder("b", 4), task_holder("gone", 0), "client-hold"):
        run(obj, ql.Reserve(h, 1), at(1))
    tasks = {"a": ql.TaskView("u1", 2), "b": ql.TaskView("u1", 4)}
    assert [r.holder for r in ql.stale_reservations(obj["status"], tasks)] == [
        task_holder("a", 1), task_holder("gone", 0)]


def test_parse_task_holder() -> None:
    assert ql.parse_task_holder("AgentTask/x/u-1/Backlog->Assigned/7") == ("x", "u-1", "Backlog->Assigned", 7)
    for bad in ("x", "AgentTask/x/u/m", "AgentTask/x/u/m/r", "agenttask/x/u/m/1"):
        assert ql.parse_task_holder(bad) is None


def test_reservations_plus_memory_are_bounded_without_evicting() -> None:
    obj = quota(limit=10**6)
    for i in range(ql.MAX_HOLDS - 1):
        run(obj, ql.Reserve(f"h{i}", 1), at(1))
        run(obj, ql.Commit(f"h{i}"), at(1))
    assert run(obj, ql.Reserve("last", 1), at(1)).granted
    full = run(obj, ql.Reserve("over", 1), at(1))
    assert not full.granted and full.message.startswith("TooManyReservations")
    assert ql.held_and_remembered(obj["status"]) == ql.MAX_HOLDS
    run(obj, ql.Commit("last"), at(1))  # a commit moves a hold into memory: the sum stays
    assert ql.held_and_remembered(obj["status"]) == ql.MAX_HOLDS
    assert run(obj, ql.Reserve("h0", 1), at(1)).granted  # a retry of a remembered holder still answers
    run(obj, ql.Forget(("h0", "h1")), at(1))
    assert run(obj, ql.Reserve("over", 1), at(1)).granted
    assert obj["status"]["used"] == ql.MAX_HOLDS


def test_a_client_may_not_start_windows() -> None:
    fresh = quota(limit=5)
    res = ql.apply(ql.view(fresh), {}, ql.Consume(1), at(1), may_roll=False)
    assert not res.granted and res.patch == {} and res.message.startswith("WindowPending")
    obj = quota(limit=5, window="1h")
    run(obj, ql.Consume(5), at(1))
    due = ql.apply(ql.view(obj), obj["status"], ql.Consume(1), at(61), may_roll=False)
    assert not due.granted and due.patch == {} and "started anew by the operator" in due.message
    ok = ql.apply(ql.view(obj), obj["status"], ql.Check(1), at(30), may_roll=False)
    assert not ok.granted  # Check still answers (limit reached) and never writes
    run(obj, ql.Settle(), at(61))
    after = ql.apply(ql.view(obj), obj["status"], ql.Consume(1), at(62), may_roll=False)
    assert after.granted and set(after.patch) <= {"used", "remaining"}


# ---- property: any interleaving of retried operations --------------------------------------------

HOLDERS = 6
steps = st.lists(
    st.tuples(
        st.sampled_from(["step", "retry", "dup", "ack", "consume", "settle", "forget", "release"]),
        st.integers(0, HOLDERS - 1),  # which holder / caller
        st.integers(1, 4),  # amount (reserve / consume)
        st.integers(0, 25),  # minutes to advance
    ),
    max_size=80,
)


@settings(deadline=None, max_examples=300)
@given(steps=steps, limit=st.integers(0, 12), enforcement=st.sampled_from(["Hard", "Soft"]))
def test_retries_and_duplicates_charge_each_commit_once(steps: list[tuple[str, int, int, int]], limit: int,
                                                        enforcement: str) -> None:
    """Whatever the interleaving of duplicated or restarted callers and resets, `used` is the sum of the
    distinct commits (and consumes) of the current window, and a Hard quota is never over its limit."""
    obj = quota(limit=limit, window="1h", enforcement=enforcement)
    now = at(0)
    window = 0
    # Per caller: where it is in reserve -> commit, what it asked for, whether it acknowledged.
    phase: dict[int, str] = dict.fromkeys(range(HOLDERS), "new")
    amount_of: dict[int, int] = {}
    acked: set[int] = set()
    charged: dict[int, tuple[int, int]] = {}  # holder -> (window, amount): the one charge it may cause
    consumed: dict[int, int] = {}  # window -> units consumed without a holder

    def holder(i: int) -> str:
        return task_holder(f"t{i}", 0)

    def op_for(i: int, amount: int) -> ql.Op:
        if phase[i] in ("new", "refused"):
            amount_of.setdefault(i, amount)
            return ql.Reserve(holder(i), amount_of[i])
        return ql.Commit(holder(i))

    for kind, i, amount, advance in steps:
        now += timedelta(minutes=advance)
        window = int((now - CREATED) / timedelta(hours=1))
        if kind in ("step", "dup", "retry") and i not in acked:
            if kind == "retry":
                phase[i] = "new"  # the caller lost its record and starts the move over
            op = op_for(i, amount)
            res = run(obj, op, now)
            if kind == "dup":
                res = run(obj, op, now)  # the same request delivered twice (two operators)
            if isinstance(op, ql.Reserve):
                phase[i] = "reserved" if res.granted else "refused"
            else:
                phase[i] = "committed"
                charged.setdefault(i, (window, amount_of[i]))
        elif kind == "release" and i not in acked and phase[i] == "reserved":
            run(obj, ql.Release(holder(i)), now)  # the move was given up; a later retry may take it again
            phase[i] = "new"
        elif kind == "ack" and phase[i] == "committed":
            acked.add(i)  # the caller recorded the outcome: it never retries from here on
        elif kind == "consume":
            if run(obj, ql.Consume(amount), now).granted:
                consumed[window] = consumed.get(window, 0) + amount
        elif kind == "settle":
            run(obj, ql.Settle(), now)
        elif kind == "forget":
            tasks = {f"t{j}": ql.TaskView("u1", 1 if j in acked else 0) for j in range(HOLDERS)}
            gone = ql.forgettable(obj["status"], tasks, now)
            assert all(int(h.split("/")[1][1:]) in acked for h in gone)
            run(obj, ql.Forget(gone), now)

        s: dict[str, Any] = obj["status"]
        if ql.parse_time(s.get("windowStart")) is None:
            continue
        current = int((ql.parse_time(s["windowStart"]) - CREATED) / timedelta(hours=1))
        expected = consumed.get(current, 0) + sum(a for w, a in charged.values() if w == current)
        assert s["used"] == expected, (s, charged, consumed)
        assert s["reserved"] == sum(r["amount"] for r in s["reservations"])
        # Nothing is held for a holder already charged (a retried reserve holds nothing): no leak.
        assert {r["holder"] for r in s["reservations"]} == {
            holder(j) for j in range(HOLDERS) if phase[j] == "reserved" and j not in charged}
        assert ql.held_and_remembered(s) <= ql.MAX_HOLDS
        if enforcement == "Hard":
            assert s["used"] + s["reserved"] <= limit


def test_a_holder_not_of_a_task_belongs_to_the_identity_that_reserved_it() -> None:
    obj = quota(limit=5)
    assert run(obj, ql.Reserve("a/run-1", 2, by="agent-a"), at(1)).granted
    assert obj["status"]["reservations"][0]["by"] == "agent-a"
    again = run(obj, ql.Reserve("a/run-1", 2, by="agent-a"), at(2))  # its maker's retry: the same hold
    assert again.granted and again.patch == {}
    squat = run(obj, ql.Reserve("a/run-1", 2, by="agent-b"), at(2))  # another identity: no grant
    assert not squat.granted and squat.message.startswith("HolderTaken") and squat.patch == {}
    assert obj["status"]["reserved"] == 2
