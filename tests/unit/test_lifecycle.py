"""The task state machine table and the CEL rule generated from it."""

from __future__ import annotations

import itertools

import pytest

from agentops_operator.lifecycle import (
    OPEN_PHASES,
    TRANSITIONS,
    Phase,
    Verdict,
    cel_initial_rule,
    cel_request_rule,
    describe_allowed,
    is_legal,
    judge_request,
    transition_key,
)

P = Phase
FORWARD = [P.BACKLOG, P.ASSIGNED, P.IN_PROGRESS, P.REVIEW, P.DONE, P.DEPLOYED]


def test_forward_path_is_legal_step_by_step() -> None:
    for src, dst in itertools.pairwise(FORWARD):
        assert is_legal(src, dst)


def test_skipping_phases_is_illegal() -> None:
    assert not is_legal(P.BACKLOG, P.DEPLOYED)
    assert not is_legal(P.IN_PROGRESS, P.DONE)
    assert not is_legal(P.ASSIGNED, P.REVIEW)


def test_rework_loop() -> None:
    assert is_legal(P.REVIEW, P.REJECTED)
    assert is_legal(P.REJECTED, P.IN_PROGRESS)
    assert not is_legal(P.REJECTED, P.DONE)


@pytest.mark.parametrize("src", OPEN_PHASES)
def test_cancel_from_every_open_phase(src: Phase) -> None:
    assert is_legal(src, P.CANCELLED)


def test_no_cancel_after_deploy_and_rollback_only_from_deployed() -> None:
    assert not is_legal(P.DEPLOYED, P.CANCELLED)
    assert is_legal(P.DEPLOYED, P.ROLLED_BACK)
    assert [s for s in P if is_legal(s, P.ROLLED_BACK)] == [P.DEPLOYED]


def test_terminal_phases_have_no_moves() -> None:
    assert TRANSITIONS[P.CANCELLED] == ()
    assert TRANSITIONS[P.ROLLED_BACK] == ()
    assert describe_allowed(P.CANCELLED) == "none (terminal phase)"


def test_no_self_loops_and_every_phase_listed() -> None:
    assert set(TRANSITIONS) == set(P)
    for src, dsts in TRANSITIONS.items():
        assert src not in dsts


def test_judge_request() -> None:
    assert judge_request(P.BACKLOG, P.BACKLOG) is Verdict.IDLE
    assert judge_request(P.ASSIGNED, P.BACKLOG) is Verdict.IDLE  # auto-assigned; default request
    assert judge_request(P.ASSIGNED, P.IN_PROGRESS) is Verdict.MOVE
    assert judge_request(P.REJECTED, P.DONE) is Verdict.ILLEGAL


def test_transition_key() -> None:
    assert transition_key("InProgress", "Review") == "InProgress->Review"


def test_cel_rule_names_every_phase_and_allowed_moves() -> None:
    rule = cel_request_rule()
    for phase in P:
        assert f"'{phase.value}'" in rule["rule"]
    assert "'Backlog': 'Assigned, Cancelled'" in rule["messageExpression"]
    assert rule["fieldPath"] == ".spec.requestedPhase"


def test_cel_initial_rule_allows_only_first_moves() -> None:
    rule = cel_initial_rule()
    assert rule["rule"] == "has(self.status) || self.spec.requestedPhase in ['Backlog', 'Assigned', 'Cancelled']"
    assert "Backlog, Assigned, Cancelled" in rule["message"]
