"""The planner's scratchpad and the steps every strategy shares (reject, complete, analysis gates).

Like Argo Rollouts' rolloutContext: one per plan() call, mutable while planning; plan() stays pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from .io import Command, ConditionSpec, DeploymentObservation, DeploymentTarget, EventSpec, Plan, PlanInputs
from .state import MAX_PASSED_KEPT, AnalysisRunState, CommandAck
from .types import AnalysisPhase, AnalysisSpec, Reason, Role, RolloutPhase, StrategyType, Verb
from .verdicts import AnalysisVerdict, aggregate_analysis, annotated

Outcome = Literal["pass", "fail", "inconclusive", "running"]

class RolloutContext:
    """Mutable scratchpad used while planning (plan() itself stays a pure function)."""

    def __init__(self, inp: PlanInputs) -> None:
        self.inp = inp
        self.now = inp.now
        self.state = inp.state
        self.events: list[EventSpec] = []
        self.acks: list[CommandAck] = []
        self.pending: list[Command] = list(inp.commands)
        self.wakeups: list[float] = []

    # -- helpers -------------------------------------------------------------------------------
    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(EventSpec("Warning" if warning else "Normal", reason, message))

    def ack(self, cmd: Command, applied: bool, message: str) -> None:
        self.acks.append(CommandAck(verb=cmd.verb, id=cmd.nonce, applied=applied, message=message[:1024], at=self.now))
        self.pending.remove(cmd)

    def take(self, verb: Verb) -> Command | None:
        return next((c for c in self.pending if c.verb is verb), None)

    def wake_in(self, seconds: float) -> None:
        self.wakeups.append(max(seconds, 0.0))

    def wake_at(self, when: datetime) -> None:
        self.wake_in((when - self.now).total_seconds())

    def elapsed(self, since: datetime | None) -> float:
        return 0.0 if since is None else (self.now - since).total_seconds()

    def obs(self, revision: str | None) -> DeploymentObservation | None:
        return None if revision is None else self.inp.deployments.get(revision)

    def available(self, revision: str | None) -> int:
        o = self.obs(revision)
        return o.available_replicas if o else 0

    def settled(self, revision: str, replicas: int) -> bool:
        """``replicas`` pods of ``revision`` are available and nothing else runs it. Zero wanted and no
        Deployment for it is settled too: the handler does not create a Deployment to keep at zero."""
        o = self.obs(revision)
        if o is None:
            return replicas == 0
        return o.settled(replicas)

    @property
    def total(self) -> int:
        return self.inp.replicas

    @property
    def deadline(self) -> float:
        return self.inp.strategy.progress_deadline_seconds

    def target(self) -> str:
        s = self.state
        if s.rollout.override_revision:
            return s.rollout.override_revision
        rejected = s.rollout.rejected_revision
        if rejected and rejected == self.inp.desired_revision and s.stable_revision:
            return s.stable_revision
        return self.inp.desired_revision


def reject(b: RolloutContext, revision: str, reason: Reason, message: str) -> None:
    """Stop rolling ``revision`` out: from now on the stable revision is the target again.

    ``revision`` is the desired one or an undo target; either way the desired revision is what
    must not be rolled out again until the spec changes or someone retries.
    """
    s = b.state
    b.state = s.evolve(
        rejected_revision=b.inp.desired_revision,
        override_revision=None,
        reason=reason.value,
        message=message[:4096],
        analysis=None,
        last_analysis=s.analysis or s.last_analysis,
    )
    verb = "aborted" if reason is Reason.ABORTED_BY_USER else "rolled back"
    b.event("RolledBack", f"revision {revision} {verb}, serving {s.stable_revision}: {message}", warning=True)


def start_rollout(b: RolloutContext, target: str) -> None:
    s = b.state
    b.state = s.evolve(
        current_revision=target,
        step_index=0,
        step_started_at=b.now,
        ready_at=None,
        switched_at=None,
        stalled=False,
        passed=(),
        analysis=None,
        last_analysis=s.analysis or s.last_analysis,
    )
    if target != s.stable_revision:
        b.event("RolloutStarted", f"rolling out revision {target} (stable {s.stable_revision or 'none'})")


def finish(
    b: RolloutContext,
    *,
    phase: RolloutPhase,
    reason: str,
    message: str,
    deployments: Sequence[DeploymentTarget],
    target: str | None,
    active: str | None = None,
    preview: str | None = None,
    canary: str | None = None,
    current_step: str = "",
    step_index: int | None = None,
    step_count: int = 0,
    weight: int | None = None,
    analysis_spec: AnalysisSpec | None = None,
    measure: tuple[str, ...] = (),
    paused_reason: str | None = None,
) -> Plan:
    s = b.state
    deps = list(deployments)
    # An aborted/rolled-back revision stays at zero replicas so users can inspect it and retry fast
    # (not for rolling: its single Deployment is re-templated, there is no separate one to keep).
    planned = {d.revision for d in deps}
    rolling = b.inp.strategy.type is StrategyType.ROLLING
    if s.rollout.rejected_revision and s.rollout.rejected_revision not in planned and not rolling:
        deps.append(DeploymentTarget(s.rollout.rejected_revision, 0, Role.RETIRED))
    serving = [d for d in deps if d.role is not Role.RETIRED and d.role is not Role.PREVIEW]
    if active is not None:
        serving = [d for d in deps if d.revision == active]
    serving_available = sum(min(b.available(d.revision), d.replicas) for d in serving)
    rolled_back = s.rollout.rejected_revision is not None and s.rollout.reason is not None
    conditions = (
        ConditionSpec(
            "Ready",
            serving_available >= 1 or b.total == 0,
            "MinimumReplicasAvailable" if serving_available >= 1 or b.total == 0 else "NoReplicasAvailable",
            f"{serving_available} serving replicas available",
        ),
        ConditionSpec(
            "Progressing",
            phase is not RolloutPhase.DEGRADED,
            reason if phase is not RolloutPhase.HEALTHY else Reason.ROLLOUT_COMPLETED.value,
            message,
        ),
        ConditionSpec("Paused", phase is RolloutPhase.PAUSED, paused_reason or Reason.NOT_PAUSED.value,
                      message if phase is RolloutPhase.PAUSED else ""),
        ConditionSpec("Healthy", phase is RolloutPhase.HEALTHY, reason, message),
        ConditionSpec(
            "RolledBack",
            rolled_back,
            (s.rollout.reason or Reason.NOT_ROLLED_BACK.value) if rolled_back else Reason.NOT_ROLLED_BACK.value,
            (f"desired revision {s.rollout.rejected_revision} is not served ({s.rollout.message}); serving "
             f"{s.stable_revision}") if rolled_back else "",
        ),
    )
    requeue = min(b.wakeups) if b.wakeups else None
    return Plan(
        state=s,
        phase=phase,
        reason=reason,
        message=message,
        deployments=tuple(deps),
        active_revision=active,
        preview_revision=preview,
        canary_revision=canary,
        desired_revision=b.inp.desired_revision,
        target_revision=target,
        current_step=current_step,
        step_index=step_index,
        step_count=step_count,
        canary_weight=weight,
        conditions=conditions,
        events=tuple(b.events),
        acks=tuple(b.acks),
        analysis_spec=analysis_spec,
        measure=measure,
        requeue_after=requeue,
    )


def deadline_or_wait(b: RolloutContext) -> bool:
    """True if the step's progress deadline passed (the caller then rejects)."""
    left = b.deadline - b.elapsed(b.state.rollout.step_started_at)
    if left <= 0:
        return True
    b.wake_in(min(left, b.inp.poll_seconds))
    return False


