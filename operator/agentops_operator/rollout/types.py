"""Vocabulary of the rollout planner: enums and the strategy as the planner sees it (frozen dataclasses).

What the planner reads and returns is in ``io``; what it remembers between reconciles in ``state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# ---- enums -------------------------------------------------------------------------------------


class StrategyType(StrEnum):
    ROLLING = "rolling"
    CANARY = "canary"
    BLUE_GREEN = "blueGreen"


class RolloutPhase(StrEnum):
    """status.phase of an Agent (not to be confused with ``lifecycle.Phase`` of a task)."""

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

# ---- strategy (converted from the CRD model by agent_workload.strategy_spec) ------------------


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
