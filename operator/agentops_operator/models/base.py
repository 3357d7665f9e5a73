"""Shared pydantic building blocks for the CRD models.

The models are the single source of the CRD schemas: `crdgen` turns them into OpenAPI v3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ..wire import K8sModel

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(K8sModel):
    """A metav1.Condition: the latest observation of one aspect of the object's state."""

    type: str = Field(description="Condition type in CamelCase, e.g. Ready.", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was set for."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When the status last changed."
    )
    reason: str = Field(default="", description="CamelCase machine-readable reason.", max_length=1024)
    message: str = Field(default="", description="Human-readable detail.", max_length=32768)


def conditions_field(what: str) -> Any:
    return Field(
        default_factory=list,
        description=f"Latest observations of the {what}'s state.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        max_length=32,
    )


class LabelSelectorRequirement(K8sModel):
    key: str = Field(description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="Set operator.")
    values: list[str] = Field(default_factory=list, description="Values for In / NotIn.")


class LabelSelector(K8sModel):
    """A metav1.LabelSelector."""

    match_labels: dict[str, str] | None = Field(default=None, description="Exact label matches.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Set-based requirements, all of which must hold."
    )


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def wire(self) -> dict[str, Any]:
        col: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            col["description"] = self.description
        if self.priority:
            col["priority"] = self.priority
        return col


@dataclass(frozen=True)
class ScaleSubresource:
    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = ".status.selector"


@dataclass(frozen=True)
class CRDInfo:
    """Everything crdgen needs to render one CustomResourceDefinition."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[K8sModel]
    status: type[K8sModel]
    description: str
    printer_columns: tuple[PrinterColumn, ...] = ()
    scale: ScaleSubresource | None = None
    root_validations: tuple[dict[str, Any], ...] = ()
    categories: tuple[str, ...] = field(default=("agentops",))


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class EnvVar(K8sModel):
    name: str = Field(description="Variable name.", pattern=ENV_NAME, max_length=253)
    value: str = Field(default="", description="Literal value (never put secrets here).")


class CheckJob(K8sModel):
    """A one-shot Job whose exit code is a verdict (gate Jobs of tasks, analysis Jobs of agents)."""

    image: str = Field(default="busybox:1.36", description="Container image.")
    command: list[str] = Field(default_factory=list, description="Entrypoint (default: the image's).")
    args: list[str] = Field(default_factory=list, description="Arguments.")
    env: list[EnvVar] = Field(default_factory=list, description="Environment variables.")
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the Job's pod.")
