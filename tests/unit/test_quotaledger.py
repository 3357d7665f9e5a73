"""The Quota ledger (pure) and quota_client's optimistic-concurrency loop against an in-memory store."""

from __future__ import annotations

import copy
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes.client.rest import ApiException

from agentops_operator import quota_client
from agentops_operator import quotaledger as ql
from agentops_operator.conditions import get_condition

CREATED = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def quota(limit: int = 10, window: str = "1h", enforcement: str = "Hard", tz: str = "UTC", warn: int = 80,
          status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "agentops.dev/v1alpha1",
        "kind": "Quota",
        "metadata": {"name": "q", "namespace": "ns", "creationTimestamp": "2024-03-01T12:00:00Z",
                     "generation": 1, "resourceVersion": "1"},
        "spec": {"resource": "publish", "limit": limit, "window": window, "timeZone": tz,
                 "enforcement": enforcement, "warningPercent": warn},
        "status": status or {},
    }


def at(minutes: float) -> datetime:
    return CREATED + timedelta(minutes=minutes)


def run(obj: dict[str, Any], op: ql.Op, now: datetime) -> ql.Result:
    """Apply and 'write' the result into obj, as the API server would."""
    res = ql.apply(ql.view(obj), obj["status"], op, now)
    for k, v in res.patch.items():
        if v is None:
            obj["status"].pop(k, None)
        else:
            obj["status"][k] = copy.deepcopy(v)
    return res


# ---- spec validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("window", "0s", "spec.window"),
        ("window", "fortnightly", "spec.window"),
        ("timeZone", "Mars/Olympus", "spec.timeZone"),
        ("limit", -1, "spec.limit"),
        ("limit", True, "spec.limit"),
        ("enforcement", "Maybe", "spec.enforcement"),
        ("warningPercent", 0, "spec.warningPercent"),
    ],
)
def test_view_names_the_bad_field(field: str, value: Any, expect: str) -> None:
    obj = quota()
    obj["spec"][field] = value
    with pytest.raises(ValueError, match=expect):
        ql.view(obj)


def test_view_defaults() -> None:
    obj = quota()
    for k in ("window", "timeZone", "enforcement", "warningPercent"):
        del obj["spec"][k]
    v = ql.view(obj)
    assert (v.window.text, v.time_zone, v.enforcement, v.warning_percent) == ("daily", "UTC", "Hard", 80)
    assert v.anchor == CREATED


# ---- windows in the ledger -----------------------------------------------------------------------


def test_first_write_adopts_the_current_window() -> None:
    obj = quota(window="1h")
    res = run(obj, ql.Settle(), at(90))
    assert obj["status"]["windowStart"] == "2024-03-01T13:00:00Z"  # anchored at creation, 12:00
    assert obj["status"]["resetAt"] == "2024-03-01T14:00:00Z"
    assert obj["status"]["used"] == 0 and obj["status"]["remaining"] == 10
    assert obj["status"]["windowSpec"] == "1h UTC"
    assert res.rolled is None
    assert ql.apply(ql.view(obj), obj["status"], ql.Settle(), at(100)).patch == {}  # nothing due: no write


def test_rollover_resets_used_keeps_reservations_and_counts_missed_windows() -> None:
    obj = quota(window="1h")
    run(obj, ql.Consume(4), at(1))
    run(obj, ql.Reserve("task-a", 3, "Done->Deployed"), at(2))
    res = run(obj, ql.Settle(), at(60 * 3 + 5))  # three boundaries later (13:00, 14:00, 15:00)
    st_ = obj["status"]
    assert st_["used"] == 0
    assert st_["reserved"] == 3 and [r["holder"] for r in st_["reservations"]] == ["task-a"]
    assert st_["remaining"] == 7
    assert st_["windowStart"] == "2024-03-01T15:00:00Z" and st_["resetAt"] == "2024-03-01T16:00:00Z"
    assert res.rolled is not None and res.rolled.wire() == st_["lastReset"]
    assert st_["lastReset"] == {
        "at": "2024-03-01T15:05:00Z",
        "windowStart": "2024-03-01T15:00:00Z",
        "previousWindowStart": "2024-03-01T12:00:00Z",
        "previousResetAt": "2024-03-01T13:00:00Z",
        "usedBefore": 4,
        "windowsElapsed": 3,
        "by": "operator",
        "eventRecorded": True,
    }
    assert "caught up 2 missed reset(s)" in ql.reset_message(res.rolled)
    # The reservation commits into the new window.
    run(obj, ql.Commit("task-a"), at(60 * 3 + 6))
    assert (obj["status"]["used"], obj["status"]["reserved"]) == (3, 0)


