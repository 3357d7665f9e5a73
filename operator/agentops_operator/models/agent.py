"""Agent: a registered agent whose workloads the operator owns and rolls out."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import Condition, CRDInfo, K8sModel, PrinterColumn, ScaleSubresource, conditions_field


class AgentSpec(K8sModel):
    role: str = Field(description="What the agent does, e.g. developer, qa, deployer.", pattern=r"^[a-z0-9-]{1,63}$")
    description: str = Field(default="", description="Human description.", max_length=4096)
    version: str = Field(default="", description="Agent version label.", max_length=128)
    capabilities: list[str] = Field(
        default_factory=list,
        description="Capability tags; also set as labels capability.agentops.dev/<tag>=true.",
        max_length=32,
    )
    image: str = Field(description="Container image of the agent.", min_length=1)
    replicas: int = Field(default=1, ge=0, le=1000, description="Desired replicas (scale subresource).")
    config: dict[str, str] = Field(default_factory=dict, description="Instance-level configuration.")
    max_concurrent_tasks: int = Field(default=1, ge=1, le=1000, description="Tasks the agent may hold at once.")


class AgentStatus(K8sModel):
    phase: Literal["Pending", "Progressing", "Healthy", "Paused", "Degraded"] | None = Field(
        default=None, description="Rollout phase."
    )
    observed_generation: int | None = Field(default=None, description="Last generation reconciled.")
    replicas: int = Field(default=0, description="Pods of all revisions.")
    ready_replicas: int = Field(default=0, description="Ready pods.")
    selector: str | None = Field(default=None, description="Label selector of the agent's pods (scale).")
    endpoint: str | None = Field(default=None, description="DNS name of the agent's Service.")
    current_revision: str | None = Field(default=None, description="Revision the spec asks for.")
    stable_revision: str | None = Field(default=None, description="Revision last known good.")
    conditions: list[Condition] = conditions_field("agent")
    tasks_completed: int = Field(default=0, description="Tasks this agent has taken to Done or Deployed.")
    active_tasks: int = Field(default=0, description="Open tasks assigned to this agent.")
    last_active: datetime | None = Field(default=None, description="When the agent last moved a task.")


CRD = CRDInfo(
    kind="Agent",
    plural="agents",
    singular="agent",
    short_names=("ag",),
    spec=AgentSpec,
    status=AgentStatus,
    description="An AI agent: its workloads, rollout strategy and capabilities.",
    printer_columns=(
        PrinterColumn("Role", ".spec.role"),
        PrinterColumn("Ready", ".status.readyReplicas", type="integer"),
        PrinterColumn("Desired", ".spec.replicas", type="integer"),
        PrinterColumn("Revision", ".status.currentRevision"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    scale=ScaleSubresource(),
)
