"""What the planner remembers between reconciles, as the Agent status keeps it.

These frozen pydantic models are at once the planner's runtime types and the schema of the Agent
status fields ``stableRevision``, ``rollout``, ``analysis``, ``lastAnalysis``,
``acknowledgedCommands`` and ``systemCommands`` (``models.agent.AgentStatus`` extends ``RolloutState``).
The handler reads them with ``RolloutState.model_validate(status)`` and writes ``state.status()``: no mapping code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from ..timeutil import Time
from ..wire import K8sModel
from .types import AnalysisPhase, MeasurementPhase, Verb

MAX_MEASUREMENTS_KEPT = 10
MAX_PASSED_KEPT = 20
_FROZEN = ConfigDict(frozen=True)


class Measurement(K8sModel):
    """One result of an analysis provider."""

    model_config = _FROZEN

    phase: MeasurementPhase = Field(description="Outcome.")
    at: Time = Field(description="When it was taken.")
    value: str = Field(default="", description="Observed value.", max_length=1024)
    message: str = Field(default="", description="Detail.", max_length=2048)

    def __init__(self, phase: MeasurementPhase | str, at: Any, value: str = "", message: str = "",
                 **extra: Any) -> None:
        # Positional, as the providers write it; trimmed to what the status schema admits.
        super().__init__(phase=phase, at=at, value=value[:1024], message=message[:2048], **extra)


class MetricState(K8sModel):
    """Counters plus the last few measurements; counters keep the verdict exact after trimming."""

    model_config = _FROZEN

    name: str = Field(description="Metric name.")
    phase: AnalysisPhase | None = Field(default=None, description="Verdict when last planned.")
    successful: int = Field(default=0, description="Successful measurements.")
    failed: int = Field(default=0, description="Failed measurements.")
    inconclusive: int = Field(default=0, description="Inconclusive measurements.")
    errors: int = Field(default=0, description="Provider errors.")
    consecutive_errors: int = Field(default=0, description="Errors in a row.")
    last_measured_at: Time | None = Field(default=None, description="Last measurement time.")
    measurements: tuple[Measurement, ...] = Field(
        default=(), description="Latest measurements (bounded).", max_length=20
    )

    @property
    def taken(self) -> int:
        # Errors are retried and do not use up ``count``.
        return self.successful + self.failed + self.inconclusive


_COUNTER = {
    MeasurementPhase.SUCCESSFUL: "successful",
    MeasurementPhase.FAILED: "failed",
    MeasurementPhase.INCONCLUSIVE: "inconclusive",
    MeasurementPhase.ERROR: "errors",
}


def record_measurement(state: MetricState, m: Measurement, keep: int = MAX_MEASUREMENTS_KEPT) -> MetricState:
    """Add one measurement, keeping at most ``keep`` of them (status must stay bounded)."""
    attr = _COUNTER[m.phase]
    kept = (*state.measurements, m)[-keep:] if keep > 0 else ()
    return state.model_copy(update={
        attr: getattr(state, attr) + 1,
        "consecutive_errors": state.consecutive_errors + 1 if m.phase is MeasurementPhase.ERROR else 0,
        "last_measured_at": m.at,
        "measurements": kept,
    })


class AnalysisRunState(K8sModel):
    """One execution of an analysis; ``run_id`` changes with revision, step and retry attempt."""

    model_config = _FROZEN

    run_id: str = Field(description="revision/step/attempt of the run.")
    started_at: Time = Field(description="When the run started.")
    phase: AnalysisPhase | None = Field(default=None, description="Verdict when last planned.")
    message: str = Field(default="", description="Why.", max_length=4096)
    metrics: tuple[MetricState, ...] = Field(default=(), description="Per-metric results.")

    def metric(self, name: str) -> MetricState:
        return next((m for m in self.metrics if m.name == name), MetricState(name=name))

    def with_measurement(self, name: str, m: Measurement, keep: int = MAX_MEASUREMENTS_KEPT) -> AnalysisRunState:
        updated = record_measurement(self.metric(name), m, keep)
        others = (x for x in self.metrics if x.name != name)
        return self.model_copy(update={"metrics": tuple(sorted((*others, updated), key=lambda x: x.name))})


class CommandAck(K8sModel):
    """The last promote/abort/retry/undo command handled for one verb (status.acknowledgedCommands)."""

    model_config = _FROZEN

    verb: Verb = Field(description="Verb.")
    id: str = Field(description="The command's id (annotation value) that was handled.")
    applied: bool = Field(description="Whether the command changed anything.")
    message: str = Field(default="", description="What happened.", max_length=1024)
    at: Time | None = Field(default=None, description="When it was handled.")


MAX_SYSTEM_COMMANDS = 16


class SystemCommand(K8sModel):
    """A verb the operator itself was asked to carry out (e.g. an alert's abort)."""

    # Kept in status because the operator never writes the Agent's spec or metadata; keyed by its id in
    # status.systemCommands (a map, so a writer that did not see a newer entry cannot drop it in a merge patch).

    model_config = _FROZEN

    verb: Verb = Field(description="Verb (abort).")
    by: str = Field(description="Who asked (e.g. alertmanager).", max_length=253)
    reason: str = Field(default="", description="Why (e.g. the alert).", max_length=1024)
    requested_at: Time = Field(description="When it was asked for.")
    handled_at: Time | None = Field(default=None, description="When the planner carried it out; null: pending.")
    applied: bool | None = Field(default=None, description="Whether it changed anything.")
    message: str = Field(default="", description="What happened.", max_length=1024)


class RolloutBookkeeping(K8sModel):
    """status.rollout: where the rollout in flight stands."""

    model_config = _FROZEN

    current_revision: str | None = Field(default=None, description="Revision the rollout moves to.")
    step_index: int = Field(default=0, description="Step of the rollout.")
    step_started_at: Time | None = Field(default=None, description="When the step started.")
    attempt: int = Field(default=0, description="Retries so far.")
    rejected_revision: str | None = Field(default=None, description="Desired revision rolled back or aborted.")
    override_revision: str | None = Field(default=None, description="Revision served after undo.")
    reason: str | None = Field(default=None, description="Why the desired revision is not served.")
    message: str = Field(default="", description="Detail of the reason.", max_length=4096)
    ready_at: Time | None = Field(default=None, description="Blue-green: preview ready since.")
    switched_at: Time | None = Field(default=None, description="Blue-green: active Service switched at.")
    scale_down_revision: str | None = Field(default=None, description="Old revision kept until scaleDownAt.")
    scale_down_at: Time | None = Field(default=None, description="When the old revision goes.")
    stalled: bool = Field(default=False, description="First deploy missed its deadline.")
    passed: tuple[str, ...] = Field(
        default=(), description="Analysis gates passed in this rollout.", max_length=MAX_PASSED_KEPT
    )


BOOKKEEPING_FIELDS = frozenset(RolloutBookkeeping.model_fields)


class RolloutState(K8sModel):
    """Everything the planner remembers between reconciles: the planner-owned part of Agent status."""

    model_config = _FROZEN

    stable_revision: str | None = Field(default=None, description="Revision last known good.")
    rollout: RolloutBookkeeping = Field(default_factory=RolloutBookkeeping, description="Rollout bookkeeping.")
    analysis: AnalysisRunState | None = Field(default=None, description="Analysis in progress.")
    last_analysis: AnalysisRunState | None = Field(default=None, description="Last finished analysis.")
    acknowledged_commands: tuple[CommandAck, ...] = Field(
        default=(),
        description="Last promote/abort/retry/undo command handled per verb.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["verb"]},
        max_length=4,
    )

    system_commands: dict[str, SystemCommand] = Field(
        default_factory=dict,
        description="Verbs the operator was asked to carry out itself (alerts), by id; the newest "
                    f"{MAX_SYSTEM_COMMANDS} are kept so a repeated request is recognised.",
        max_length=MAX_SYSTEM_COMMANDS,
    )

    @field_validator("system_commands", mode="before")
    @classmethod
    def _absent_system(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("rollout", mode="before")
    @classmethod
    def _absent_rollout(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("acknowledged_commands", mode="before")
    @classmethod
    def _absent_acks(cls, value: Any) -> Any:
        return () if value is None else value

    def evolve(self, **changes: Any) -> RolloutState:
        """A copy with fields changed; bookkeeping fields (``step_index``, ...) go into ``rollout``."""
        top: dict[str, Any] = {}
        book: dict[str, Any] = {}
        for key, value in changes.items():
            if key in BOOKKEEPING_FIELDS:
                book[key] = value
            elif key in _STATE_FIELDS:
                top[key] = value
            else:
                raise TypeError(f"RolloutState has no field {key!r}")
        if book:
            top["rollout"] = self.rollout.model_copy(update=book)
        return self.model_copy(update=top)

    def status(self) -> dict[str, Any]:
        """The status fields this state owns, with explicit nulls: a merge patch must delete what is gone."""
        return self.model_dump(by_alias=True, mode="json")


_STATE_FIELDS = frozenset(RolloutState.model_fields)


def merge_acks(old: Sequence[CommandAck], new: Sequence[CommandAck]) -> tuple[CommandAck, ...]:
    """The last ack per verb, in verb order (status.acknowledgedCommands is a map keyed by verb)."""
    by_verb = {a.verb: a for a in (*old, *new)}
    return tuple(by_verb[v] for v in Verb if v in by_verb)


def mark_handled(system: Mapping[str, SystemCommand], acks: Sequence[CommandAck],
                 now: datetime) -> dict[str, SystemCommand]:
    """System commands acknowledged now get ``handledAt`` and the outcome (they are not pending any more).
    Their acks stay out of ``acknowledgedCommands``, which tracks the annotations' ids per verb."""
    done = {a.id: a for a in acks}
    out = {}
    for cid, c in system.items():
        a = done.get(cid)
        if a is not None and c.handled_at is None:
            c = c.model_copy(update={"handled_at": now, "applied": a.applied, "message": a.message})
        out[cid] = c
    return out


def evict_system_commands(commands: Mapping[str, SystemCommand], adding: int = 1) -> list[str]:
    """Ids to drop so ``adding`` more fit in MAX_SYSTEM_COMMANDS: the oldest handled ones (never a pending one)."""
    excess = len(commands) + adding - MAX_SYSTEM_COMMANDS
    if excess <= 0:
        return []
    handled = sorted((c.requested_at, cid) for cid, c in commands.items() if c.handled_at is not None)
    return [cid for _, cid in handled[:excess]]
