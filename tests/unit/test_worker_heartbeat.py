"""External Agents' readiness from the heartbeat Lease (agentops_operator.heartbeat.decide)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agentops_operator import heartbeat as hb
from agentops_operator.models.agent import AgentSpec

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_image_is_optional_and_heartbeat_has_a_default() -> None:
    spec = AgentSpec.model_validate({"role": "developer"})
    assert spec.image is None and spec.heartbeat.timeout_seconds == 40


def test_no_lease_yet_is_pending_not_ready_without_event() -> None:
    d = hb.decide(None, 40, NOW, None, None)
    assert (d.ready, d.phase, d.reason, d.event, d.requeue_after) == (False, "Pending", hb.AWAITING, None, None)


def test_fresh_lease_is_ready_and_wakes_at_expiry() -> None:
    d = hb.decide(NOW - timedelta(seconds=10), 40, NOW, None, None)
    assert d.ready and d.phase == "Healthy" and d.reason == hb.FRESH
    assert d.requeue_after is not None and 30 <= d.requeue_after <= 31
    assert d.last_active == NOW - timedelta(seconds=10)
    assert d.event is None  # first observation: no "resumed" event


def test_expired_lease_is_not_ready_with_one_warning() -> None:
    renew = NOW - timedelta(seconds=41)
    d = hb.decide(renew, 40, NOW, True, renew)
    assert not d.ready and d.phase == "Degraded" and d.reason == hb.EXPIRED
    assert d.event is not None and d.event[:2] == ("Warning", hb.EXPIRED)
    assert d.requeue_after is None and d.last_active is None
    again = hb.decide(renew, 40, NOW + timedelta(seconds=30), False, renew)
    assert again.event is None and again.message == d.message  # stable: no status write per look


def test_resumed_heartbeat_emits_normal_event() -> None:
    d = hb.decide(NOW, 40, NOW, False, NOW - timedelta(minutes=5))
    assert d.ready and d.event is not None and d.event[0] == "Normal"


def test_last_active_is_coalesced_to_half_the_timeout() -> None:
    recorded = NOW - timedelta(seconds=15)
    assert hb.decide(NOW - timedelta(seconds=1), 40, NOW, True, recorded).last_active is None  # 14s < 20s
    assert hb.decide(NOW, 40, NOW, True, recorded).last_active is None  # 15s < 20s
    assert hb.decide(NOW + timedelta(seconds=5), 40, NOW + timedelta(seconds=5), True, recorded).last_active \
        == NOW + timedelta(seconds=5)


@given(age=st.floats(min_value=0, max_value=1000), timeout=st.integers(min_value=2, max_value=600),
       was=st.sampled_from([None, True, False]))
def test_ready_exactly_while_fresh(age: float, timeout: int, was: bool | None) -> None:
    d = hb.decide(NOW - timedelta(seconds=age), timeout, NOW, was, None)
    assert d.ready == (age <= timeout)
    if d.ready:
        # the operator looks again right after the expiry instant, never before the heartbeat is due
        assert d.requeue_after is not None and d.requeue_after >= timeout - age
    # an event only when readiness flips against what was recorded
    assert (d.event is not None) == ((was is True and not d.ready) or (was is None and not d.ready)
                                     or (was is False and d.ready))


# ---- hand-back (agentops_operator.handback.decide) ---------------------------------------------

from agentops_operator import handback  # noqa: E402


def _task(phase: str = "InProgress", holder: str | None = "dev-1", annotation: str | None = None) -> dict:
    meta: dict = {"name": "t1"}
    if annotation is not None:
        meta["annotations"] = {handback.ANNOTATION: annotation}
    return {"metadata": meta, "status": {"phase": phase, "assignee": holder}}


def _agent(ready: str | None = "True", reason: str = "HeartbeatFresh", since: datetime = NOW,
           image: str | None = None, grace: int | None = 60) -> dict:
    spec: dict = {"role": "developer", "heartbeat": {"timeoutSeconds": 4, "handBackAfterSeconds": grace}}
    if image:
        spec["image"] = image
    conds = [] if ready is None else [{"type": "Ready", "status": ready, "reason": reason,
                                       "lastTransitionTime": since.isoformat().replace("+00:00", "Z")}]
    return {"metadata": {"name": "dev-1"}, "spec": spec, "status": {"conditions": conds}}


def test_hand_back_when_the_heartbeat_stays_expired_past_the_grace() -> None:
    expired = _agent("False", "HeartbeatExpired", since=NOW - timedelta(seconds=20))
    d = handback.decide(_task(), expired, NOW)
    assert d.reason is None and d.wait is not None and 39 <= d.wait <= 41
    d = handback.decide(_task(), expired, NOW + timedelta(seconds=41))
    assert d.reason and "no heartbeat" in d.reason


def test_no_hand_back_for_ready_pod_agents_terminal_tasks_or_null_grace() -> None:
    old = NOW - timedelta(hours=1)
    assert handback.decide(_task(), _agent(), NOW).reason is None
    assert handback.decide(_task(), _agent("False", "HeartbeatExpired", old, image="img"), NOW).reason is None
    assert handback.decide(_task(), _agent("False", "HeartbeatExpired", old, grace=None), NOW).reason is None
    assert handback.decide(_task(phase="Deployed"), None, NOW).reason is None
    assert handback.decide(_task(phase="Backlog", holder=None), None, NOW).reason is None


def test_hand_back_when_asked_by_the_holder_or_the_agent_is_gone() -> None:
    asked = _task(annotation='{"agent": "dev-1", "reason": "needs GPU"}')
    assert handback.decide(asked, _agent(), NOW).reason == "handed back by dev-1: needs GPU"
    # a request left by a previous holder does not move the task away from the new one
    stale = _task(holder="dev-2", annotation='{"agent": "dev-1", "reason": "needs GPU"}')
    assert handback.decide(stale, _agent(), NOW).reason is None
    assert handback.decide(_task(annotation="not json"), _agent(), NOW).reason is None
    assert handback.decide(_task(), None, NOW).reason == "agent dev-1 was removed"
