"""Rolling: one Deployment re-templated in place, then an optional post-update analysis."""

from __future__ import annotations

from .context import RolloutContext, complete, deadline_or_wait, finish, reject, run_gate
from .direct import after_reject, plan_idle
from .io import DeploymentTarget, Plan
from .types import AnalysisSpec, Reason, Role, RolloutPhase, Verb


def plan_rolling(b: RolloutContext, target: str) -> Plan:
    spec = b.inp.strategy.rolling
    stable = b.state.stable_revision
    assert stable is not None
    promote = b.take(Verb.PROMOTE)
    deps = [DeploymentTarget(target, b.total, Role.ROLLING)]

    def result(phase: RolloutPhase, reason: str, message: str, *, paused: str | None = None,
               aspec: AnalysisSpec | None = None, measure: tuple[str, ...] = ()) -> Plan:
        return finish(b, phase=phase, reason=reason, message=message, deployments=deps, target=target,
                       current_step="analysis" if aspec else "update", step_index=b.state.rollout.step_index,
                       step_count=2 if spec.analysis else 1, analysis_spec=aspec, measure=measure,
                       paused_reason=paused)

    if b.state.rollout.step_index == 0:
        if not b.settled(target, b.total):
            if promote:
                b.ack(promote, False, "promote: rolling update still waiting for pods")
            if deadline_or_wait(b):
                o = b.obs(target)
                reject(b, target, Reason.PROGRESS_DEADLINE_EXCEEDED,
                        f"{target}: {o.available_replicas if o else 0}/{b.total} available, "
                        f"{o.updated_replicas if o else 0} updated after {b.deadline:g}s")
                return after_reject(b)
            o = b.obs(target)
            return result(RolloutPhase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value,
                          f"updating to {target}: {o.updated_replicas if o else 0} updated, "
                          f"{o.available_replicas if o else 0}/{b.total} available")
        b.state = b.state.evolve(step_index=1, step_started_at=b.now)
    if spec.analysis is not None:
        if promote:
            b.ack(promote, True, "promoted: post-update analysis skipped")
        else:
            outcome, verdict = run_gate(b, target, spec.analysis, "post", "post-update")
            if outcome == "fail":
                return after_reject(b)
            if outcome != "pass":
                inconclusive = outcome == "inconclusive"
                return result(RolloutPhase.PAUSED if inconclusive else RolloutPhase.PROGRESSING,
                              Reason.ANALYSIS_INCONCLUSIVE.value if inconclusive
                              else Reason.ROLLOUT_IN_PROGRESS.value,
                              f"post-update analysis: {verdict.message if verdict else ''}",
                              paused=Reason.ANALYSIS_INCONCLUSIVE.value if inconclusive else None,
                              aspec=spec.analysis, measure=verdict.due if verdict else ())
    elif promote:
        b.ack(promote, False, "promote: nothing to promote")
    complete(b, target, "rolling update")
    return plan_idle(b, target)


