"""Quota: a windowed budget that tasks and agents consume."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ..quotaledger import MAX_HOLDS, MAX_LIMIT, MAX_RESERVATIONS
from ..quotawindow import MAX_ROLLING, ROLLING_SECONDS_CEL, TZ_DIRECTORY_RULE, WINDOW_PATTERN
from ..tokenusage import MAX_RESOURCE, RESOURCE_PATTERN
from .base import Condition, CRDInfo, K8sModel, LabelSelector, PrinterColumn, conditions_field


class QuotaSpec(K8sModel):
    resource: str = Field(
        description=(
            "Resource key consumed, e.g. publish, api-calls, tokens, or a key qualified by a model, "
            "tokens/<model> (agents' reported LLM token usage is charged to tokens and tokens/<model>); "
            "AgentTask costs name it."
        ),
        max_length=MAX_RESOURCE,
        pattern=RESOURCE_PATTERN,
    )
    limit: int = Field(ge=0, le=MAX_LIMIT, description="Units allowed per window.")
    window: str = Field(
        default="daily",
        description=(
            "Calendar period hourly, daily, weekly (from Monday) or monthly, reset at local wall-clock "
            "boundaries in timeZone; or a rolling duration such as 90s, 15m, 1h, 24h, 7d, 1h30m (parts d, h, "
            "m, s in that order, at most 366d), i.e. fixed-length windows from the Quota's creation."
        ),
        max_length=32,
        pattern=WINDOW_PATTERN,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.matches('^[a-z]+$') || self.matches('[1-9]')",
                 "message": "a rolling window must be > 0"},
                {"rule": ROLLING_SECONDS_CEL + f" <= {int(MAX_ROLLING.total_seconds())}",
                 "message": f"a rolling window is at most {MAX_ROLLING.days}d"},
            ]
        },
    )
    time_zone: str = Field(
        default="UTC",
        description="IANA time zone of calendar windows, e.g. Europe/Berlin; daylight-saving safe.",
        max_length=64,
        pattern=r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$",
        json_schema_extra={"x-kubernetes-validations": [TZ_DIRECTORY_RULE]},
    )
    selector: LabelSelector | None = Field(
        default=None,
        description=(
            "Which AgentTasks (by label) consume it, and for token usage which Agents (by the Agent's labels); "
            "unset selects all in the namespace."
        ),
    )
    enforcement: Literal["Hard", "Soft"] = Field(
        default="Hard", description="Hard refuses what would exceed the limit; Soft allows it and warns."
    )
    warning_percent: int = Field(
        default=80, ge=1, le=100, description="Set the Warning condition at this share of the limit."
    )


class QuotaReservation(K8sModel):
    holder: str = Field(description="Who holds it, e.g. AgentTask/<name>/<uid>/<move>/<round>.", max_length=512)
    amount: int = Field(ge=1, description="Units held until commit or release.")
    at: datetime = Field(description="When it was reserved.")
    reason: str = Field(default="", description="Why (the move it is for).", max_length=256)
    by: str = Field(
        default="",
        description=(
            "The username that made it (reservations not of AgentTasks): admission requires the requester's own "
            "username here, and lets only that identity (or the operator) release or commit it."
        ),
        max_length=1024,
    )


class QuotaCommit(K8sModel):
    holder: str = Field(description="The holder whose reservation was committed.", max_length=512)
    amount: int = Field(ge=1, description="Units it charged (once).")
    at: datetime = Field(description="When it was committed.")


class QuotaReset(K8sModel):
    at: datetime = Field(description="When the reset was written.")
    window_start: datetime = Field(description="Start of the window it opened.")
    previous_window_start: datetime = Field(description="Start of the window it closed.")
    previous_reset_at: datetime = Field(description="When the closed window ended.")
    used_before: int = Field(description="Units used in the closed window.")
    windows_elapsed: int = Field(description="Window boundaries passed; above 1 means resets were caught up.")
    by: str = Field(description="operator, or the client whose call rolled the window over.", max_length=1024)
    event_recorded: bool = Field(default=False, description="Whether the QuotaReset Event was recorded.")


class QuotaStatus(K8sModel):
    used: int = Field(default=0, ge=0, description="Units committed in the current window.")
    reserved: int = Field(default=0, ge=0, description="Units held by reservations (moves in progress).")
    remaining: int | None = Field(default=None, ge=0, description="limit - used - reserved, at least 0.")
    window_start: datetime | None = Field(default=None, description="Start of the current window.")
    reset_at: datetime | None = Field(default=None, description="When used resets.")
    window_spec: str | None = Field(default=None, description="window and timeZone the current window follows.",
        max_length=1024)
    reservations: list[QuotaReservation] = Field(
        default_factory=list,
        description="Outstanding reservations, one per holder; they survive resets and commit into the new window.",
        max_length=MAX_RESERVATIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["holder"]},
    )
    committed: list[QuotaCommit] = Field(
        default_factory=list,
        description=(
            "Holders recently committed, so that a retried reserve or commit of the same holder charges nothing "
            "twice (also across resets). The operator forgets an entry once no retry can reach it; reservations "
            f"plus these never exceed {MAX_HOLDS}."
        ),
        max_length=MAX_HOLDS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["holder"]},
    )
    last_reset: QuotaReset | None = Field(default=None, description="The latest reset.")
    observed_generation: int | None = Field(default=None, description="Last generation reconciled.")
    conditions: list[Condition] = conditions_field("quota")


CRD = CRDInfo(
    kind="Quota",
    plural="quotas",
    singular="quota",
    short_names=("aq", "agquota"),
    spec=QuotaSpec,
    status=QuotaStatus,
    description="A budget of a resource per time window, consumed atomically by tasks and agents.",
    printer_columns=(
        PrinterColumn("Resource", ".spec.resource"),
        PrinterColumn("Used", ".status.used", type="integer"),
        PrinterColumn("Reserved", ".status.reserved", type="integer", priority=1),
        PrinterColumn("Limit", ".spec.limit", type="integer"),
        PrinterColumn("Window", ".spec.window"),
        PrinterColumn("Enforcement", ".spec.enforcement", priority=1),
        PrinterColumn("Exhausted", ".status.conditions[?(@.type=='Exhausted')].status"),
        PrinterColumn("Resets", ".status.resetAt", description="When used resets (RFC 3339, UTC)."),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
)
