"""Canary: setWeight / pause / analysis steps (weight = canary replicas / total, no mesh)."""

from __future__ import annotations

from collections.abc import Sequence

from ..timeutil import wall_clock
from .context import (
    RolloutContext,
    analysis_outcome,
    analysis_run,
    complete,
    deadline_or_wait,
    finish,
    reject,
)
from .direct import after_reject, plan_idle
from .io import DeploymentTarget, Plan
from .replicas import canary_replicas, split_replicas
from .types import AnalysisSpec, PauseStep, Reason, Role, RolloutPhase, SetWeightStep, Step, Verb, describe_step
from .verdicts import aggregate_analysis


def weight_at(steps: Sequence[Step], index: int) -> int:
    weight = 0
    for step in steps[: index + 1]:
        if isinstance(step, SetWeightStep):
            weight = step.weight
    return weight


def plan_canary(b: RolloutContext, target: str) -> Plan:
    steps = b.inp.strategy.canary.steps
    stable = b.state.stable_revision
    assert stable is not None
    promote = b.take(Verb.PROMOTE)
    if promote:
        if promote.full:
            b.state = b.state.evolve(step_index=len(steps), step_started_at=b.now, analysis=None)
            b.ack(promote, True, "promoted fully: remaining steps skipped")
        elif b.state.rollout.step_index < len(steps):
            skipped = describe_step(steps[b.state.rollout.step_index])
            b.state = b.state.evolve(step_index=b.state.rollout.step_index + 1, step_started_at=b.now, analysis=None)
            b.ack(promote, True, f"promoted: step '{skipped}' completed")
        else:
            b.ack(promote, False, "promote: already promoting to full")

    def result(phase: RolloutPhase, reason: str, message: str, weight: int, *, paused: str | None = None,
               spec: AnalysisSpec | None = None, measure: tuple[str, ...] = ()) -> Plan:
        c_avail = b.available(target)
        canary, stable_n = canary_replicas(b.total, weight, c_avail)
        idx = b.state.rollout.step_index
        label = describe_step(steps[idx]) if idx < len(steps) else "promote"
        return finish(
            b, phase=phase, reason=reason, message=message,
            deployments=[DeploymentTarget(stable, stable_n, Role.STABLE),
                         DeploymentTarget(target, canary, Role.CANARY)],
            target=target, canary=target, current_step=label, step_index=idx,
            step_count=len(steps), weight=weight, analysis_spec=spec, measure=measure, paused_reason=paused,
        )

    while True:
        idx = b.state.rollout.step_index
        if idx >= len(steps):
            # All steps done: canary to full size, then it becomes stable.
            if b.settled(target, b.total):
                complete(b, target, "all canary steps passed")
                return plan_idle(b, target)
            if deadline_or_wait(b):
                break
            return result(RolloutPhase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value,
                          f"promoting {target}: {b.available(target)}/{b.total} available", 100)
        step = steps[idx]
        weight = weight_at(steps, idx)
        if isinstance(step, SetWeightStep):
            want, _ = split_replicas(b.total, weight)
            if b.settled(target, want):
                b.event("StepCompleted", f"step {idx + 1}/{len(steps)}: weight {weight}% reached")
                b.state = b.state.evolve(step_index=idx + 1, step_started_at=b.now)
                continue
            if deadline_or_wait(b):
                break
            return result(RolloutPhase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value,
                          f"step {idx + 1}/{len(steps)}: weight {weight}%, canary "
                          f"{b.available(target)}/{want} available", weight)
        if isinstance(step, PauseStep):
            if step.duration_seconds is None:
                return result(RolloutPhase.PAUSED, Reason.AWAITING_PROMOTION.value,
                              f"step {idx + 1}/{len(steps)}: paused until promoted", weight,
                              paused=Reason.AWAITING_PROMOTION.value)
            left = step.duration_seconds - b.elapsed(b.state.rollout.step_started_at)
            if left <= 0:
                b.event("StepCompleted", f"step {idx + 1}/{len(steps)}: pause elapsed")
                b.state = b.state.evolve(step_index=idx + 1, step_started_at=b.now)
                continue
            b.wake_in(left)
            return result(RolloutPhase.PAUSED, Reason.PAUSED_BY_STEP.value,
                          f"step {idx + 1}/{len(steps)}: paused until {wall_clock(b.now, left)}", weight,
                          paused=Reason.PAUSED_BY_STEP.value)
        # Analysis step
        run = analysis_run(b, f"{target}/step-{idx}/{b.state.rollout.attempt}")
        verdict = aggregate_analysis(step.analysis, run, b.now)
        outcome = analysis_outcome(b, target, verdict, step.analysis, f"step {idx + 1}/{len(steps)}")
        if outcome == "pass":
            b.state = b.state.evolve(step_index=idx + 1, step_started_at=b.now)
            continue
        if outcome == "fail":
            return after_reject(b)
        phase, reason, paused = (
            (RolloutPhase.PAUSED, Reason.ANALYSIS_INCONCLUSIVE.value, Reason.ANALYSIS_INCONCLUSIVE.value)
            if outcome == "inconclusive" else (RolloutPhase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value, None)
        )
        return result(phase, reason, f"step {idx + 1}/{len(steps)}: {verdict.message}", weight,
                      paused=paused, spec=step.analysis, measure=verdict.due)
    # Progress deadline passed while waiting on canary pods.
    reject(b, target, Reason.PROGRESS_DEADLINE_EXCEEDED,
            f"canary {target}: {b.available(target)} available after {b.deadline:g}s")
    return after_reject(b)