def complete(b: RolloutContext, target: str, message: str) -> None:
    s = b.state
    old = s.stable_revision
    b.state = s.evolve(stable_revision=target, current_revision=target, step_index=0,
                       step_started_at=b.now, override_revision=None,
                       last_analysis=s.analysis or s.last_analysis, analysis=None)
    b.event("RolloutCompleted", f"revision {target} promoted (was {old}): {message}")


def analysis_run(b: RolloutContext, run_id: str) -> AnalysisRunState:
    s = b.state
    if s.analysis is None or s.analysis.run_id != run_id:
        b.state = s.evolve(analysis=AnalysisRunState(run_id=run_id, started_at=b.now),
                           last_analysis=s.analysis or s.last_analysis)
    assert b.state.analysis is not None
    return b.state.analysis


def conclude_analysis(b: RolloutContext, verdict: AnalysisVerdict) -> None:
    """The run in flight, with its verdict, becomes the last analysis (it stays in flight too)."""
    run = b.state.analysis
    b.state = b.state.evolve(last_analysis=None if run is None else annotated(run, verdict))


def analysis_outcome(b: RolloutContext, target: str, verdict: AnalysisVerdict, spec: AnalysisSpec,
                     where: str) -> Outcome:
    """Turn a verdict into pass / fail / inconclusive / running, rejecting on failure.

    A run that goes on (running, inconclusive) carries the verdict for status to show.
    """
    if b.state.analysis is not None:
        b.state = b.state.evolve(analysis=annotated(b.state.analysis, verdict))
    if verdict.phase is AnalysisPhase.SUCCESSFUL:
        conclude_analysis(b, verdict)
        b.state = b.state.evolve(analysis=None)
        b.event("AnalysisSuccessful", f"{where}: {verdict.message}")
        return "pass"
    if verdict.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
        conclude_analysis(b, verdict)
        reason = Reason.ANALYSIS_FAILED if verdict.phase is AnalysisPhase.FAILED else Reason.ANALYSIS_ERROR
        b.event(reason.value, f"{where}: {verdict.message}", warning=True)
        reject(b, target, reason, f"{where}: {verdict.message}")
        return "fail"
    if verdict.phase is AnalysisPhase.INCONCLUSIVE:
        s = b.state
        already = (s.last_analysis is not None and s.analysis is not None
                   and s.last_analysis.run_id == s.analysis.run_id
                   and s.last_analysis.phase is AnalysisPhase.INCONCLUSIVE)
        if not already:  # one Event per run, not one per reconcile
            b.event(Reason.ANALYSIS_INCONCLUSIVE.value, f"{where}: {verdict.message}; waiting for promote/abort",
                    warning=True)
        conclude_analysis(b, verdict)
        return "inconclusive"
    if verdict.next_due is not None:
        b.wake_at(verdict.next_due)
    # Also look again soon: async providers (Jobs) finish on their own schedule.
    b.wake_in(b.inp.poll_seconds)
    return "running"


def gate_id(b: RolloutContext, target: str, key: str) -> str:
    return f"{target}/{key}/{b.state.rollout.attempt}"


def run_gate(b: RolloutContext, target: str, spec: AnalysisSpec, key: str,
             where: str) -> tuple[Outcome, AnalysisVerdict | None]:
    """Run (or continue) a one-off analysis gate; a passed gate is remembered for this rollout."""
    run_id = gate_id(b, target, key)
    if run_id in b.state.rollout.passed:
        return "pass", None
    verdict = aggregate_analysis(spec, analysis_run(b, run_id), b.now)
    outcome = analysis_outcome(b, target, verdict, spec, where)
    if outcome == "pass":
        b.state = b.state.evolve(passed=(*b.state.rollout.passed, run_id)[-MAX_PASSED_KEPT:])
    return outcome, verdict


def skip_gate(b: RolloutContext, target: str, key: str) -> None:
    run_id = gate_id(b, target, key)
    b.state = b.state.evolve(passed=(*b.state.rollout.passed, run_id)[-MAX_PASSED_KEPT:], analysis=None,
                             last_analysis=b.state.analysis or b.state.last_analysis)


