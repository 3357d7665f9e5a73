"""AgentTask state machine: one table drives the CEL admission rule and the operator.

Pure: no I/O. Phase values follow Kubernetes enum convention (CamelCase).
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    BACKLOG = "Backlog"
    ASSIGNED = "Assigned"
    IN_PROGRESS = "InProgress"
    REVIEW = "Review"
    DONE = "Done"
    DEPLOYED = "Deployed"
    REJECTED = "Rejected"
    CANCELLED = "Cancelled"
    ROLLED_BACK = "RolledBack"


P = Phase
# Phases a task can still be cancelled from: every phase before Deployed that is not terminal.
OPEN_PHASES: tuple[Phase, ...] = (P.BACKLOG, P.ASSIGNED, P.IN_PROGRESS, P.REVIEW, P.REJECTED, P.DONE)
TERMINAL_PHASES: tuple[Phase, ...] = (P.CANCELLED, P.ROLLED_BACK)

_FORWARD: dict[Phase, tuple[Phase, ...]] = {
    P.BACKLOG: (P.ASSIGNED,),
    P.ASSIGNED: (P.IN_PROGRESS,),
    P.IN_PROGRESS: (P.REVIEW,),
    P.REVIEW: (P.DONE, P.REJECTED),
    P.REJECTED: (P.IN_PROGRESS,),
    P.DONE: (P.DEPLOYED,),
    P.DEPLOYED: (P.ROLLED_BACK,),
    P.CANCELLED: (),
    P.ROLLED_BACK: (),
}

TRANSITIONS: dict[Phase, tuple[Phase, ...]] = {
    src: dsts + ((P.CANCELLED,) if src in OPEN_PHASES else ()) for src, dsts in _FORWARD.items()
}


def allowed_from(src: Phase | str) -> tuple[Phase, ...]:
    return TRANSITIONS[Phase(src)]


def is_legal(src: Phase | str, dst: Phase | str) -> bool:
    return Phase(dst) in TRANSITIONS[Phase(src)]


def transition_key(src: Phase | str, dst: Phase | str) -> str:
    """Stable name of a move, used in gate policies and child names: 'InProgress->Review'."""
    return f"{Phase(src).value}->{Phase(dst).value}"


def describe_allowed(src: Phase | str) -> str:
    nxt = allowed_from(src)
    return ", ".join(p.value for p in nxt) if nxt else "none (terminal phase)"


class Verdict(StrEnum):
    IDLE = "Idle"  # nothing requested, or the request is already recorded
    MOVE = "Move"  # a legal move to run gates for
    ILLEGAL = "Illegal"  # the request cannot be reached from the recorded phase


def judge_request(recorded: Phase | str, requested: Phase | str) -> Verdict:
    """What the operator should do with spec.requestedPhase given status.phase.

    Backlog is the default request, so it means 'nothing asked' once the task has moved on
    (e.g. after auto-assignment moved it to Assigned).
    """
    recorded, requested = Phase(recorded), Phase(requested)
    if requested == recorded or requested == P.BACKLOG:
        return Verdict.IDLE
    return Verdict.MOVE if is_legal(recorded, requested) else Verdict.ILLEGAL


def _cel_list(items: tuple[Phase, ...]) -> str:
    return "[" + ", ".join(f"'{p.value}'" for p in items) + "]"


def cel_transition_map() -> str:
    return "{" + ", ".join(f"'{s.value}': {_cel_list(d)}" for s, d in TRANSITIONS.items()) + "}"


def cel_request_rule() -> dict[str, str]:
    """Root-level transition rule: a changed spec.requestedPhase must be the recorded phase,
    Backlog, or a legal next phase from the recorded one (status.phase, Backlog when unset).

    Only changes to the request are judged, so status writes and unrelated spec edits pass.
    """
    cur = "(has(self.status) && has(self.status.phase) ? self.status.phase : 'Backlog')"
    req = "self.spec.requestedPhase"
    m = cel_transition_map()
    rule = (
        f"!has(oldSelf.spec.requestedPhase) || {req} == oldSelf.spec.requestedPhase"
        f" || {req} == {cur} || {req} == 'Backlog' || {m}[{cur}].exists(p, p == {req})"
    )
    described = "{" + ", ".join(f"'{s.value}': '{describe_allowed(s)}'" for s in TRANSITIONS) + "}"
    message = (
        f"'spec.requestedPhase: illegal move from ' + {cur} + ' to ' + {req} + '; allowed from '"
        f" + {cur} + ': ' + {described}[{cur}]"
    )
    return {
        "rule": rule,
        "messageExpression": message,
        "message": "spec.requestedPhase: illegal phase move",
        "reason": "FieldValueForbidden",
        "fieldPath": ".spec.requestedPhase",
    }


def cel_initial_rule() -> dict[str, str]:
    """Before the operator has recorded any phase (on create, status is dropped), only the moves
    legal from Backlog can be requested."""
    first = (P.BACKLOG, *TRANSITIONS[P.BACKLOG])
    allowed = ", ".join(p.value for p in first)
    return {
        "rule": f"has(self.status) || self.spec.requestedPhase in {_cel_list(first)}",
        "message": f"spec.requestedPhase: a new task starts in Backlog; it may request {allowed}",
        "reason": "FieldValueForbidden",
        "fieldPath": ".spec.requestedPhase",
    }
