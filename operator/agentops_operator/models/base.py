"""Shared pydantic building blocks for the CRD models.

The models are the single source of the CRD schemas: `crdgen` turns them into OpenAPI v3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from ..wire import K8sModel

# ---- bounds: every string, list and map of the CRDs is bounded (hostile input cannot grow the
# operator's memory or the API server's CEL cost without limit). Shared sizes:
NAME_LEN = 253  # a DNS subdomain / qualified name
SHORT_LEN = 63  # a DNS label / label value
TEXT_LEN = 4096  # one argument, one env value, one annotation value
LONG_TEXT = 32768  # descriptions and notes
MAX_ARGS = 64  # command / args items
MAX_ENV = 64  # env and secretEnv entries
MAX_MAP = 32  # entries of a string map (annotations, labels, parameters)
CONFIG_MAP = 256  # entries of an Agent's config map

Name = Annotated[str, Field(max_length=NAME_LEN)]
Short = Annotated[str, Field(max_length=SHORT_LEN)]
Text = Annotated[str, Field(max_length=TEXT_LEN)]

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
IMAGE = r"^[^\s]+$"
# A qualified name as in metadata.labels / annotations keys: optional DNS-subdomain prefix, then
# a 1-63 char name. RE2 syntax (CEL's matches()).
_QUALIFIED = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"


def annotations_field(what: str) -> Any:
    """A map of Kubernetes annotations: valid keys (refused at admission, naming the field)."""
    return Field(
        default_factory=dict,
        description=what,
        max_length=MAX_MAP,
        json_schema_extra={"x-kubernetes-validations": [{
            "rule": f"self.all(k, size(k) <= {NAME_LEN} && k.matches('{_QUALIFIED}'))",
            "message": "keys must be qualified names ([prefix/]name, name at most 63 characters of "
                       "[-A-Za-z0-9_.] starting and ending alphanumeric)",
        }]},
    )


def labels_field(what: str) -> Any:
    """A map of Kubernetes labels: valid keys and values."""
    return Field(
        default_factory=dict,
        description=what,
        max_length=MAX_MAP,
        json_schema_extra={"x-kubernetes-validations": [{
            "rule": f"self.all(k, size(k) <= {NAME_LEN} && k.matches('{_QUALIFIED}') "
                    f"&& self[k].matches('{_LABEL_VALUE}'))",
            "message": "keys must be qualified names and values label values (at most 63 characters of "
                       "[-A-Za-z0-9_.], starting and ending alphanumeric)",
        }]},
    )


def unique_by(*keys: str) -> dict[str, Any]:
    """A list whose entries are unique by ``keys`` (duplicates are refused by the API server)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


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
    key: str = Field(description="Label key.", max_length=NAME_LEN, pattern=_QUALIFIED)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="Set operator.")
    values: list[Short] = Field(default_factory=list, description="Values for In / NotIn.", max_length=MAX_MAP)


class LabelSelector(K8sModel):
    """A metav1.LabelSelector."""

    match_labels: dict[Name, Short] | None = Field(
        default=None, description="Exact label matches.", max_length=MAX_MAP
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Set-based requirements, all of which must hold.", max_length=MAX_MAP
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
    name: str = Field(description="Variable name.", pattern=ENV_NAME, max_length=NAME_LEN)
    value: str = Field(default="", description="Literal value (never put secrets here).", max_length=TEXT_LEN)


def image_field(default: str | None = None, what: str = "Container image.") -> Any:
    if default is None:
        return Field(description=what, min_length=1, max_length=512, pattern=IMAGE)
    return Field(default=default, description=what, min_length=1, max_length=512, pattern=IMAGE)


def args_field(what: str) -> Any:
    return Field(default_factory=list, description=what, max_length=MAX_ARGS)


def env_field(what: str) -> Any:
    return Field(default_factory=list, description=what, max_length=MAX_ENV, json_schema_extra=unique_by("name"))


class CheckJob(K8sModel):
    """A one-shot Job whose exit code is a verdict (gate Jobs of tasks, analysis Jobs of agents)."""

    image: str = image_field("busybox:1.36")
    command: list[Text] = args_field("Entrypoint (default: the image's).")
    args: list[Text] = args_field("Arguments.")
    env: list[EnvVar] = env_field("Environment variables.")
    pod_annotations: dict[str, Text] = annotations_field("Annotations of the Job's pod.")