def test_a_call_after_reset_at_is_judged_against_the_new_window() -> None:
    obj = quota(limit=2, window="1h")
    assert run(obj, ql.Consume(2), at(1)).granted
    assert not run(obj, ql.Consume(1), at(59)).granted
    res = run(obj, ql.Consume(2, by="agent-x"), at(61))  # the operator has not reset yet
    assert res.granted and obj["status"]["used"] == 2
    last = obj["status"]["lastReset"]
    assert last["by"] == "client:agent-x" and last["eventRecorded"] is False  # for the operator to announce
    assert ql.reset_message(ql.QuotaReset.model_validate(last)).endswith("rolled over by client:agent-x")
    # Announcing flips the flag exactly once.
    assert run(obj, ql.AnnounceReset(last["windowStart"]), at(62)).granted
    assert obj["status"]["lastReset"]["eventRecorded"] is True
    assert not run(obj, ql.AnnounceReset(last["windowStart"]), at(63)).granted


def test_an_idle_window_ends_without_an_event() -> None:
    obj = quota(window="1h")
    run(obj, ql.Settle(), at(1))
    res = run(obj, ql.Consume(1), at(61))
    assert res.rolled is not None and res.rolled.event_recorded is True
    assert not ql.worth_announcing(res.rolled)


def test_spec_change_reshapes_the_window_and_keeps_used() -> None:
    obj = quota(window="daily")
    run(obj, ql.Consume(5), at(1))
    obj["spec"]["window"] = "hourly"
    res = run(obj, ql.Settle(), at(30))
    assert res.rolled is None
    assert obj["status"]["used"] == 5
    assert (obj["status"]["windowStart"], obj["status"]["resetAt"]) == ("2024-03-01T12:00:00Z", "2024-03-01T13:00:00Z")
    assert obj["status"]["windowSpec"] == "hourly UTC"


def test_a_lagging_clock_never_moves_the_window_back() -> None:
    obj = quota(window="1h")
    run(obj, ql.Consume(1), at(61))  # written by a caller already in the 13:00 window
    res = ql.apply(ql.view(obj), obj["status"], ql.Consume(1), at(59))  # a caller whose clock lags
    assert res.status.wire()["windowStart"] == "2024-03-01T13:00:00Z"
    assert res.status.used == 2


def test_lowering_the_limit_updates_remaining() -> None:
    obj = quota(limit=10)
    run(obj, ql.Consume(6), at(1))
    obj["spec"]["limit"] = 4
    res = run(obj, ql.Settle(), at(2))
    assert res.patch == {"remaining": 0}
    assert not run(obj, ql.Consume(1), at(3)).granted


# ---- operations ----------------------------------------------------------------------------------


def test_hard_refusal_says_why_and_when() -> None:
    obj = quota(limit=3)
    run(obj, ql.Consume(2), at(1))
    res = run(obj, ql.Consume(2), at(2))
    assert not res.granted and res.over_limit
    assert res.message.startswith("QuotaExceeded: 2 requested, 1 of 3 available")
    assert "resets at 2024-03-01T13:00:00Z" in res.message
    assert res.patch == {}  # a refusal writes nothing
    assert res.reset_at == datetime(2024, 3, 1, 13, tzinfo=UTC)


def test_soft_grants_over_the_limit_and_flags_it() -> None:
    obj = quota(limit=3, enforcement="Soft")
    res = run(obj, ql.Consume(5), at(1))
    assert res.granted and res.over_limit and "over the soft limit" in res.message
    assert obj["status"]["used"] == 5 and obj["status"]["remaining"] == 0


def test_check_never_writes() -> None:
    obj = quota(limit=3)
    run(obj, ql.Consume(3), at(1))
    res = ql.apply(ql.view(obj), obj["status"], ql.Check(1), at(61))  # would even roll over
    assert res.granted and res.patch == {}
    assert "would be granted 1" in res.message


def test_reserve_is_idempotent_per_holder_and_counts_against_the_limit() -> None:
    obj = quota(limit=5)
    assert run(obj, ql.Reserve("a", 3), at(1)).granted
    again = run(obj, ql.Reserve("a", 3), at(2))
    assert again.granted and again.patch == {} and "already reserved 3" in again.message
    assert not run(obj, ql.Reserve("b", 3), at(3)).granted  # 3 held + 3 > 5
    assert not run(obj, ql.Consume(3), at(3)).granted
    assert run(obj, ql.Reserve("b", 2), at(4)).granted
    assert (obj["status"]["reserved"], obj["status"]["remaining"]) == (5, 0)


