"""Plans without steps: idle (target == stable), the first deploy, and undo (straight to a revision)."""

from __future__ import annotations

from datetime import timedelta

from .context import RolloutContext, complete, deadline_or_wait, finish, reject
from .io import DeploymentTarget, Plan
from .types import FAILURE_REASONS, Reason, Role, RolloutPhase, StrategyType


def main_role(b: RolloutContext) -> Role:
    return Role.ROLLING if b.inp.strategy.type is StrategyType.ROLLING else Role.STABLE


def plan_idle(b: RolloutContext, target: str) -> Plan:
    """No rollout in flight (target == stable), or the very first deploy (no stable yet)."""
    s = b.state
    role = main_role(b)
    deps = [DeploymentTarget(target, b.total, role)]
    active = target if b.inp.strategy.type is StrategyType.BLUE_GREEN else None
    # Blue-green keeps the previous revision for scaleDownDelaySeconds after a switch.
    if s.rollout.scale_down_revision and s.rollout.scale_down_at and s.rollout.scale_down_revision != target:
        if b.now < s.rollout.scale_down_at:
            deps.append(DeploymentTarget(s.rollout.scale_down_revision, b.total, Role.RETIRED))
            b.wake_at(s.rollout.scale_down_at)
        else:
            b.state = s = s.evolve(scale_down_revision=None, scale_down_at=None)
    settled = b.settled(target, b.total)
    if s.stable_revision is None:
        # First deploy: nothing to roll back to, so a missed deadline only marks it Degraded.
        if settled:
            b.state = s = s.evolve(stable_revision=target, current_revision=target, stalled=False)
            b.event("RolloutCompleted", f"revision {target} is available")
            return finish(b, phase=RolloutPhase.HEALTHY, reason=Reason.ROLLOUT_COMPLETED.value,
                           message=f"revision {target} available", deployments=deps, target=target,
                           active=active)
        over = b.elapsed(s.rollout.step_started_at) >= b.deadline
        if over and not s.rollout.stalled:
            b.state = s = s.evolve(stalled=True)
            b.event(Reason.INITIAL_DEPLOY_STALLED.value,
                    f"revision {target} not available within {b.deadline:g}s", warning=True)
        b.wake_in(b.inp.poll_seconds)
        if over:
            return finish(b, phase=RolloutPhase.DEGRADED, reason=Reason.PROGRESS_DEADLINE_EXCEEDED.value,
                           message=f"revision {target}: {b.available(target)}/{b.total} available after "
                                   f"{b.deadline:g}s; nothing to roll back to",
                           deployments=deps, target=target, active=active)
        return finish(b, phase=RolloutPhase.PROGRESSING, reason=Reason.NEW_REVISION.value,
                       message=f"deploying revision {target}: {b.available(target)}/{b.total} available",
                       deployments=deps, target=target, active=active)
    if s.rollout.rejected_revision and s.rollout.reason:
        # Serving stable while the desired revision is rejected: Degraded for failures/abort so
        # GitOps users see the drift; an explicit undo is the user's choice and is Healthy.
        failed = s.rollout.reason in {r.value for r in FAILURE_REASONS}
        if not settled:
            b.wake_in(b.inp.poll_seconds)
        settled_phase = RolloutPhase.HEALTHY if settled else RolloutPhase.PROGRESSING
        return finish(b, phase=RolloutPhase.DEGRADED if failed else settled_phase,
                       reason=s.rollout.reason,
                       message=f"serving {target}; desired revision {s.rollout.rejected_revision} not rolled out: "
                               f"{s.rollout.message}",
                       deployments=deps, target=target, active=active)
    if settled:
        return finish(b, phase=RolloutPhase.HEALTHY, reason=Reason.ROLLOUT_COMPLETED.value,
                       message=f"revision {target}: {b.available(target)}/{b.total} available",
                       deployments=deps, target=target, active=active)
    b.wake_in(b.inp.poll_seconds)
    return finish(b, phase=RolloutPhase.PROGRESSING, reason=Reason.SCALING.value,
                   message=f"revision {target}: {b.available(target)}/{b.total} available",
                   deployments=deps, target=target, active=active)


def plan_undo(b: RolloutContext, target: str) -> Plan:
    """Undo: bring ``target`` to full size without steps or analysis, then make it stable."""
    s = b.state
    stable = s.stable_revision
    assert stable is not None
    bg = b.inp.strategy.type is StrategyType.BLUE_GREEN
    if b.inp.strategy.type is StrategyType.ROLLING:
        deps = [DeploymentTarget(target, b.total, Role.ROLLING)]
    else:
        deps = [DeploymentTarget(target, b.total, Role.CANARY if not bg else Role.PREVIEW),
                DeploymentTarget(stable, b.total, Role.STABLE)]
    if b.settled(target, b.total):
        if bg:
            delay = timedelta(seconds=b.inp.strategy.blue_green.scale_down_delay_seconds)
            b.state = b.state.evolve(scale_down_revision=stable, scale_down_at=b.now + delay)
        complete(b, target, "undo")
        return plan_idle(b, target)
    if deadline_or_wait(b):
        reject(b, target, Reason.PROGRESS_DEADLINE_EXCEEDED,
                f"undo target {target} not available within {b.deadline:g}s")
        b.state = b.state.evolve(current_revision=stable)
        return plan_idle(b, stable)
    return finish(b, phase=RolloutPhase.PROGRESSING, reason=Reason.UNDONE_BY_USER.value,
                   message=f"undo to {target}: {b.available(target)}/{b.total} available",
                   deployments=deps, target=target, active=stable if bg else None,
                   preview=target if bg else None,
                   canary=target if b.inp.strategy.type is StrategyType.CANARY else None, current_step="undo")


def after_reject(b: RolloutContext) -> Plan:
    stable = b.state.stable_revision
    assert stable is not None
    b.state = b.state.evolve(current_revision=stable, step_index=0, step_started_at=b.now,
                      ready_at=None, switched_at=None)
    return plan_idle(b, stable)


