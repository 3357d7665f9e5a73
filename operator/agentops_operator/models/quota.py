"""Quota: a windowed budget that tasks and agents consume."""

from __future__ import annotations

from pydantic import Field

from ..quotaledger import Ledger, LedgerSpec, QuotaCommit, QuotaReservation, QuotaReset
from .base import Condition, CRDInfo, LabelSelector, PrinterColumn, conditions_field

__all__ = ["CRD", "QuotaCommit", "QuotaReservation", "QuotaReset", "QuotaSpec", "QuotaStatus"]


class QuotaSpec(LedgerSpec):
    """The ledger's spec (`quotaledger.LedgerSpec`: resource, limit, window, timeZone, enforcement,
    warningPercent, validated there) plus which tasks the Quota applies to."""

    selector: LabelSelector | None = Field(
        default=None,
        description=(
            "Which AgentTasks (by label) consume it, and for token usage which Agents (by the Agent's labels); "
            "unset selects all in the namespace."
        ),
    )


class QuotaStatus(Ledger):
    """The ledger (`quotaledger.Ledger`, the runtime type clients and the operator read and write) plus
    what only the operator writes."""

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