def test_commit_and_release_are_idempotent() -> None:
    obj = quota(limit=5)
    run(obj, ql.Reserve("a", 2), at(1))
    run(obj, ql.Reserve("b", 2), at(1))
    run(obj, ql.Commit("a"), at(2))
    assert run(obj, ql.Commit("a"), at(3)).patch == {}
    run(obj, ql.Release("b"), at(4))
    assert run(obj, ql.Release("b"), at(5)).patch == {}
    assert run(obj, ql.Release("never"), at(5)).patch == {}
    assert (obj["status"]["used"], obj["status"]["reserved"], obj["status"]["reservations"]) == (2, 0, [])


def test_reservations_are_bounded() -> None:
    obj = quota(limit=10**6)
    for i in range(ql.MAX_RESERVATIONS):
        assert run(obj, ql.Reserve(f"h{i}", 1), at(1)).granted
    res = run(obj, ql.Reserve("one-too-many", 1), at(1))
    assert not res.granted and res.message.startswith("TooManyReservations")


ops = st.lists(
    st.tuples(
        st.sampled_from(["consume", "reserve", "commit", "release", "settle"]),
        st.integers(1, 4),  # amount
        st.integers(0, 5),  # holder
        st.integers(0, 40),  # minutes to advance
    ),
    max_size=60,
)


@settings(deadline=None)
@given(ops=ops, limit=st.integers(0, 12), enforcement=st.sampled_from(["Hard", "Soft"]))
def test_ledger_matches_a_reference_model(ops: list[tuple[str, int, int, int]], limit: int, enforcement: str) -> None:
    """Random operations across window resets against a straightforward model of the ledger."""
    obj = quota(limit=limit, window="1h", enforcement=enforcement)
    used, held, window = 0, {}, 0
    committed: set[str] = set()  # a holder is charged once, ever (retries are no-ops)
    now = at(0)
    for kind, amount, h, advance in ops:
        now += timedelta(minutes=advance)
        if int((now - CREATED) / timedelta(hours=1)) != window:
            window, used = int((now - CREATED) / timedelta(hours=1)), 0
        holder = f"h{h}"
        fits = used + sum(held.values()) + amount <= limit
        if kind == "consume":
            res = run(obj, ql.Consume(amount), now)
            assert res.granted == (fits or enforcement == "Soft")
            used += amount if res.granted else 0
        elif kind == "reserve":
            res = run(obj, ql.Reserve(holder, amount), now)
            if holder in held or holder in committed:
                assert res.granted
            else:
                assert res.granted == (fits or enforcement == "Soft")
                if res.granted:
                    held[holder] = amount
        elif kind == "commit":
            run(obj, ql.Commit(holder), now)
            if holder in held:
                committed.add(holder)
            used += held.pop(holder, 0)
        elif kind == "release":
            run(obj, ql.Release(holder), now)
            held.pop(holder, None)
        else:
            run(obj, ql.Settle(), now)
        s = obj["status"]
        assert (s["used"], s["reserved"]) == (used, sum(held.values()))
        assert {r["holder"]: r["amount"] for r in s["reservations"]} == held
        assert {c["holder"] for c in s.get("committed", [])} == committed
        assert s["remaining"] == max(0, limit - used - sum(held.values()))
        if enforcement == "Hard":
            assert s["used"] + s["reserved"] <= limit


# ---- conditions ----------------------------------------------------------------------------------


def _conds(obj: dict[str, Any], now: datetime) -> list[tuple[str, str, str]]:
    conds, events = ql.conditions(ql.view(obj), obj["status"], 1, now)
    obj["status"]["conditions"] = conds
    return events


