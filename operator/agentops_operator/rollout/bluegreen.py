"""Blue-green: preview → (pre-promotion analysis) → promote → switch → (post-promotion analysis)."""

from __future__ import annotations

from datetime import timedelta

from ..timeutil import wall_clock
from .context import RolloutContext, complete, deadline_or_wait, finish, reject, run_gate, skip_gate
from .direct import after_reject, plan_idle
from .io import DeploymentTarget, Plan
from .types import AnalysisSpec, Reason, Role, RolloutPhase, Verb
from .verdicts import AnalysisVerdict

_BG_PREVIEW, _BG_PROMOTING, _BG_SWITCHED = 0, 1, 2
_BG_STEP_NAMES = ("preview", "promoting", "post-promotion")


def plan_blue_green(b: RolloutContext, target: str) -> Plan:
    bg = b.inp.strategy.blue_green
    stable = b.state.stable_revision
    assert stable is not None
    preview_n = b.total if bg.preview_replica_count is None else min(bg.preview_replica_count, b.total)
    promote = b.take(Verb.PROMOTE)

    def result(phase: RolloutPhase, reason: str, message: str, *, preview_replicas: int, active: str,
               paused: str | None = None, spec: AnalysisSpec | None = None,
               measure: tuple[str, ...] = ()) -> Plan:
        idx = b.state.rollout.step_index
        switched = active != stable
        return finish(
            b, phase=phase, reason=reason, message=message,
            deployments=[DeploymentTarget(stable, b.total, Role.RETIRED if switched else Role.STABLE),
                         DeploymentTarget(target, preview_replicas, Role.STABLE if switched else Role.PREVIEW)],
            target=target, active=active, preview=target, current_step=_BG_STEP_NAMES[idx], step_index=idx,
            step_count=len(_BG_STEP_NAMES), weight=100 if switched else 0, analysis_spec=spec,
            measure=measure, paused_reason=paused,
        )

    def gate_result(outcome: str, verdict: AnalysisVerdict | None, spec: AnalysisSpec, where: str,
                    *, preview_replicas: int, active: str) -> Plan:
        inconclusive = outcome == "inconclusive"
        return result(RolloutPhase.PAUSED if inconclusive else RolloutPhase.PROGRESSING,
                      Reason.ANALYSIS_INCONCLUSIVE.value if inconclusive else Reason.ROLLOUT_IN_PROGRESS.value,
                      f"{where} analysis: {verdict.message if verdict else ''}", preview_replicas=preview_replicas,
                      active=active, paused=Reason.ANALYSIS_INCONCLUSIVE.value if inconclusive else None,
                      spec=spec, measure=verdict.due if verdict else ())

    def go_promoting(message: str) -> None:
        b.state = b.state.evolve(step_index=_BG_PROMOTING, step_started_at=b.now)
        b.event("Promoting", message)

    if b.state.rollout.step_index == _BG_PREVIEW:
        if promote:
            # promote skips the pre-promotion gate; --full also skips the post-promotion one.
            skip_gate(b, target, "pre")
            if promote.full:
                skip_gate(b, target, "post")
            b.ack(promote, True, f"promoted{' fully' if promote.full else ''}: switching to {target}")
            go_promoting("promoted by user")
        elif not b.settled(target, preview_n):
            if deadline_or_wait(b):
                reject(b, target, Reason.PROGRESS_DEADLINE_EXCEEDED,
                        f"preview {target}: {b.available(target)}/{preview_n} available after {b.deadline:g}s")
                return after_reject(b)
            return result(RolloutPhase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value,
                          f"preview {target}: {b.available(target)}/{preview_n} available",
                          preview_replicas=preview_n, active=stable)
        else:
            if b.state.rollout.ready_at is None:
                b.state = b.state.evolve(ready_at=b.now)
            if bg.pre_promotion_analysis is not None:
                outcome, verdict = run_gate(b, target, bg.pre_promotion_analysis, "pre", "pre-promotion")
                if outcome == "fail":
                    return after_reject(b)
                if outcome != "pass":
                    return gate_result(outcome, verdict, bg.pre_promotion_analysis, "pre-promotion",
                                       preview_replicas=preview_n, active=stable)
            if not bg.auto_promotion_enabled:
                return result(RolloutPhase.PAUSED, Reason.AWAITING_PROMOTION.value,
                              f"preview {target} ready; waiting for promote", preview_replicas=preview_n,
                              active=stable, paused=Reason.AWAITING_PROMOTION.value)
            ready_at = b.state.rollout.ready_at or b.now
            wait = (bg.auto_promotion_seconds or 0) - (b.now - ready_at).total_seconds()
            if wait > 0:
                b.wake_in(wait)
                return result(RolloutPhase.PAUSED, Reason.WAITING_AUTO_PROMOTION.value,
                              f"preview {target} ready; auto-promotion at {wall_clock(b.now, wait)}",
                              preview_replicas=preview_n, active=stable,
                              paused=Reason.WAITING_AUTO_PROMOTION.value)
            go_promoting("auto-promotion")
    elif promote:
        if b.state.rollout.step_index == _BG_SWITCHED and bg.post_promotion_analysis is not None:
            skip_gate(b, target, "post")
            b.ack(promote, True, "promoted: post-promotion analysis skipped")
        else:
            b.ack(promote, False, "promote: already switching")

    if b.state.rollout.step_index == _BG_PROMOTING:
        # Bring the preview to full size before it takes traffic.
        if not b.settled(target, b.total):
            if deadline_or_wait(b):
                reject(b, target, Reason.PROGRESS_DEADLINE_EXCEEDED,
                        f"{target}: {b.available(target)}/{b.total} available after {b.deadline:g}s")
                return after_reject(b)
            return result(RolloutPhase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value,
                          f"scaling {target} to {b.total} before switching", preview_replicas=b.total,
                          active=stable)
        b.state = b.state.evolve(step_index=_BG_SWITCHED, step_started_at=b.now, switched_at=b.now)
        b.event("Switched", f"active Service now selects {target} (was {stable})")

    # Switched: the new revision serves; the old one stays at full size for a fast switch-back.
    post = bg.post_promotion_analysis
    if post is not None:
        outcome, verdict = run_gate(b, target, post, "post", "post-promotion")
        if outcome == "fail":
            b.event("SwitchedBack", f"active Service back on {stable}: post-promotion analysis failed",
                    warning=True)
            return after_reject(b)
        if outcome != "pass":
            return gate_result(outcome, verdict, post, "post-promotion", preview_replicas=b.total, active=target)
    switched_at = b.state.rollout.switched_at or b.now
    b.state = b.state.evolve(scale_down_revision=stable,
                      scale_down_at=switched_at + timedelta(seconds=bg.scale_down_delay_seconds))
    complete(b, target, "blue-green switch")
    return plan_idle(b, target)


