"""What the planner reads (observations, commands, ``PlanInputs``) and what it returns (``Plan``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .revisions import RevisionRecord
from .state import CommandAck, RolloutState
from .types import AnalysisSpec, Role, RolloutPhase, StrategySpec, Verb


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
    """A verb the CLI set declaratively (annotation) or the operator was asked for (``status.systemCommands``)
    that has not been handled yet."""

    verb: Verb
    nonce: str
    full: bool = False  # promote --full
    to_revision: int | None = None  # undo --to-revision
    by: str = "user"  # who asked: "user" (annotation) or a system command's requester
    reason: str = ""  # a system command's reason
    system: bool = False  # from status.systemCommands (marked handled, not acknowledged per verb)


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


# ---- the plan ----------------------------------------------------------------------------------


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
    state: RolloutState  # what status keeps (stableRevision, rollout, analysis, lastAnalysis)
    phase: RolloutPhase
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
