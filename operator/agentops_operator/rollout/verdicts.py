"""Analysis verdicts as Argo Rollouts computes them: per metric from its counters, then for the run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .state import AnalysisRunState, MetricState
from .types import AnalysisPhase, AnalysisSpec, MetricSpec


@dataclass(frozen=True)
class MetricVerdict:
    name: str
    phase: AnalysisPhase
    next_due: datetime | None  # None when the metric is finished
    message: str


def metric_verdict(spec: MetricSpec, state: MetricState, started_at: datetime) -> MetricVerdict:
    """Argo-style verdict: failed > failureLimit → Failed, inconclusive > limit → Inconclusive,
    consecutive errors > limit → Error, ``count`` results → Successful, else Running."""
    summary = (
        f"{state.successful} ok, {state.failed} failed, {state.inconclusive} inconclusive, "
        f"{state.errors} errors of {spec.count}"
    )
    last = state.measurements[-1] if state.measurements else None
    detail = f"; last: {last.phase.value} {last.value} {last.message}".rstrip() if last else ""
    if state.failed > spec.failure_limit:
        return MetricVerdict(spec.name, AnalysisPhase.FAILED, None,
                             f"{spec.name}: failed > failureLimit {spec.failure_limit} ({summary}){detail}")
    if state.consecutive_errors > spec.consecutive_error_limit:
        return MetricVerdict(spec.name, AnalysisPhase.ERROR, None,
                             f"{spec.name}: {state.consecutive_errors} consecutive errors ({summary}){detail}")
    if state.inconclusive > spec.inconclusive_limit:
        return MetricVerdict(spec.name, AnalysisPhase.INCONCLUSIVE, None,
                             f"{spec.name}: inconclusive > limit {spec.inconclusive_limit} ({summary}){detail}")
    if state.taken >= spec.count:
        return MetricVerdict(spec.name, AnalysisPhase.SUCCESSFUL, None, f"{spec.name}: passed ({summary})")
    if state.last_measured_at is None:
        due = started_at + timedelta(seconds=spec.initial_delay_seconds)
    else:
        due = state.last_measured_at + timedelta(seconds=spec.interval_seconds)
    return MetricVerdict(spec.name, AnalysisPhase.RUNNING, due, f"{spec.name}: running ({summary})")


@dataclass(frozen=True)
class AnalysisVerdict:
    phase: AnalysisPhase
    metrics: tuple[MetricVerdict, ...]
    due: tuple[str, ...]  # metrics whose next measurement is due now
    next_due: datetime | None  # earliest future measurement
    message: str


def aggregate_analysis(spec: AnalysisSpec, run: AnalysisRunState, now: datetime) -> AnalysisVerdict:
    """Combine metric verdicts: any Failed → Failed, then Error, then Inconclusive; all
    Successful → Successful; otherwise Running. An analysis with no metrics passes."""
    verdicts = tuple(metric_verdict(s, run.metric(s.name), run.started_at) for s in spec.metrics)
    phases = {v.phase for v in verdicts}
    for terminal in (AnalysisPhase.FAILED, AnalysisPhase.ERROR, AnalysisPhase.INCONCLUSIVE):
        if terminal in phases:
            msg = "; ".join(v.message for v in verdicts if v.phase is terminal)
            return AnalysisVerdict(terminal, verdicts, (), None, msg)
    if all(v.phase is AnalysisPhase.SUCCESSFUL for v in verdicts):
        return AnalysisVerdict(AnalysisPhase.SUCCESSFUL, verdicts, (), None,
                               "; ".join(v.message for v in verdicts) or "no metrics")
    running = [v for v in verdicts if v.phase is AnalysisPhase.RUNNING and v.next_due is not None]
    due = tuple(v.name for v in running if v.next_due is not None and v.next_due <= now)
    future = [v.next_due for v in running if v.next_due is not None and v.next_due > now]
    return AnalysisVerdict(AnalysisPhase.RUNNING, verdicts, due, min(future, default=None),
                           "; ".join(v.message for v in verdicts))


def annotated(run: AnalysisRunState, verdict: AnalysisVerdict) -> AnalysisRunState:
    """The run with the verdict's phases and message, as status shows them."""
    phases = {v.name: v.phase for v in verdict.metrics}
    metrics = tuple(m.model_copy(update={"phase": phases.get(m.name)}) for m in run.metrics)
    return run.model_copy(update={"phase": verdict.phase, "message": verdict.message[:4096], "metrics": metrics})
