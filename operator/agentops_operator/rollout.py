"""Pure rollout planning for Agents: no I/O, no clock, no Kubernetes client.

The kopf handler observes the cluster, builds ``PlanInputs``, calls ``plan()`` and applies the
returned ``Plan``. Everything that decides *what* should happen lives here so it can be unit- and
property-tested; the handler only decides *how* to make it so.

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

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

# ---------------------------------------------------------------------------------------------
# Enums
# ---------------------------------------------------------------------------------------------


class StrategyType(StrEnum):
    ROLLING = "rolling"
    CANARY = "canary"
    BLUE_GREEN = "blueGreen"


class Phase(StrEnum):
    PROGRESSING = "Progressing"
    HEALTHY = "Healthy"
    PAUSED = "Paused"
    DEGRADED = "Degraded"


class Role(StrEnum):
    """What a planned Deployment is for; the handler derives names and Service selectors from it."""

    STABLE = "stable"
    CANARY = "canary"
    PREVIEW = "preview"
    ROLLING = "rolling"  # the single in-place Deployment of the rolling strategy
    RETIRED = "retired"  # kept (possibly at zero) for inspection or a quick switch-back


class MeasurementPhase(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class AnalysisPhase(StrEnum):
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class Verb(StrEnum):
    PROMOTE = "promote"
    ABORT = "abort"
    RETRY = "retry"
    UNDO = "undo"


class Reason(StrEnum):
    NEW_REVISION = "NewRevision"
    ROLLOUT_IN_PROGRESS = "RolloutInProgress"
    ROLLOUT_COMPLETED = "RolloutCompleted"
    SCALING = "Scaling"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    ANALYSIS_FAILED = "AnalysisFailed"
    ANALYSIS_ERROR = "AnalysisError"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    ABORTED_BY_USER = "AbortedByUser"
    UNDONE_BY_USER = "UndoneByUser"
    PAUSED_BY_STEP = "PausedByStep"
    AWAITING_PROMOTION = "AwaitingPromotion"
    WAITING_AUTO_PROMOTION = "WaitingForAutoPromotion"
    NOT_ROLLED_BACK = "NotRolledBack"
    NOT_PAUSED = "NotPaused"
    INITIAL_DEPLOY_STALLED = "InitialDeployStalled"


# Reasons that count as a failure (phase Degraded) rather than a deliberate user action.
FAILURE_REASONS = frozenset(
    {Reason.PROGRESS_DEADLINE_EXCEEDED, Reason.ANALYSIS_FAILED, Reason.ANALYSIS_ERROR, Reason.ABORTED_BY_USER}
)

# ---------------------------------------------------------------------------------------------
# Weight → replicas
# ---------------------------------------------------------------------------------------------


def split_replicas(total: int, weight_percent: int) -> tuple[int, int]:
    """Split ``total`` replicas into ``(canary, stable)`` for a canary weight without a mesh.

    Rules (weight = canary replicas / total, as Argo Rollouts does without a traffic router):

    * canary = ceil(total * weight / 100): any non-zero weight with total >= 1 gets >= 1 canary.
    * weight 0 → (0, total); weight 100 → (total, 0).
    * Surge rule: for 0 < weight < 100 the stable revision keeps at least one replica, so with a
      small total (e.g. 1 replica at 50%) the sum is ``total + 1``. That is the only case where
      ``canary + stable != total``; the sum never exceeds ``total + 1``.
    """
    if total < 0:
        raise ValueError(f"total replicas must be >= 0, got {total}")
    if not 0 <= weight_percent <= 100:
        raise ValueError(f"weight must be within 0..100, got {weight_percent}")
    canary = (total * weight_percent + 99) // 100  # integer ceil: no float rounding surprises
    stable = total - canary
    if 0 < weight_percent < 100 and total > 0 and stable == 0:
        stable = 1  # keep the stable revision serving until the weight reaches 100
    return canary, stable


def effective_weight(canary_replicas: int, stable_replicas: int) -> int:
    """The traffic share (percent, rounded down) the canary actually gets from replica counts."""
    total = canary_replicas + stable_replicas
    return 0 if total <= 0 else (100 * canary_replicas) // total


def queue_depth_replicas(open_tasks: int, tasks_per_replica: int, min_replicas: int, max_replicas: int) -> int:
    """Replicas for queue-depth autoscaling: ceil(open / per-replica), clamped to [min, max]."""
    if tasks_per_replica < 1:
        raise ValueError("tasksPerReplica must be >= 1")
    if min_replicas < 0 or max_replicas < min_replicas:
        raise ValueError(f"need 0 <= minReplicas <= maxReplicas, got {min_replicas}..{max_replicas}")
    wanted = math.ceil(max(open_tasks, 0) / tasks_per_replica)
    return max(min_replicas, min(max_replicas, wanted))


# ---------------------------------------------------------------------------------------------
# Revision hashing, history and config merge
# ---------------------------------------------------------------------------------------------

# Same alphabet as Kubernetes' rand.SafeEncodeString (no vowels, no confusable digits), so a
# revision looks like a pod-template-hash and never spells words.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
REVISION_HASH_LENGTH = 10


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data gives equal text in every process."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def revision_hash(pod_template: Mapping[str, Any], merged_config: Mapping[str, Any]) -> str:
    """Short deterministic name for a revision: everything that affects pods, config included.

    Uses sha256 (not Python's ``hash()``, which is salted per process) over canonical JSON.
    """
    digest = hashlib.sha256(
        canonical_json({"template": pod_template, "config": merged_config}).encode()
    ).digest()
    number = int.from_bytes(digest[:16], "big")
    chars = []
    for _ in range(REVISION_HASH_LENGTH):
        number, rem = divmod(number, len(_SAFE_ALPHABET))
        chars.append(_SAFE_ALPHABET[rem])
    return "".join(chars)


@dataclass(frozen=True)
class RevisionRecord:
    """One ControllerRevision: its monotonically increasing number and the revision hash."""

    number: int
    revision: str


def next_revision_number(history: Iterable[RevisionRecord]) -> int:
    return max((r.number for r in history), default=0) + 1


def record_revision(history: Sequence[RevisionRecord], revision: str) -> tuple[RevisionRecord, bool]:
    """The record ``revision`` should have as the newest: reuse and renumber like StatefulSets.

    Returns ``(record, changed)``. An existing revision that is already the newest keeps its
    number; an older one is bumped to ``max + 1`` so "undo to previous" keeps meaning previous.
    """
    existing = next((r for r in history if r.revision == revision), None)
    newest = max((r.number for r in history), default=0)
    if existing is not None and existing.number == newest:
        return existing, False
    return RevisionRecord(newest + 1, revision), True


def revisions_to_prune(history: Sequence[RevisionRecord], limit: int, live: Iterable[str | None]) -> list[str]:
    """Oldest revisions beyond ``limit`` that nothing live (stable/current/desired) still needs."""
    if limit < 0:
        raise ValueError("revisionHistoryLimit must be >= 0")
    keep_live = {r for r in live if r}
    candidates = sorted((r for r in history if r.revision not in keep_live), key=lambda r: r.number)
    excess = len(candidates) - limit
    return [r.revision for r in candidates[:excess]] if excess > 0 else []


def resolve_undo_target(
    history: Sequence[RevisionRecord], stable: str | None, to_number: int | None
) -> str | None:
    """The revision ``undo [--to-revision N]`` means, or None if there is no such revision.

    Without N: the newest revision older than the stable one (``kubectl rollout undo``).
    """
    if to_number is not None:
        return next((r.revision for r in history if r.number == to_number), None)
    stable_number = next((r.number for r in history if r.revision == stable), None)
    older = [
        r
        for r in history
        if r.revision != stable and (stable_number is None or r.number < stable_number)
    ]
    return max(older, key=lambda r: r.number).revision if older else None


def merge_config(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge config layers (global → environment → instance); later layers win key by key.

    Semantics are JSON Merge Patch (RFC 7386): nested mappings merge recursively, any other value
    replaces, and an explicit ``None`` in a later layer removes the key.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged = _merge_patch(merged, layer)
    return merged


def _merge_patch(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_patch(out[key], value)
        elif isinstance(value, Mapping):
            out[key] = _merge_patch({}, value)  # drops nested Nones too
        else:
            out[key] = value
    return out


def config_provenance(layers: Sequence[tuple[str, Mapping[str, Any] | None]]) -> dict[str, str]:
    """Which layer the final value of each (dotted) key came from, for ``agent status``."""
    source: dict[str, str] = {}

    def walk(prefix: str, patch: Mapping[str, Any], layer: str) -> None:
        for key, value in patch.items():
            path = f"{prefix}{key}"
            if value is None:
                for k in [k for k in source if k == path or k.startswith(path + ".")]:
                    del source[k]
            elif isinstance(value, Mapping):
                for k in [k for k in source if k == path]:
                    del source[k]  # a scalar replaced by a mapping
                walk(path + ".", value, layer)
            else:
                for k in [k for k in source if k.startswith(path + ".")]:
                    del source[k]  # a mapping replaced by a scalar
                source[path] = layer

    for name, layer in layers:
        if layer:
            walk("", layer, name)
    return source


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------

MAX_MEASUREMENTS_KEPT = 10


@dataclass(frozen=True)
class MetricSpec:
    """Timing and limits of one metric; the provider details live in the model, not here."""

    name: str
    count: int = 1
    interval_seconds: float = 10.0
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    initial_delay_seconds: float = 0.0


@dataclass(frozen=True)
class AnalysisSpec:
    metrics: tuple[MetricSpec, ...]


@dataclass(frozen=True)
class Measurement:
    phase: MeasurementPhase
    at: datetime
    value: str = ""
    message: str = ""


@dataclass(frozen=True)
class MetricState:
    """Counters plus the last few measurements; counters keep the verdict exact after trimming."""

    name: str
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    last_measured_at: datetime | None = None
    measurements: tuple[Measurement, ...] = ()

    @property
    def taken(self) -> int:
        # Errors are retried and do not use up ``count``.
        return self.successful + self.failed + self.inconclusive


def record_measurement(state: MetricState, m: Measurement, keep: int = MAX_MEASUREMENTS_KEPT) -> MetricState:
    """Add one measurement, keeping at most ``keep`` of them (status must stay bounded)."""
    counts = {
        MeasurementPhase.SUCCESSFUL: "successful",
        MeasurementPhase.FAILED: "failed",
        MeasurementPhase.INCONCLUSIVE: "inconclusive",
        MeasurementPhase.ERROR: "errors",
    }
    attr = counts[m.phase]
    kept = (*state.measurements, m)[-keep:] if keep > 0 else ()
    return replace(
        state,
        **{attr: getattr(state, attr) + 1},
        consecutive_errors=state.consecutive_errors + 1 if m.phase is MeasurementPhase.ERROR else 0,
        last_measured_at=m.at,
        measurements=kept,
    )


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
class AnalysisRunState:
    """One execution of an analysis; ``run_id`` changes with revision, step and retry attempt."""

    run_id: str
    started_at: datetime
    metrics: tuple[MetricState, ...] = ()

    def metric(self, name: str) -> MetricState:
        return next((m for m in self.metrics if m.name == name), MetricState(name))

    def with_measurement(self, name: str, m: Measurement, keep: int = MAX_MEASUREMENTS_KEPT) -> AnalysisRunState:
        updated = record_measurement(self.metric(name), m, keep)
        others = tuple(x for x in self.metrics if x.name != name)
        return replace(self, metrics=(*others, updated))


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


# ---------------------------------------------------------------------------------------------
# Strategy description (converted from the CRD model by the handler)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetWeightStep:
    weight: int


@dataclass(frozen=True)
class PauseStep:
    duration_seconds: float | None = None  # None: until promoted


@dataclass(frozen=True)
class AnalysisStep:
    analysis: AnalysisSpec


Step = SetWeightStep | PauseStep | AnalysisStep


@dataclass(frozen=True)
class CanarySpec:
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class BlueGreenSpec:
    auto_promotion_enabled: bool = True
    auto_promotion_seconds: float | None = None
    preview_replica_count: int | None = None  # None: full size
    scale_down_delay_seconds: float = 30.0
    pre_promotion_analysis: AnalysisSpec | None = None
    post_promotion_analysis: AnalysisSpec | None = None


@dataclass(frozen=True)
class RollingSpec:
    analysis: AnalysisSpec | None = None  # post-update analysis


@dataclass(frozen=True)
class StrategySpec:
    type: StrategyType = StrategyType.ROLLING
    progress_deadline_seconds: float = 600.0
    canary: CanarySpec = field(default_factory=CanarySpec)
    blue_green: BlueGreenSpec = field(default_factory=BlueGreenSpec)
    rolling: RollingSpec = field(default_factory=RollingSpec)


def describe_step(step: Step) -> str:
    if isinstance(step, SetWeightStep):
        return f"setWeight {step.weight}"
    if isinstance(step, PauseStep):
        return "pause" if step.duration_seconds is None else f"pause {step.duration_seconds:g}s"
    return "analysis " + ",".join(m.name for m in step.analysis.metrics)


# ---------------------------------------------------------------------------------------------
# Observations, commands, persisted state
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentObservation:
    """What the handler saw of one owned Deployment (keyed by the revision its template runs)."""

    revision: str
    spec_replicas: int
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    generation: int = 1
    observed_generation: int = 1

    def settled(self, replicas: int) -> bool:
        """The controller caught up with our spec and ``replicas`` pods of this template are
        available with no pods of other templates left (matters for in-place rolling)."""
        return (
            self.spec_replicas == replicas
            and self.observed_generation >= self.generation
            and self.updated_replicas >= replicas
            and self.available_replicas >= replicas
            and self.replicas <= replicas
        )


@dataclass(frozen=True)
class Command:
    """A verb the CLI set declaratively (annotation) that status has not acknowledged yet."""

    verb: Verb
    nonce: str
    full: bool = False  # promote --full
    to_revision: int | None = None  # undo --to-revision


@dataclass(frozen=True)
class CommandAck:
    verb: Verb
    nonce: str
    applied: bool
    message: str


@dataclass(frozen=True)
class RolloutState:
    """Everything the planner remembers between reconciles (persisted in Agent status)."""

    stable_revision: str | None = None
    current_revision: str | None = None
    step_index: int = 0
    step_started_at: datetime | None = None
    attempt: int = 0
    rejected_revision: str | None = None  # desired revision we rolled back from / aborted
    override_revision: str | None = None  # undo target, served instead of the desired one
    reason: str | None = None  # why rejected/overridden (a Reason value)
    message: str = ""
    ready_at: datetime | None = None  # blue-green: preview became ready (auto-promotion clock)
    switched_at: datetime | None = None  # blue-green: active Service switched to the new revision
    scale_down_revision: str | None = None  # blue-green: old revision kept until scale_down_at
    scale_down_at: datetime | None = None
    stalled: bool = False  # initial deploy past its deadline (nothing to roll back to)
    passed: tuple[str, ...] = ()  # analysis run ids that passed (or were skipped) this rollout
    analysis: AnalysisRunState | None = None
    last_analysis: AnalysisRunState | None = None  # finished run, kept for status
    last_analysis_phase: AnalysisPhase | None = None
    last_analysis_message: str = ""


@dataclass(frozen=True)
class PlanInputs:
    now: datetime
    strategy: StrategySpec
    desired_revision: str
    replicas: int
    state: RolloutState = field(default_factory=RolloutState)
    deployments: Mapping[str, DeploymentObservation] = field(default_factory=dict)
    commands: tuple[Command, ...] = ()
    history: tuple[RevisionRecord, ...] = ()
    poll_seconds: float = 5.0  # how often to look again while waiting on pods


# ---------------------------------------------------------------------------------------------
# Plan (output)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentTarget:
    revision: str
    replicas: int
    role: Role


@dataclass(frozen=True)
class ConditionSpec:
    type: str
    status: bool
    reason: str
    message: str = ""


@dataclass(frozen=True)
class EventSpec:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    state: RolloutState
    phase: Phase
    reason: str
    message: str
    deployments: tuple[DeploymentTarget, ...]
    active_revision: str | None  # Service selector revision; None: every pod of the Agent
    preview_revision: str | None  # preview Service (blue-green); None: no preview Service
    canary_revision: str | None  # canary Service (analysis target); None: no canary Service
    desired_revision: str
    target_revision: str | None
    current_step: str  # human-readable step
    step_index: int | None
    step_count: int
    canary_weight: int | None
    conditions: tuple[ConditionSpec, ...]
    events: tuple[EventSpec, ...]
    acks: tuple[CommandAck, ...]
    analysis_spec: AnalysisSpec | None  # the analysis whose run is in ``state.analysis``
    measure: tuple[str, ...]  # metric names to measure now
    requeue_after: float | None

    def deployment(self, revision: str) -> DeploymentTarget | None:
        return next((d for d in self.deployments if d.revision == revision), None)

    def replicas_by_revision(self) -> dict[str, int]:
        return {d.revision: d.replicas for d in self.deployments}


# ---------------------------------------------------------------------------------------------
# Planner
# ---------------------------------------------------------------------------------------------


class _Builder:
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
        self.acks.append(CommandAck(cmd.verb, cmd.nonce, applied, message))
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
        o = self.obs(revision)
        return o is not None and o.settled(replicas)

    @property
    def total(self) -> int:
        return self.inp.replicas

    @property
    def deadline(self) -> float:
        return self.inp.strategy.progress_deadline_seconds

    def target(self) -> str:
        s = self.state
        if s.override_revision:
            return s.override_revision
        if s.rejected_revision and s.rejected_revision == self.inp.desired_revision and s.stable_revision:
            return s.stable_revision
        return self.inp.desired_revision


def plan(inp: PlanInputs) -> Plan:
    """Decide the next step of an Agent's rollout. Pure: same inputs, same plan."""
    if inp.replicas < 0:
        raise ValueError("replicas must be >= 0")
    b = _Builder(inp)
    _forget_stale_rejection(b)
    _handle_abort_retry_undo(b)
    target = b.target()
    stable = b.state.stable_revision
    if target != b.state.current_revision:
        _start_rollout(b, target)
    strategy = inp.strategy.type
    if stable is None or target == stable:
        result = _plan_idle_or_direct(b, target)
    elif b.state.override_revision == target:
        result = _plan_direct(b, target)
    elif strategy is StrategyType.CANARY:
        result = _plan_canary(b, target)
    elif strategy is StrategyType.BLUE_GREEN:
        result = _plan_blue_green(b, target)
    else:
        result = _plan_rolling(b, target)
    # Commands nobody could use are still acknowledged, so the CLI does not wait forever.
    for cmd in list(b.pending):
        b.ack(cmd, False, f"{cmd.verb.value}: nothing to {cmd.verb.value} in phase {result.phase.value}")
    return replace(result, acks=tuple(b.acks))


def _forget_stale_rejection(b: _Builder) -> None:
    """A new desired revision (Git moved on) clears rollback/undo state: roll it out normally."""
    s = b.state
    if s.rejected_revision and s.rejected_revision != b.inp.desired_revision:
        b.state = replace(s, rejected_revision=None, override_revision=None, reason=None, message="")
    elif s.override_revision and s.override_revision == b.inp.desired_revision:
        b.state = replace(s, override_revision=None)


def _reject(b: _Builder, revision: str, reason: Reason, message: str) -> None:
    """Stop rolling ``revision`` out: from now on the stable revision is the target again.

    ``revision`` is the desired one or an undo target; either way the desired revision is what
    must not be rolled out again until the spec changes or someone retries.
    """
    s = b.state
    b.state = replace(
        s,
        rejected_revision=b.inp.desired_revision,
        override_revision=None,
        reason=reason.value,
        message=message,
        analysis=None,
        last_analysis=s.analysis or s.last_analysis,
    )
    verb = "aborted" if reason is Reason.ABORTED_BY_USER else "rolled back"
    b.event("RolledBack", f"revision {revision} {verb}, serving {s.stable_revision}: {message}", warning=True)


def _start_rollout(b: _Builder, target: str) -> None:
    s = b.state
    b.state = replace(
        s,
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


def _handle_abort_retry_undo(b: _Builder) -> None:
    s = b.state
    in_flight = s.current_revision is not None and s.current_revision != s.stable_revision
    abort = b.take(Verb.ABORT)
    if abort:
        if in_flight and s.stable_revision and s.current_revision:
            _reject(b, s.current_revision, Reason.ABORTED_BY_USER, "aborted by user")
            b.ack(abort, True, f"aborted rollout of {s.current_revision}")
        else:
            b.ack(abort, False, "abort: no rollout in progress")
    retry = b.take(Verb.RETRY)
    if retry:
        s = b.state
        if s.rejected_revision or s.override_revision:
            b.state = replace(s, rejected_revision=None, override_revision=None, reason=None, message="",
                              attempt=s.attempt + 1, current_revision=None)
            b.ack(retry, True, f"retrying revision {b.inp.desired_revision}")
        elif s.analysis is not None and in_flight:
            # Re-run the analysis the rollout is waiting on (e.g. inconclusive): new run id.
            b.state = replace(s, attempt=s.attempt + 1, analysis=None, last_analysis=s.analysis)
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
            b.state = replace(s, rejected_revision=None, override_revision=None, reason=None, message="")
            b.ack(undo, True, f"undo: {to} is the desired revision; rolling it out")
        else:
            b.state = replace(s, rejected_revision=b.inp.desired_revision,
                              override_revision=None if to == s.stable_revision else to,
                              reason=Reason.UNDONE_BY_USER.value, message=f"undone to revision {to} by user")
            b.event("Undo", f"undo to revision {to}; desired {b.inp.desired_revision} is not served")
            b.ack(undo, True, f"undo to revision {to}")


# -- shared result assembly --------------------------------------------------------------------


def _finish(
    b: _Builder,
    *,
    phase: Phase,
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
    if s.rejected_revision and s.rejected_revision not in planned and not rolling:
        deps.append(DeploymentTarget(s.rejected_revision, 0, Role.RETIRED))
    serving = [d for d in deps if d.role is not Role.RETIRED and d.role is not Role.PREVIEW]
    if active is not None:
        serving = [d for d in deps if d.revision == active]
    serving_available = sum(min(b.available(d.revision), d.replicas) for d in serving)
    rolled_back = s.rejected_revision is not None and s.reason is not None
    conditions = (
        ConditionSpec(
            "Ready",
            serving_available >= 1 or b.total == 0,
            "MinimumReplicasAvailable" if serving_available >= 1 or b.total == 0 else "NoReplicasAvailable",
            f"{serving_available} serving replicas available",
        ),
        ConditionSpec(
            "Progressing",
            phase is not Phase.DEGRADED,
            reason if phase is not Phase.HEALTHY else Reason.ROLLOUT_COMPLETED.value,
            message,
        ),
        ConditionSpec("Paused", phase is Phase.PAUSED, paused_reason or Reason.NOT_PAUSED.value,
                      message if phase is Phase.PAUSED else ""),
        ConditionSpec("Healthy", phase is Phase.HEALTHY, reason, message),
        ConditionSpec(
            "RolledBack",
            rolled_back,
            (s.reason or Reason.NOT_ROLLED_BACK.value) if rolled_back else Reason.NOT_ROLLED_BACK.value,
            (f"desired revision {s.rejected_revision} is not served ({s.message}); serving "
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


def _main_role(b: _Builder) -> Role:
    return Role.ROLLING if b.inp.strategy.type is StrategyType.ROLLING else Role.STABLE


def _plan_idle_or_direct(b: _Builder, target: str) -> Plan:
    """No rollout in flight (target == stable), or the very first deploy (no stable yet)."""
    s = b.state
    role = _main_role(b)
    deps = [DeploymentTarget(target, b.total, role)]
    active = target if b.inp.strategy.type is StrategyType.BLUE_GREEN else None
    # Blue-green keeps the previous revision for scaleDownDelaySeconds after a switch.
    if s.scale_down_revision and s.scale_down_at and s.scale_down_revision != target:
        if b.now < s.scale_down_at:
            deps.append(DeploymentTarget(s.scale_down_revision, b.total, Role.RETIRED))
            b.wake_at(s.scale_down_at)
        else:
            b.state = s = replace(s, scale_down_revision=None, scale_down_at=None)
    settled = b.settled(target, b.total)
    if s.stable_revision is None:
        # First deploy: nothing to roll back to, so a missed deadline only marks it Degraded.
        if settled:
            b.state = s = replace(s, stable_revision=target, current_revision=target, stalled=False)
            b.event("RolloutCompleted", f"revision {target} is available")
            return _finish(b, phase=Phase.HEALTHY, reason=Reason.ROLLOUT_COMPLETED.value,
                           message=f"revision {target} available", deployments=deps, target=target,
                           active=active)
        over = b.elapsed(s.step_started_at) >= b.deadline
        if over and not s.stalled:
            b.state = s = replace(s, stalled=True)
            b.event(Reason.INITIAL_DEPLOY_STALLED.value,
                    f"revision {target} not available within {b.deadline:g}s", warning=True)
        b.wake_in(b.inp.poll_seconds)
        if over:
            return _finish(b, phase=Phase.DEGRADED, reason=Reason.PROGRESS_DEADLINE_EXCEEDED.value,
                           message=f"revision {target}: {b.available(target)}/{b.total} available after "
                                   f"{b.deadline:g}s; nothing to roll back to",
                           deployments=deps, target=target, active=active)
        return _finish(b, phase=Phase.PROGRESSING, reason=Reason.NEW_REVISION.value,
                       message=f"deploying revision {target}: {b.available(target)}/{b.total} available",
                       deployments=deps, target=target, active=active)
    if s.rejected_revision and s.reason:
        # Serving stable while the desired revision is rejected: Degraded for failures/abort so
        # GitOps users see the drift; an explicit undo is the user's choice and is Healthy.
        failed = s.reason in {r.value for r in FAILURE_REASONS}
        if not settled:
            b.wake_in(b.inp.poll_seconds)
        return _finish(b, phase=Phase.DEGRADED if failed else (Phase.HEALTHY if settled else Phase.PROGRESSING),
                       reason=s.reason,
                       message=f"serving {target}; desired revision {s.rejected_revision} not rolled out: "
                               f"{s.message}",
                       deployments=deps, target=target, active=active)
    if settled:
        return _finish(b, phase=Phase.HEALTHY, reason=Reason.ROLLOUT_COMPLETED.value,
                       message=f"revision {target}: {b.available(target)}/{b.total} available",
                       deployments=deps, target=target, active=active)
    b.wake_in(b.inp.poll_seconds)
    return _finish(b, phase=Phase.PROGRESSING, reason=Reason.SCALING.value,
                   message=f"revision {target}: {b.available(target)}/{b.total} available",
                   deployments=deps, target=target, active=active)


def _clock(now: datetime, seconds: float) -> str:
    """An absolute time for messages: a countdown would change status on every reconcile."""
    return (now + timedelta(seconds=seconds)).strftime("%H:%M:%SZ")


def _deadline_or_wait(b: _Builder) -> bool:
    """True if the step's progress deadline passed (the caller then rejects)."""
    left = b.deadline - b.elapsed(b.state.step_started_at)
    if left <= 0:
        return True
    b.wake_in(min(left, b.inp.poll_seconds))
    return False


def _complete(b: _Builder, target: str, message: str) -> None:
    s = b.state
    old = s.stable_revision
    b.state = replace(s, stable_revision=target, current_revision=target, step_index=0,
                      step_started_at=b.now, override_revision=None,
                      last_analysis=s.analysis or s.last_analysis, analysis=None)
    b.event("RolloutCompleted", f"revision {target} promoted (was {old}): {message}")


def _plan_direct(b: _Builder, target: str) -> Plan:
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
            b.state = replace(b.state, scale_down_revision=stable, scale_down_at=b.now + delay)
        _complete(b, target, "undo")
        return _plan_idle_or_direct(b, target)
    if _deadline_or_wait(b):
        _reject(b, target, Reason.PROGRESS_DEADLINE_EXCEEDED,
                f"undo target {target} not available within {b.deadline:g}s")
        b.state = replace(b.state, current_revision=stable)
        return _plan_idle_or_direct(b, stable)
    return _finish(b, phase=Phase.PROGRESSING, reason=Reason.UNDONE_BY_USER.value,
                   message=f"undo to {target}: {b.available(target)}/{b.total} available",
                   deployments=deps, target=target, active=stable if bg else None,
                   preview=target if bg else None,
                   canary=target if b.inp.strategy.type is StrategyType.CANARY else None, current_step="undo")


def _analysis_run(b: _Builder, run_id: str) -> AnalysisRunState:
    s = b.state
    if s.analysis is None or s.analysis.run_id != run_id:
        b.state = replace(s, analysis=AnalysisRunState(run_id, b.now),
                          last_analysis=s.analysis or s.last_analysis)
    assert b.state.analysis is not None
    return b.state.analysis


def _conclude_analysis(b: _Builder, verdict: AnalysisVerdict) -> None:
    s = b.state
    b.state = replace(s, last_analysis=s.analysis, last_analysis_phase=verdict.phase,
                      last_analysis_message=verdict.message)


# -- canary ------------------------------------------------------------------------------------


def _weight_at(steps: Sequence[Step], index: int) -> int:
    weight = 0
    for step in steps[: index + 1]:
        if isinstance(step, SetWeightStep):
            weight = step.weight
    return weight


def canary_replicas(total: int, weight: int, canary_available: int) -> tuple[int, int]:
    """Desired (canary, stable) while shifting weight: stable never drops below what keeps
    ``total`` pods available, so a canary that never gets ready costs no capacity."""
    canary, stable = split_replicas(total, weight)
    keep = max(0, total - min(canary_available, canary))
    return canary, min(total, max(stable, keep))


def _plan_canary(b: _Builder, target: str) -> Plan:
    steps = b.inp.strategy.canary.steps
    stable = b.state.stable_revision
    assert stable is not None
    promote = b.take(Verb.PROMOTE)
    if promote:
        if promote.full:
            b.state = replace(b.state, step_index=len(steps), step_started_at=b.now, analysis=None)
            b.ack(promote, True, "promoted fully: remaining steps skipped")
        elif b.state.step_index < len(steps):
            skipped = describe_step(steps[b.state.step_index])
            b.state = replace(b.state, step_index=b.state.step_index + 1, step_started_at=b.now, analysis=None)
            b.ack(promote, True, f"promoted: step '{skipped}' completed")
        else:
            b.ack(promote, False, "promote: already promoting to full")

    def result(phase: Phase, reason: str, message: str, weight: int, *, paused: str | None = None,
               spec: AnalysisSpec | None = None, measure: tuple[str, ...] = ()) -> Plan:
        c_avail = b.available(target)
        canary, stable_n = canary_replicas(b.total, weight, c_avail)
        idx = b.state.step_index
        label = describe_step(steps[idx]) if idx < len(steps) else "promote"
        return _finish(
            b, phase=phase, reason=reason, message=message,
            deployments=[DeploymentTarget(stable, stable_n, Role.STABLE),
                         DeploymentTarget(target, canary, Role.CANARY)],
            target=target, canary=target, current_step=label, step_index=idx,
            step_count=len(steps), weight=weight, analysis_spec=spec, measure=measure, paused_reason=paused,
        )

    while True:
        idx = b.state.step_index
        if idx >= len(steps):
            # All steps done: canary to full size, then it becomes stable.
            if b.settled(target, b.total):
                _complete(b, target, "all canary steps passed")
                return _plan_idle_or_direct(b, target)
            if _deadline_or_wait(b):
                break
            return result(Phase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value,
                          f"promoting {target}: {b.available(target)}/{b.total} available", 100)
        step = steps[idx]
        weight = _weight_at(steps, idx)
        if isinstance(step, SetWeightStep):
            want, _ = split_replicas(b.total, weight)
            if b.settled(target, want):
                b.event("StepCompleted", f"step {idx + 1}/{len(steps)}: weight {weight}% reached")
                b.state = replace(b.state, step_index=idx + 1, step_started_at=b.now)
                continue
            if _deadline_or_wait(b):
                break
            return result(Phase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value,
                          f"step {idx + 1}/{len(steps)}: weight {weight}%, canary "
                          f"{b.available(target)}/{want} available", weight)
        if isinstance(step, PauseStep):
            if step.duration_seconds is None:
                return result(Phase.PAUSED, Reason.AWAITING_PROMOTION.value,
                              f"step {idx + 1}/{len(steps)}: paused until promoted", weight,
                              paused=Reason.AWAITING_PROMOTION.value)
            left = step.duration_seconds - b.elapsed(b.state.step_started_at)
            if left <= 0:
                b.event("StepCompleted", f"step {idx + 1}/{len(steps)}: pause elapsed")
                b.state = replace(b.state, step_index=idx + 1, step_started_at=b.now)
                continue
            b.wake_in(left)
            return result(Phase.PAUSED, Reason.PAUSED_BY_STEP.value,
                          f"step {idx + 1}/{len(steps)}: paused until {_clock(b.now, left)}", weight,
                          paused=Reason.PAUSED_BY_STEP.value)
        # Analysis step
        run = _analysis_run(b, f"{target}/step-{idx}/{b.state.attempt}")
        verdict = aggregate_analysis(step.analysis, run, b.now)
        outcome = _analysis_outcome(b, target, verdict, step.analysis, f"step {idx + 1}/{len(steps)}")
        if outcome == "pass":
            b.state = replace(b.state, step_index=idx + 1, step_started_at=b.now)
            continue
        if outcome == "fail":
            return _after_reject(b)
        phase, reason, paused = (
            (Phase.PAUSED, Reason.ANALYSIS_INCONCLUSIVE.value, Reason.ANALYSIS_INCONCLUSIVE.value)
            if outcome == "inconclusive" else (Phase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value, None)
        )
        return result(phase, reason, f"step {idx + 1}/{len(steps)}: {verdict.message}", weight,
                      paused=paused, spec=step.analysis, measure=verdict.due)
    # Progress deadline passed while waiting on canary pods.
    _reject(b, target, Reason.PROGRESS_DEADLINE_EXCEEDED,
            f"canary {target}: {b.available(target)} available after {b.deadline:g}s")
    return _after_reject(b)


def _analysis_outcome(b: _Builder, target: str, verdict: AnalysisVerdict, spec: AnalysisSpec, where: str) -> str:
    """Turn a verdict into pass / fail / inconclusive / running, rejecting on failure."""
    if verdict.phase is AnalysisPhase.SUCCESSFUL:
        _conclude_analysis(b, verdict)
        b.state = replace(b.state, analysis=None)
        b.event("AnalysisSuccessful", f"{where}: {verdict.message}")
        return "pass"
    if verdict.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
        _conclude_analysis(b, verdict)
        reason = Reason.ANALYSIS_FAILED if verdict.phase is AnalysisPhase.FAILED else Reason.ANALYSIS_ERROR
        b.event(reason.value, f"{where}: {verdict.message}", warning=True)
        _reject(b, target, reason, f"{where}: {verdict.message}")
        return "fail"
    if verdict.phase is AnalysisPhase.INCONCLUSIVE:
        s = b.state
        already = (s.last_analysis is not None and s.analysis is not None
                   and s.last_analysis.run_id == s.analysis.run_id
                   and s.last_analysis_phase is AnalysisPhase.INCONCLUSIVE)
        if not already:  # one Event per run, not one per reconcile
            b.event(Reason.ANALYSIS_INCONCLUSIVE.value, f"{where}: {verdict.message}; waiting for promote/abort",
                    warning=True)
        _conclude_analysis(b, verdict)
        return "inconclusive"
    if verdict.next_due is not None:
        b.wake_at(verdict.next_due)
    # Also look again soon: async providers (Jobs) finish on their own schedule.
    b.wake_in(b.inp.poll_seconds)
    return "running"


def _after_reject(b: _Builder) -> Plan:
    stable = b.state.stable_revision
    assert stable is not None
    b.state = replace(b.state, current_revision=stable, step_index=0, step_started_at=b.now,
                      ready_at=None, switched_at=None)
    return _plan_idle_or_direct(b, stable)


# -- blue-green --------------------------------------------------------------------------------

_BG_PREVIEW, _BG_PROMOTING, _BG_SWITCHED = 0, 1, 2
_BG_STEP_NAMES = ("preview", "promoting", "post-promotion")


def _gate_id(b: _Builder, target: str, key: str) -> str:
    return f"{target}/{key}/{b.state.attempt}"


def _run_gate(b: _Builder, target: str, spec: AnalysisSpec, key: str, where: str) -> tuple[str, AnalysisVerdict | None]:
    """Run (or continue) a one-off analysis gate; a passed gate is remembered for this rollout."""
    run_id = _gate_id(b, target, key)
    if run_id in b.state.passed:
        return "pass", None
    verdict = aggregate_analysis(spec, _analysis_run(b, run_id), b.now)
    outcome = _analysis_outcome(b, target, verdict, spec, where)
    if outcome == "pass":
        b.state = replace(b.state, passed=(*b.state.passed, run_id))
    return outcome, verdict


def _skip_gate(b: _Builder, target: str, key: str) -> None:
    run_id = _gate_id(b, target, key)
    b.state = replace(b.state, passed=(*b.state.passed, run_id), analysis=None,
                      last_analysis=b.state.analysis or b.state.last_analysis)


def _plan_blue_green(b: _Builder, target: str) -> Plan:
    bg = b.inp.strategy.blue_green
    stable = b.state.stable_revision
    assert stable is not None
    preview_n = b.total if bg.preview_replica_count is None else min(bg.preview_replica_count, b.total)
    promote = b.take(Verb.PROMOTE)

    def result(phase: Phase, reason: str, message: str, *, preview_replicas: int, active: str,
               paused: str | None = None, spec: AnalysisSpec | None = None,
               measure: tuple[str, ...] = ()) -> Plan:
        idx = b.state.step_index
        switched = active != stable
        return _finish(
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
        return result(Phase.PAUSED if inconclusive else Phase.PROGRESSING,
                      Reason.ANALYSIS_INCONCLUSIVE.value if inconclusive else Reason.ROLLOUT_IN_PROGRESS.value,
                      f"{where} analysis: {verdict.message if verdict else ''}", preview_replicas=preview_replicas,
                      active=active, paused=Reason.ANALYSIS_INCONCLUSIVE.value if inconclusive else None,
                      spec=spec, measure=verdict.due if verdict else ())

    def go_promoting(message: str) -> None:
        b.state = replace(b.state, step_index=_BG_PROMOTING, step_started_at=b.now)
        b.event("Promoting", message)

    if b.state.step_index == _BG_PREVIEW:
        if promote:
            # promote skips the pre-promotion gate; --full also skips the post-promotion one.
            _skip_gate(b, target, "pre")
            if promote.full:
                _skip_gate(b, target, "post")
            b.ack(promote, True, f"promoted{' fully' if promote.full else ''}: switching to {target}")
            go_promoting("promoted by user")
        elif not b.settled(target, preview_n):
            if _deadline_or_wait(b):
                _reject(b, target, Reason.PROGRESS_DEADLINE_EXCEEDED,
                        f"preview {target}: {b.available(target)}/{preview_n} available after {b.deadline:g}s")
                return _after_reject(b)
            return result(Phase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value,
                          f"preview {target}: {b.available(target)}/{preview_n} available",
                          preview_replicas=preview_n, active=stable)
        else:
            if b.state.ready_at is None:
                b.state = replace(b.state, ready_at=b.now)
            if bg.pre_promotion_analysis is not None:
                outcome, verdict = _run_gate(b, target, bg.pre_promotion_analysis, "pre", "pre-promotion")
                if outcome == "fail":
                    return _after_reject(b)
                if outcome != "pass":
                    return gate_result(outcome, verdict, bg.pre_promotion_analysis, "pre-promotion",
                                       preview_replicas=preview_n, active=stable)
            if not bg.auto_promotion_enabled:
                return result(Phase.PAUSED, Reason.AWAITING_PROMOTION.value,
                              f"preview {target} ready; waiting for promote", preview_replicas=preview_n,
                              active=stable, paused=Reason.AWAITING_PROMOTION.value)
            ready_at = b.state.ready_at or b.now
            wait = (bg.auto_promotion_seconds or 0) - (b.now - ready_at).total_seconds()
            if wait > 0:
                b.wake_in(wait)
                return result(Phase.PAUSED, Reason.WAITING_AUTO_PROMOTION.value,
                              f"preview {target} ready; auto-promotion at {_clock(b.now, wait)}",
                              preview_replicas=preview_n, active=stable,
                              paused=Reason.WAITING_AUTO_PROMOTION.value)
            go_promoting("auto-promotion")
    elif promote:
        if b.state.step_index == _BG_SWITCHED and bg.post_promotion_analysis is not None:
            _skip_gate(b, target, "post")
            b.ack(promote, True, "promoted: post-promotion analysis skipped")
        else:
            b.ack(promote, False, "promote: already switching")

    if b.state.step_index == _BG_PROMOTING:
        # Bring the preview to full size before it takes traffic.
        if not b.settled(target, b.total):
            if _deadline_or_wait(b):
                _reject(b, target, Reason.PROGRESS_DEADLINE_EXCEEDED,
                        f"{target}: {b.available(target)}/{b.total} available after {b.deadline:g}s")
                return _after_reject(b)
            return result(Phase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value,
                          f"scaling {target} to {b.total} before switching", preview_replicas=b.total,
                          active=stable)
        b.state = replace(b.state, step_index=_BG_SWITCHED, step_started_at=b.now, switched_at=b.now)
        b.event("Switched", f"active Service now selects {target} (was {stable})")

    # Switched: the new revision serves; the old one stays at full size for a fast switch-back.
    post = bg.post_promotion_analysis
    if post is not None:
        outcome, verdict = _run_gate(b, target, post, "post", "post-promotion")
        if outcome == "fail":
            b.event("SwitchedBack", f"active Service back on {stable}: post-promotion analysis failed",
                    warning=True)
            return _after_reject(b)
        if outcome != "pass":
            return gate_result(outcome, verdict, post, "post-promotion", preview_replicas=b.total, active=target)
    switched_at = b.state.switched_at or b.now
    b.state = replace(b.state, scale_down_revision=stable,
                      scale_down_at=switched_at + timedelta(seconds=bg.scale_down_delay_seconds))
    _complete(b, target, "blue-green switch")
    return _plan_idle_or_direct(b, target)


# -- rolling -----------------------------------------------------------------------------------


def _plan_rolling(b: _Builder, target: str) -> Plan:
    spec = b.inp.strategy.rolling
    stable = b.state.stable_revision
    assert stable is not None
    promote = b.take(Verb.PROMOTE)
    deps = [DeploymentTarget(target, b.total, Role.ROLLING)]

    def result(phase: Phase, reason: str, message: str, *, paused: str | None = None,
               aspec: AnalysisSpec | None = None, measure: tuple[str, ...] = ()) -> Plan:
        return _finish(b, phase=phase, reason=reason, message=message, deployments=deps, target=target,
                       current_step="analysis" if aspec else "update", step_index=b.state.step_index,
                       step_count=2 if spec.analysis else 1, analysis_spec=aspec, measure=measure,
                       paused_reason=paused)

    if b.state.step_index == 0:
        if not b.settled(target, b.total):
            if promote:
                b.ack(promote, False, "promote: rolling update still waiting for pods")
            if _deadline_or_wait(b):
                o = b.obs(target)
                _reject(b, target, Reason.PROGRESS_DEADLINE_EXCEEDED,
                        f"{target}: {o.available_replicas if o else 0}/{b.total} available, "
                        f"{o.updated_replicas if o else 0} updated after {b.deadline:g}s")
                return _after_reject(b)
            o = b.obs(target)
            return result(Phase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS.value,
                          f"updating to {target}: {o.updated_replicas if o else 0} updated, "
                          f"{o.available_replicas if o else 0}/{b.total} available")
        b.state = replace(b.state, step_index=1, step_started_at=b.now)
    if spec.analysis is not None:
        if promote:
            b.ack(promote, True, "promoted: post-update analysis skipped")
        else:
            outcome, verdict = _run_gate(b, target, spec.analysis, "post", "post-update")
            if outcome == "fail":
                return _after_reject(b)
            if outcome != "pass":
                inconclusive = outcome == "inconclusive"
                return result(Phase.PAUSED if inconclusive else Phase.PROGRESSING,
                              Reason.ANALYSIS_INCONCLUSIVE.value if inconclusive
                              else Reason.ROLLOUT_IN_PROGRESS.value,
                              f"post-update analysis: {verdict.message if verdict else ''}",
                              paused=Reason.ANALYSIS_INCONCLUSIVE.value if inconclusive else None,
                              aspec=spec.analysis, measure=verdict.due if verdict else ())
    elif promote:
        b.ack(promote, False, "promote: nothing to promote")
    _complete(b, target, "rolling update")
    return _plan_idle_or_direct(b, target)


# ---------------------------------------------------------------------------------------------
# Conditions helper (status merge keeps lastTransitionTime stable)
# ---------------------------------------------------------------------------------------------


def merge_conditions(
    old: Sequence[Mapping[str, Any]],
    new: Iterable[ConditionSpec],
    now: datetime,
    generation: int | None,
    timestamp: Callable[[datetime], str] = lambda t: t.isoformat(),
) -> list[dict[str, Any]]:
    """Conditions with lastTransitionTime changed only when status flips (Kubernetes convention)."""
    previous = {c.get("type"): c for c in old}
    out: list[dict[str, Any]] = []
    for c in new:
        status = "True" if c.status else "False"
        before = previous.get(c.type)
        changed = before is None or before.get("status") != status
        out.append({
            "type": c.type,
            "status": status,
            "reason": c.reason,
            "message": c.message,
            "observedGeneration": generation,
            "lastTransitionTime": timestamp(now) if changed
            else before.get("lastTransitionTime") or timestamp(now),
        })
    return out
