"""Alerts that act: the Alertmanager v4 payload, the decision per alert, the bearer check, and an alert's
abort carried out by the rollout planner through status.systemCommands."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from agentops_operator import alerts
from agentops_operator.rollout import (
    PauseStep,
    Reason,
    RolloutPhase,
    SetWeightStep,
    SystemCommand,
    Verb,
    encode_command,
    pending_commands,
)
from tests.unit.test_rollout import T0, Sim, canary, reps


def alert(status: str = "firing", fingerprint: str = "a1b2c3d4e5f60718", starts: str = "2026-11-22T05:00:00.123456789Z",
          **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": "AgentTaskDeployFailed", **labels},
            "annotations": {"summary": "deploy gate failed"}, "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph", "fingerprint": fingerprint}


def payload(*items: dict[str, Any], **extra: Any) -> bytes:
    body = {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing", "receiver": "agentops",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": list(items), **extra}
    return json.dumps(body).encode()


ROLLBACK = {"agentops_action": "rollback", "namespace": "team-a", "agenttask": "fix-login"}
ABORT = {"agentops_action": "abort", "namespace": "team-a", "agent": "coder"}


def test_rollback_alert_decides_a_rollback_of_the_labelled_task() -> None:
    [d] = alerts.decide(alerts.parse_payload(payload(alert(**ROLLBACK))))
    assert d.action is alerts.Action.ROLLBACK
    assert (d.namespace, d.target) == ("team-a", "fix-login")
    assert d.reason == "AgentTaskDeployFailed: deploy gate failed"
    # Nanosecond timestamps (what Alertmanager sends) parse; the key is fingerprint + episode start.
    assert d.key == "alertmanager/a1b2c3d4e5f60718/1795323600"


def test_abort_alert_decides_an_abort_of_the_labelled_agent() -> None:
    [d] = alerts.decide(alerts.parse_payload(payload(alert(**ABORT))))
    assert d.action is alerts.Action.ABORT and (d.namespace, d.target) == ("team-a", "coder")


def test_repeats_of_one_episode_share_a_key_a_new_episode_does_not() -> None:
    first = alerts.decide_one(alerts.WebhookAlert.model_validate(alert(**ROLLBACK)))
    repeat = alerts.decide_one(alerts.WebhookAlert.model_validate(alert(**ROLLBACK)))
    later = alerts.decide_one(alerts.WebhookAlert.model_validate(alert(starts="2026-11-22T06:00:00Z", **ROLLBACK)))
    assert first.key == repeat.key != later.key


@pytest.mark.parametrize(("labels", "status", "why"), [
    (ROLLBACK, "resolved", "resolved"),
    ({"namespace": "team-a", "agenttask": "x"}, "firing", "no agentops_action label"),
    ({**ROLLBACK, "agentops_action": "delete"}, "firing", "is not one of rollback, abort"),
    ({"agentops_action": "rollback", "namespace": "team-a"}, "firing", "needs label agenttask"),
    ({"agentops_action": "abort", "namespace": "team-a", "agenttask": "x"}, "firing", "needs label agent"),
    ({**ROLLBACK, "namespace": "Team_A"}, "firing", "not a namespace name"),
    ({**ROLLBACK, "agenttask": "../etc"}, "firing", "needs label agenttask"),
])
def test_alerts_that_do_not_act_say_why(labels: dict[str, str], status: str, why: str) -> None:
    [d] = alerts.decide(alerts.parse_payload(payload(alert(status=status, **labels))))
    assert d.action is None and why in d.skipped


def test_one_key_twice_in_a_payload_acts_once() -> None:
    ds = alerts.decide(alerts.parse_payload(payload(alert(**ROLLBACK), alert(**ROLLBACK))))
    assert [d.action for d in ds] == [alerts.Action.ROLLBACK, None]


@pytest.mark.parametrize(("body", "field"), [
    (b"not json", "body"),
    (payload(alert(**ROLLBACK), version="3"), "version"),
    (payload(alert(fingerprint="ZZ", **ROLLBACK)), "alerts.0.fingerprint"),
    (payload(alert(status="pending", **ROLLBACK)), "alerts.0.status"),
    (payload({"status": "firing", "labels": {}}), "alerts.0.startsAt"),
    (json.dumps({"version": "4", "status": "firing"}).encode(), "alerts"),
])
def test_bad_payloads_are_refused_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(alerts.PayloadError) as err:
        alerts.parse_payload(body)
    assert str(err.value).startswith(field)


def test_oversized_body_is_refused_before_parsing() -> None:
    with pytest.raises(alerts.PayloadError, match="larger than"):
        alerts.parse_payload(b" " * (alerts.MAX_BODY_BYTES + 1))


def test_too_many_alerts_are_refused() -> None:
    many = [alert(fingerprint=f"{i:016x}", **ROLLBACK) for i in range(alerts.MAX_ALERTS + 1)]
    with pytest.raises(alerts.PayloadError, match="alerts"):
        alerts.parse_payload(payload(*many))


def test_unknown_fields_from_newer_alertmanagers_are_ignored() -> None:
    p = alerts.parse_payload(payload(alert(**ROLLBACK), somethingNew={"x": 1}))
    assert len(p.alerts) == 1


@pytest.mark.parametrize(("header", "ok"), [
    ("Bearer s3cret", True),
    ("bearer s3cret", True),
    ("Bearer s3cret ", True),
    ("Bearer wrong", False),
    ("Bearer s3cre", False),
    ("Basic s3cret", False),
    ("s3cret", False),
    ("", False),
    (None, False),
])
def test_bearer_token(header: str | None, ok: bool) -> None:
    assert alerts.bearer_ok(header, b"s3cret") is ok


def test_no_configured_token_refuses_everyone() -> None:
    assert not alerts.bearer_ok("Bearer ", b"")
    assert not alerts.bearer_ok("Bearer x", b"")


# ---- the abort, carried out by the planner ---------------------------------------------------


def _system(sim: Sim, cid: str, verb: Verb = Verb.ABORT) -> None:
    cmds = dict(sim.state.system_commands)
    cmds[cid] = SystemCommand(verb=verb, by="alertmanager", reason="AgentErrors: 5xx", requested_at=sim.now)
    sim.state = sim.state.evolve(system_commands=cmds)


def _tick(sim: Sim, annotations: dict[str, str] | None = None) -> Any:
    """What the handler does each reconcile: pending commands from annotations and status, then step."""
    sim.commands = pending_commands(annotations, sim.state.acknowledged_commands, sim.state.system_commands)
    return sim.tick()


def test_system_abort_aborts_the_rollout_once_and_is_marked_handled() -> None:
    sim = Sim(canary(SetWeightStep(50), PauseStep()))
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    _system(sim, "alertmanager/ab/1")
    p = _tick(sim)
    assert p.phase is RolloutPhase.DEGRADED and p.reason == Reason.ABORTED_BY_USER.value
    assert "aborted by alertmanager: AgentErrors: 5xx" in p.message
    assert reps(p) == {"old": 4, "new": 0}
    done = p.state.system_commands["alertmanager/ab/1"]
    assert done.handled_at is not None and done.applied
    # Not an annotation's ack: the per-verb record the CLI waits on is untouched.
    assert p.state.acknowledged_commands == ()
    # Handled: nothing pending any more, and another reconcile does not act on it again.
    assert pending_commands(None, p.state.acknowledged_commands, p.state.system_commands) == []
    assert _tick(sim).acks == ()


def test_system_abort_does_not_re_arm_an_old_user_abort() -> None:
    """A user's acknowledged abort annotation stays acknowledged after an alert's abort (no replay)."""
    sim = Sim(canary(SetWeightStep(50), PauseStep()))
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    ann = {"agentops.dev/abort": encode_command("u1")}
    _tick(sim, ann)
    assert sim.state.acknowledged_commands[0].id == "u1"
    sim.commands = pending_commands(None, (), {})
    sim.desired = "newer"  # Git moved on: a new rollout in flight
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    _system(sim, "alertmanager/cd/2")
    _tick(sim, ann)
    assert pending_commands(ann, sim.state.acknowledged_commands, sim.state.system_commands) == []


def test_system_abort_with_nothing_in_flight_is_handled_not_applied() -> None:
    sim = Sim(canary(SetWeightStep(50)), desired="old")
    _system(sim, "alertmanager/ef/3")
    p = _tick(sim)
    c = p.state.system_commands["alertmanager/ef/3"]
    assert c.handled_at is not None and c.applied is False and "no rollout in progress" in c.message
    assert p.phase is RolloutPhase.HEALTHY


def test_system_commands_survive_the_status_round_trip() -> None:
    from agentops_operator.rollout import RolloutState

    sim = Sim(canary(SetWeightStep(50), PauseStep()))
    _system(sim, "alertmanager/ab/1")
    wire = sim.state.status()
    assert wire["systemCommands"]["alertmanager/ab/1"]["requestedAt"].startswith(str(T0.date()))
    again = RolloutState.model_validate(wire)
    assert again.system_commands == sim.state.system_commands
    assert RolloutState.model_validate({"systemCommands": None}).system_commands == {}
    assert (T0 + timedelta(0)) == sim.state.system_commands["alertmanager/ab/1"].requested_at


def test_eviction_makes_room_from_the_oldest_handled_never_a_pending_one() -> None:
    from agentops_operator.rollout import MAX_SYSTEM_COMMANDS, evict_system_commands

    def cmd(i: int, handled: bool) -> SystemCommand:
        at = T0 + timedelta(seconds=i)
        return SystemCommand(verb=Verb.ABORT, by="alertmanager", requested_at=at, handled_at=at if handled else None)

    few = {f"k{i}": cmd(i, True) for i in range(MAX_SYSTEM_COMMANDS - 1)}
    assert evict_system_commands(few) == []
    full = {f"k{i}": cmd(i, i not in (0, 2)) for i in range(MAX_SYSTEM_COMMANDS)}
    assert evict_system_commands(full) == ["k1"]  # k0 is older but still pending
    assert evict_system_commands(full, adding=2) == ["k1", "k3"]
    all_pending = {f"k{i}": cmd(i, False) for i in range(MAX_SYSTEM_COMMANDS)}
    assert evict_system_commands(all_pending) == []
