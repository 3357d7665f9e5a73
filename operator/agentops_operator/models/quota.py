"""Quota: a windowed budget that tasks and agents consume."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import Condition, CRDInfo, K8sModel, LabelSelector, PrinterColumn, conditions_field


class QuotaSpec(K8sModel):
    resource: str = Field(
        description="Resource key consumed, e.g. publish, api-calls, tokens.", pattern=r"^[a-z0-9.-]{1,63}$"
    )
    limit: int = Field(ge=0, description="Units allowed per window.")
    window: str = Field(
        default="daily",
        description="hourly, daily, weekly (from Monday), monthly, or a rolling duration such as 1h or 24h.",
        pattern=r"^(hourly|daily|weekly|monthly|([0-9]+[smhd])+)$",
    )
    time_zone: str = Field(default="UTC", description="IANA time zone of calendar windows.", max_length=64)
    selector: LabelSelector | None = Field(default=None, description="Tasks and agents that consume it.")
    enforcement: Literal["Hard", "Soft"] = Field(default="Hard", description="Hard refuses; Soft allows and warns.")
    warning_percent: int = Field(default=80, ge=1, le=100, description="Warn at this share of the limit.")


class QuotaStatus(K8sModel):
    used: int = Field(default=0, description="Units committed in the current window.")
    remaining: int | None = Field(default=None, description="limit - used - reserved.")
    window_start: datetime | None = Field(default=None, description="Start of the current window.")
    reset_at: datetime | None = Field(default=None, description="When used resets.")
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
        PrinterColumn("Limit", ".spec.limit", type="integer"),
        PrinterColumn("Window", ".spec.window"),
        PrinterColumn("Resets", ".status.resetAt", type="date"),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
)