def test_hard_conditions_and_events_follow_usage() -> None:
    obj = quota(limit=10, warn=80)
    run(obj, ql.Consume(7), at(1))
    assert _conds(obj, at(1)) == []
    st_ = obj["status"]
    assert get_condition(st_["conditions"], "Ready")["status"] == "True"
    assert get_condition(st_["conditions"], "Warning")["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in st_["conditions"])
    run(obj, ql.Consume(1), at(2))
    events = _conds(obj, at(2))
    assert [e[1] for e in events] == ["QuotaWarning"]
    assert get_condition(st_["conditions"], "Warning")["reason"] == "AboveThreshold"
    before = copy.deepcopy(st_["conditions"])
    run(obj, ql.Consume(1), at(3))
    assert _conds(obj, at(3)) == []
    assert st_["conditions"] == before  # more usage, same conditions: nothing to write
    run(obj, ql.Consume(1), at(4))
    events = _conds(obj, at(4))
    assert [e[1] for e in events] == ["QuotaExhausted"]
    exhausted = get_condition(st_["conditions"], "Exhausted")
    assert (exhausted["status"], exhausted["reason"]) == ("True", "LimitReached")
    assert "refusing more until 2024-03-01T13:00:00Z" in exhausted["message"]
    run(obj, ql.Settle(), at(61))
    assert _conds(obj, at(61)) == []
    assert get_condition(st_["conditions"], "Exhausted")["status"] == "False"


def test_soft_over_limit_warns_once() -> None:
    obj = quota(limit=5, enforcement="Soft", warn=60)
    run(obj, ql.Consume(3), at(1))
    assert [e[1] for e in _conds(obj, at(1))] == ["QuotaWarning"]
    run(obj, ql.Consume(3), at(2))
    events = _conds(obj, at(2))
    assert [e[0:2] for e in events] == [("Warning", "QuotaSoftLimitExceeded")]
    assert "6 used + 0 reserved of 5 publish (120%)" in events[0][2]
    warning = get_condition(obj["status"]["conditions"], "Warning")
    assert (warning["status"], warning["reason"]) == ("True", "SoftLimitExceeded")
    run(obj, ql.Consume(3), at(3))
    assert _conds(obj, at(3)) == []


def test_invalid_spec_condition() -> None:
    conds = ql.invalid_conditions({}, "spec.timeZone: bad", 3, at(0))
    ready = get_condition(conds, "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "InvalidSpec", 3)


# ---- quota_client's retry loop against an in-memory API server ------------------------------------


class MemoryQuotas:
    """Just enough of CustomObjectsApi: GET and status merge patch with the resourceVersion precondition."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.lock = threading.Lock()
        self.rv = 1
        self.writes = 0

    def get_namespaced_custom_object(self, *_: Any) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.obj)

    def patch_namespaced_custom_object_status(self, *args: Any) -> dict[str, Any]:
        body = args[-1]
        with self.lock:
            if body["metadata"]["resourceVersion"] != self.obj["metadata"]["resourceVersion"]:
                raise ApiException(status=409, reason="Conflict")
            for k, v in body["status"].items():
                if v is None:
                    self.obj["status"].pop(k, None)
                else:
                    self.obj["status"][k] = copy.deepcopy(v)
            self.rv += 1
            self.writes += 1
            self.obj["metadata"]["resourceVersion"] = str(self.rv)
            return copy.deepcopy(self.obj)


def test_concurrent_consumers_never_over_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quota_client, "BACKOFF_BASE", 0.0)
    api = MemoryQuotas(quota(limit=120, window="24h"))
    real_get = api.get_namespaced_custom_object

    def slow_get(*args: Any) -> dict[str, Any]:
        obj = real_get(*args)
        threading.Event().wait(random.uniform(0, 0.0005))  # widen the read-write race
        return obj

    monkeypatch.setattr(api, "get_namespaced_custom_object", slow_get)
    grants: list[quota_client.Grant] = []
    guard = threading.Lock()

    def client() -> None:
        for _ in range(20):
            g = quota_client.consume(api, "ns", "q", 1)  # type: ignore[arg-type]
            with guard:
                grants.append(g)

    threads = [threading.Thread(target=client) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(g.granted for g in grants) == 120
    assert sum(not g.granted for g in grants) == 80
    assert api.obj["status"]["used"] == 120
    assert api.writes == 120  # one write per grant (the first also initialises the window); refusals write nothing
    assert sum(g.conflicts for g in grants) > 0  # the race was real


def test_contention_gives_up_without_granting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quota_client, "BACKOFF_BASE", 0.0)
    monkeypatch.setattr(quota_client, "MAX_CONFLICTS", 3)
    api = MemoryQuotas(quota(limit=10))

    def always_conflict(*_: Any) -> dict[str, Any]:
        raise ApiException(status=409, reason="Conflict")

    monkeypatch.setattr(api, "patch_namespaced_custom_object_status", always_conflict)
    with pytest.raises(quota_client.QuotaContention):
        quota_client.consume(api, "ns", "q", 1)  # type: ignore[arg-type]


def test_commit_and_release_of_a_deleted_quota_are_no_ops() -> None:
    class Gone:
        def get_namespaced_custom_object(self, *_: Any) -> dict[str, Any]:
            raise ApiException(status=404, reason="Not Found")

    quota_client.commit(Gone(), "ns", "q", "h")  # type: ignore[arg-type]
    quota_client.release(Gone(), "ns", "q", "h")  # type: ignore[arg-type]


def test_amount_must_be_positive() -> None:
    api = MemoryQuotas(quota())
    with pytest.raises(ValueError):
        quota_client.consume(api, "ns", "q", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        quota_client.reserve(api, "ns", "q", "", 1)  # type: ignore[arg-type]
