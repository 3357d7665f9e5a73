"""The planner's entry point: ``plan(PlanInputs) -> Plan``, dispatching to one strategy module.

Vocabulary
----------
* desired revision: hash of the Agent spec and merged config as they are now (what Git says).
* stable revision: the last revision that completed a rollout; it serves when anything fails.
* target revision: what the planner is moving towards. Normally the desired revision; the stable
  one after an abort/rollback (the desired revision is then *rejected*); an older one after undo.
* current revision: the revision the in-flight rollout is moving to (== stable when idle).

The operator never edits the Agent spec, so after a rollback the desired revision stays different
from the stable one and status shows it (phase Degraded, condition RolledBack) until the spec
changes again (new desired revision) or a human retries.
"""

from __future__ import annotations

from dataclasses import replace

from .bluegreen import plan_blue_green
from .canary import plan_canary
from .context import RolloutContext, reject, start_rollout
from .direct import plan_idle, plan_undo
from .io import Plan, PlanInputs
from .revisions import resolve_undo_target
from .rolling import plan_rolling
from .state import mark_handled, merge_acks
from .types import Reason, StrategyType, Verb


def plan(inp: PlanInputs) -> Plan:
    """Decide the next step of an Agent's rollout. Pure: same inputs, same plan."""
    if inp.replicas < 0:
        raise ValueError("replicas must be >= 0")
    b = RolloutContext(inp)
    _forget_stale_rejection(b)
    _handle_abort_retry_undo(b)
    target = b.target()
    stable = b.state.stable_revision
    if target != b.state.rollout.current_revision:
        start_rollout(b, target)
    strategy = inp.strategy.type
    if stable is None or target == stable:
        result = plan_idle(b, target)
    elif b.state.rollout.override_revision == target:
        result = plan_undo(b, target)
    elif strategy is StrategyType.CANARY:
        result = plan_canary(b, target)
    elif strategy is StrategyType.BLUE_GREEN:
        result = plan_blue_green(b, target)
    else:
        result = plan_rolling(b, target)
    # Commands nobody could use are still acknowledged, so the CLI does not wait forever.
    for cmd in list(b.pending):
        b.ack(cmd, False, f"{cmd.verb.value}: nothing to {cmd.verb.value} in phase {result.phase.value}")
    system = result.state.system_commands
    user_acks = [a for a in b.acks if a.id not in system]
    state = result.state.evolve(acknowledged_commands=merge_acks(result.state.acknowledged_commands, user_acks),
                                system_commands=mark_handled(system, b.acks, inp.now))
    return replace(result, state=state, acks=tuple(b.acks))


def _forget_stale_rejection(b: RolloutContext) -> None:
    """A new desired revision (Git moved on) clears rollback/undo state: roll it out normally."""
    s = b.state
    if s.rollout.rejected_revision and s.rollout.rejected_revision != b.inp.desired_revision:
        b.state = s.evolve(rejected_revision=None, override_revision=None, reason=None, message="")
    elif s.rollout.override_revision and s.rollout.override_revision == b.inp.desired_revision:
        b.state = s.evolve(override_revision=None)


def _handle_abort_retry_undo(b: RolloutContext) -> None:
    s = b.state
    in_flight = s.rollout.current_revision is not None and s.rollout.current_revision != s.stable_revision
    abort = b.take(Verb.ABORT)
    if abort:
        if in_flight and s.stable_revision and s.rollout.current_revision:
            why = f"aborted by {abort.by}" + (f": {abort.reason}" if abort.reason else "")
            reject(b, s.rollout.current_revision, Reason.ABORTED_BY_USER, why)
            b.ack(abort, True, f"aborted rollout of {s.rollout.current_revision}")
        else:
            b.ack(abort, False, "abort: no rollout in progress")
    retry = b.take(Verb.RETRY)
    if retry:
        s = b.state
        if s.rollout.rejected_revision or s.rollout.override_revision:
            b.state = s.evolve(rejected_revision=None, override_revision=None, reason=None, message="",
                              attempt=s.rollout.attempt + 1, current_revision=None)
            b.ack(retry, True, f"retrying revision {b.inp.desired_revision}")
        elif s.analysis is not None and in_flight:
            # Re-run the analysis the rollout is waiting on (e.g. inconclusive): new run id.
            b.state = s.evolve(attempt=s.rollout.attempt + 1, analysis=None, last_analysis=s.analysis)
            b.ack(retry, True, "re-running analysis")
        else:
            b.ack(retry, False, "retry: nothing was aborted or rolled back")
    undo = b.take(Verb.UNDO)
    if undo:
        s = b.state
        to = resolve_undo_target(b.inp.history, s.stable_revision, undo.to_revision)
        if to is None:
            want = f"revision {undo.to_revision}" if undo.to_revision is not None else "a previous revision"
            b.ack(undo, False, f"undo: {want} not found in history")
        elif to == b.inp.desired_revision:
            b.state = s.evolve(rejected_revision=None, override_revision=None, reason=None, message="")
            b.ack(undo, True, f"undo: {to} is the desired revision; rolling it out")
        else:
            b.state = s.evolve(rejected_revision=b.inp.desired_revision,
                              override_revision=None if to == s.stable_revision else to,
                              reason=Reason.UNDONE_BY_USER.value, message=f"undone to revision {to} by user")
            b.event("Undo", f"undo to revision {to}; desired {b.inp.desired_revision} is not served")
            b.ack(undo, True, f"undo to revision {to}")


