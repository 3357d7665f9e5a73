"""Agent: a registered agent whose workloads the operator owns and rolls out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..rollout.state import RolloutState
from .base import (
    DNS_SUBDOMAIN,
    ENV_NAME,
    IMAGE,
    MAX_ENV,
    MAX_MAP,
    NAME_LEN,
    TEXT_LEN,
    CheckJob,
    Condition,
    CRDInfo,
    EnvVar,
    K8sModel,
    Name,
    PrinterColumn,
    ScaleSubresource,
    Short,
    Text,
    annotations_field,
    args_field,
    conditions_field,
    env_field,
    labels_field,
    unique_by,
)

_ENV_NAME = ENV_NAME
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_INT_OR_PERCENT = r"^[0-9]+%?$"


def _one_of(*fields: str, what: str) -> ConfigDict:
    """CEL rule: exactly one of ``fields`` is set (the API server refuses anything else)."""
    count = " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields)
    return ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": f"{count} == 1", "message": f"{what}: set exactly one of {', '.join(fields)}"}
            ]
        },
    )


Capability = Annotated[str, Field(max_length=63, pattern=r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")]
# ConfigMap keys (config and runtime end up in the Agent's ConfigMap).
_CONFIG_KEYS: dict[str, Any] = {"x-kubernetes-validations": [{
    "rule": "self.all(k, size(k) <= 253 && k.matches('^[-._a-zA-Z0-9]+$'))",
    "message": "keys may only contain letters, digits, '-', '_' and '.'",
}]}
_QUANTITIES: dict[str, Any] = {"x-kubernetes-validations": [{
    "rule": "self.all(k, k.matches('^([a-z0-9.-]+/)?[a-z0-9A-Z_.-]+$') && isQuantity(self[k]))",
    "message": "keys must be resource names and values quantities such as 100m or 512Mi",
}]}


# ---- pod template ----------------------------------------------------------------------------


class SecretEnvVar(K8sModel):
    """An environment variable read from a Secret by the kubelet; the value never passes the operator."""

    name: str = Field(description="Variable name.", pattern=_ENV_NAME, max_length=253)
    secret_name: str = Field(
        description="Secret in the Agent's namespace; naming it needs get on that Secret (admission-checked).",
        min_length=1, max_length=NAME_LEN, pattern=DNS_SUBDOMAIN,
    )
    key: str = Field(description="Key in the Secret.", min_length=1, max_length=NAME_LEN, pattern=r"^[-._a-zA-Z0-9]+$")
    optional: bool = Field(default=False, description="Start the pod even if the Secret or key is missing.")


class ResourceRequirements(K8sModel):
    requests: dict[Name, Short] = Field(default_factory=dict, description="Requested resources, e.g. cpu: 100m.",
                                        max_length=16, json_schema_extra=_QUANTITIES)
    limits: dict[Name, Short] = Field(default_factory=dict, description="Resource limits, e.g. memory: 512Mi.",
                                      max_length=16, json_schema_extra=_QUANTITIES)


class HTTPGetProbe(K8sModel):
    path: str = Field(default="/", description="HTTP path.", max_length=2048, pattern=r"^/[^\s]*$")
    port: int = Field(ge=1, le=65535, description="Container port.")


class TCPSocketProbe(K8sModel):
    port: int = Field(ge=1, le=65535, description="Container port.")


class ExecProbe(K8sModel):
    command: list[Text] = Field(description="Command run in the container; exit 0 is healthy.", min_length=1,
                                max_length=64)


class Probe(K8sModel):
    model_config = _one_of("httpGet", "tcpSocket", "exec", what="probe")

    http_get: HTTPGetProbe | None = Field(default=None, description="HTTP GET check.")
    tcp_socket: TCPSocketProbe | None = Field(default=None, description="TCP connect check.")
    exec: ExecProbe | None = Field(default=None, description="Command check.")
    initial_delay_seconds: int = Field(default=0, ge=0, le=86400, description="Delay before the first check.")
    period_seconds: int = Field(default=10, ge=1, le=86400, description="Check interval.")
    timeout_seconds: int = Field(default=1, ge=1, le=3600, description="Check timeout.")
    failure_threshold: int = Field(default=3, ge=1, le=1000, description="Consecutive failures before unhealthy.")


class ModelSpec(K8sModel):
    """Language-model settings; they join the config hierarchy as model.<key> keys."""

    provider: str = Field(default="", description="Model provider, e.g. openai, anthropic, vllm.", max_length=63)
    name: str = Field(default="", description="Model name.", max_length=NAME_LEN)
    endpoint: str = Field(default="", description="Model API endpoint.", max_length=2048)
    parameters: dict[Name, Text] = Field(default_factory=dict, description="Model parameters, e.g. temperature.",
                                         max_length=MAX_MAP, json_schema_extra=_CONFIG_KEYS)


class ServiceAccountSpec(K8sModel):
    automount_token: bool = Field(
        default=False, description="Mount the ServiceAccount token into the pods (off unless the agent needs it)."
    )
    annotations: dict[str, Text] = annotations_field(
        "Annotations of the ServiceAccount (e.g. workload identity); changing them needs create on "
        "serviceaccounts (admission-checked)."
    )


# ---- analysis --------------------------------------------------------------------------------


class JobProvider(CheckJob):
    """The measurement passes when the Job succeeds (exit 0) and fails when it fails."""

    active_deadline_seconds: int = Field(default=300, ge=1, le=86400, description="Wall-clock limit of one Job.")


class HTTPHeader(K8sModel):
    name: str = Field(description="Header name (not Host).", min_length=1, max_length=256,
                      pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
                      json_schema_extra={"x-kubernetes-validations": [
                          {"rule": "self.lowerAscii() != 'host'", "message": "the Host header cannot be set"}]})
    value: str = Field(description="Header value.", max_length=TEXT_LEN, pattern=r"^[^\r\n]*$")


class HTTPProvider(K8sModel):
    """GET a URL; the JSON body (or the value at jsonPath) is ``result`` in the conditions.

    The URL may use {{service}}, {{canaryService}}, {{previewService}}, {{stableService}},
    {{namespace}}, {{agent}} and {{revision}}; Service names expand to their cluster DNS names.
    """

    url: str = Field(
        description="URL to GET (templated, see above); only hosts the operator allows (by default Services of "
        "the Agent's namespace).", min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$",
    )
    headers: list[HTTPHeader] = Field(default_factory=list, description="Request headers.", max_length=16)
    json_path: str = Field(default="", description="Path into the JSON body, e.g. $.checks.ok or {.ok}; only the "
                           "value found there is kept (clipped) in status.", max_length=256)
    timeout_seconds: int = Field(default=5, ge=1, le=60, description="Request timeout.")


class PrometheusProvider(K8sModel):
    """An instant query; ``result`` is a list of sample values (vector) or a number (scalar)."""

    address: str = Field(
        description="Prometheus base URL, e.g. http://prometheus.monitoring:9090; one of the operator's "
        "configured Prometheus endpoints or a Service of the Agent's namespace.",
        min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$",
    )
    query: str = Field(description="PromQL (templated like the HTTP URL).", min_length=1, max_length=TEXT_LEN)
    timeout_seconds: int = Field(default=5, ge=1, le=60, description="Query timeout.")


class TasksProvider(K8sModel):
    """Compare the canary revision's tasks with the stable revision's since the analysis step began.

    ``result.canary`` and ``result.stable`` each have count, rejected, rejectionRate (first review
    decision a rejection), firstPassRate (first submission passed its gates at the first attempt),
    done, medianCycleSeconds (InProgress to Done) and meanCost (quota units committed by the task's
    moves); rates and the median are null without data. Tasks count for a revision by the annotation
    revision.agentops.dev/<agent> the worker library stamps (only the Agent's ServiceAccount may).
    """

    min_count: int = Field(
        default=1, ge=1, le=10000,
        description="Decided tasks each side needs; with fewer the measurement is Inconclusive (the rollout "
                    "pauses for a human unless inconclusiveLimit allows more measurements).",
    )


class Metric(K8sModel):
    model_config = _one_of("job", "http", "prometheus", "tasks", what="metric provider")

    name: str = Field(description="Metric name, unique within the analysis.", pattern=_DNS_LABEL, max_length=30)
    count: int = Field(default=1, ge=1, le=100, description="Measurements to take.")
    interval_seconds: int = Field(default=10, ge=1, le=86400, description="Time between measurements.")
    initial_delay_seconds: int = Field(default=0, ge=0, le=86400, description="Wait before the first measurement.")
    failure_limit: int = Field(default=0, ge=0, le=100, description="Failed measurements tolerated.")
    inconclusive_limit: int = Field(default=0, ge=0, le=100, description="Inconclusive measurements tolerated.")
    consecutive_error_limit: int = Field(default=4, ge=0, le=100, description="Provider errors in a row tolerated.")
    success_condition: str = Field(
        default="", description="CEL expression on `result` that means success, e.g. result[0] >= 0.95.",
        max_length=1024,
    )
    failure_condition: str = Field(
        default="", description="CEL expression on `result` that means failure; neither matching is inconclusive.",
        max_length=1024,
    )
    job: JobProvider | None = Field(default=None, description="Job provider.")
    http: HTTPProvider | None = Field(default=None, description="HTTP provider.")
    prometheus: PrometheusProvider | None = Field(default=None, description="Prometheus provider.")
    tasks: TasksProvider | None = Field(
        default=None, description="Task-outcome provider: canary tasks against stable tasks (canary strategy)."
    )


class Analysis(K8sModel):
    metrics: list[Metric] = Field(description="Metrics, all of which must pass; names are unique.", min_length=1,
                                  max_length=10, json_schema_extra=unique_by("name"))


# ---- strategies ------------------------------------------------------------------------------


class PauseSpec(K8sModel):
    duration_seconds: int | None = Field(default=None, ge=0, le=31_622_400,
                                         description="Pause length; unset: until promoted.")


class CanaryStep(K8sModel):
    model_config = _one_of("setWeight", "pause", "analysis", what="canary step")

    set_weight: int | None = Field(default=None, ge=0, le=100, description="Percent of replicas on the canary.")
    pause: PauseSpec | None = Field(default=None, description="Pause for a duration, or until promoted.")
    analysis: Analysis | None = Field(default=None, description="Inline analysis; failure aborts.")


class CanaryStrategy(K8sModel):
    steps: list[CanaryStep] = Field(default_factory=list, description="Steps; after the last, full promotion.",
                                    max_length=50)


class BlueGreenStrategy(K8sModel):
    auto_promotion_enabled: bool = Field(default=True, description="Promote without a human once ready.")
    auto_promotion_seconds: int | None = Field(default=None, ge=0, le=31_622_400,
                                               description="Wait this long before promoting.")
    preview_replica_count: int | None = Field(default=None, ge=0, le=1000, description="Preview size (default: full).")
    scale_down_delay_seconds: int = Field(
        default=30, ge=0, le=31_622_400, description="Keep the old revision this long."
    )
    pre_promotion_analysis: Analysis | None = Field(default=None, description="Must pass before switching.")
    post_promotion_analysis: Analysis | None = Field(default=None, description="Failure switches back.")


class RollingStrategy(K8sModel):
    max_surge: str = Field(default="25%", pattern=_INT_OR_PERCENT,
        max_length=8, description="Extra pods during the update.")
    max_unavailable: str = Field(default="0", pattern=_INT_OR_PERCENT, max_length=8,
                                 description="Pods that may be unavailable.")
    analysis: Analysis | None = Field(default=None, description="Post-update analysis; failure rolls back.")


class Strategy(K8sModel):
    type: Literal["rolling", "canary", "blueGreen"] = Field(default="rolling", description="Delivery strategy.")
    progress_deadline_seconds: int = Field(
        default=600, ge=1, le=86400, description="Pods must be ready within this time, else the rollout is rolled back."
    )
    rolling: RollingStrategy | None = Field(default=None, description="Rolling settings.")
    canary: CanaryStrategy | None = Field(default=None, description="Canary settings.")
    blue_green: BlueGreenStrategy | None = Field(default=None, description="Blue-green settings.")


class QueueAutoscaling(K8sModel):
    min_replicas: int = Field(default=0, ge=0, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    tasks_per_replica: int = Field(default=1, ge=1, le=1000, description="Open tasks one replica handles.")


class Autoscaling(K8sModel):
    queue: QueueAutoscaling | None = Field(
        default=None,
        description="Scale on open tasks assigned to this Agent or waiting for its role; spec.replicas is "
                    "then ignored.",
    )


# ---- Agent -----------------------------------------------------------------------------------


class HeartbeatSpec(K8sModel):
    """How an external agent (no spec.image) shows it is alive: a coordination.k8s.io Lease named after the
    Agent, renewed like a kubelet's node lease (the worker library renews it every timeoutSeconds / 4)."""

    timeout_seconds: int = Field(
        default=40, ge=2, le=86400,
        description="The Agent is Ready while the Lease was renewed within this many seconds; after that it is "
                    "NotReady with reason HeartbeatExpired and gets no new tasks.",
    )
    hand_back_after_seconds: int | None = Field(
        default=300, ge=0, le=604800,
        description="Open tasks of an external agent NotReady (HeartbeatExpired) for this long are handed back: "
                    "reassigned to another Ready agent of the stage's role, with a handoff record saying why. "
                    "Unset (null): never.",
    )


class AgentSpec(K8sModel):
    role: str = Field(description="What the agent does, e.g. developer, qa, deployer.", pattern=r"^[a-z0-9-]{1,63}$")
    description: str = Field(default="", description="Human description.", max_length=4096)
    version: str = Field(default="", description="Agent version label.", max_length=63,
                         pattern=r"^([A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    capabilities: list[Capability] = Field(
        default_factory=list,
        description="Capability tags; also set as labels capability.agentops.dev/<tag>=true.",
        max_length=32,
    )
    image: str | None = Field(
        default=None,
        description="Container image of the agent; the operator runs it as a Deployment (setting or changing the "
                    "pod template needs create on deployments, admission-checked). Unset: an external agent (a "
                    "process anywhere) that the operator does not run: it proves it is alive by renewing the Lease "
                    "named after the Agent (see heartbeat), with the ServiceAccount agent-<name>.",
        min_length=1, max_length=512, pattern=IMAGE,
    )
    command: list[Text] = args_field("Entrypoint (default: the image's).")
    args: list[Text] = args_field("Arguments.")
    env: list[EnvVar] = env_field("Plain environment variables.")
    secret_env: list[SecretEnvVar] = Field(
        default_factory=list, description="Environment variables from Secrets (referenced, never copied).",
        max_length=MAX_ENV, json_schema_extra=unique_by("name"),
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Container port the agent's Service targets.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="Container resource requests and limits."
    )
    readiness_probe: Probe | None = Field(default=None, description="Readiness probe.")
    liveness_probe: Probe | None = Field(default=None, description="Liveness probe.")
    model: ModelSpec | None = Field(default=None, description="Language model the agent uses.")
    runtime: dict[Name, Text] = Field(
        default_factory=dict, description="Runtime parameters (joined to the config as runtime.<key>).",
        max_length=MAX_MAP, json_schema_extra=_CONFIG_KEYS,
    )
    pod_labels: dict[str, Short] = labels_field("Extra labels on the agent's pods.")
    pod_annotations: dict[str, Text] = annotations_field("Extra annotations on the pods.")
    service_account: ServiceAccountSpec = Field(
        default_factory=ServiceAccountSpec, description="The agent's ServiceAccount (agent-<name>)."
    )
    replicas: int = Field(default=1, ge=0, le=1000, description="Desired replicas (scale subresource).")
    config: dict[Name, Text] = Field(
        default_factory=dict,
        max_length=256,
        json_schema_extra=_CONFIG_KEYS,
        description="Instance-level configuration; overrides the environment ConfigMaps "
                    "(label agentops.dev/config=environment) and the global one key by key.",
    )
    max_concurrent_tasks: int = Field(default=1, ge=1, le=1000, description="Tasks the agent may hold at once.")
    strategy: Strategy = Field(default_factory=Strategy, description="How new revisions are delivered.")
    revision_history_limit: int = Field(
        default=10, ge=0, le=100, description="Old revisions kept as ControllerRevisions for undo."
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Queue-depth autoscaling.")
    heartbeat: HeartbeatSpec = Field(
        default_factory=HeartbeatSpec, description="Heartbeat of an external agent (ignored with spec.image)."
    )


# ---- status ----------------------------------------------------------------------------------


class QueueStatus(K8sModel):
    open_tasks: int = Field(default=0, description="Open tasks assigned to the agent or waiting for its role.")
    desired_replicas: int = Field(default=0, description="Replicas the queue asks for.")


class AgentStatus(RolloutState):
    """What the operator observed and did; the rollout planner's memory (``RolloutState``: stableRevision,
    rollout, analysis, lastAnalysis, acknowledgedCommands) is part of it as the planner's own type."""

    phase: Literal["Pending", "Progressing", "Healthy", "Paused", "Degraded"] | None = Field(
        default=None, description="Rollout phase."
    )
    reason: str | None = Field(default=None, description="Machine-readable reason of the phase.", max_length=TEXT_LEN)
    message: str | None = Field(default=None, description="Human-readable detail of the phase.", max_length=TEXT_LEN)
    observed_generation: int | None = Field(default=None, description="Last generation reconciled.")
    replicas: int = Field(default=0, description="Pods of all revisions.")
    desired_replicas: int | None = Field(default=None, description="Replicas the rollout aims for.")
    ready_replicas: int = Field(default=0, description="Ready pods.")
    available_replicas: int = Field(default=0, description="Available pods.")
    updated_replicas: int = Field(default=0, description="Available pods of the desired revision.")
    selector: str | None = Field(default=None, description="Label selector of the agent's pods (scale).")
    endpoint: str | None = Field(default=None, description="DNS name of the agent's Service.")
    desired_revision: str | None = Field(default=None, description="Revision the spec and config ask for.")
    current_revision: str | None = Field(default=None, description="Revision being rolled out (or served).")
    current_step: str | None = Field(default=None, description="Step in progress.")
    current_step_index: int | None = Field(default=None, description="Index of that step.")
    step_count: int | None = Field(default=None, description="Steps of the strategy.")
    canary_weight: int | None = Field(default=None, description="Percent of replicas on the new revision.")
    active_revision: str | None = Field(default=None, description="Revision the Service selects (blue-green).")
    preview_revision: str | None = Field(default=None, description="Revision of the preview Service.")
    config_sources: dict[str, str] = Field(
        default_factory=dict, description="Which level (global, environment, instance) set each config key."
    )
    queue: QueueStatus | None = Field(default=None, description="Queue-depth autoscaling inputs.")
    conditions: list[Condition] = conditions_field("agent")
    tasks_completed: int = Field(
        default=0,
        description="Stages this agent finished: each time it handed a task on to the next pipeline stage, "
                    "plus each task it took to Done (or, when another agent completed it, to Deployed). "
                    "Counted from the tasks' status by the operator; a hand-back of an agent that stopped "
                    "is not a finished stage.")
    active_tasks: int = Field(default=0, description="Open tasks assigned to this agent (Assigned, InProgress, "
                                                     "Review or Rejected).")
    last_active: datetime | None = Field(
        default=None,
        description="When the agent was last seen active: it moved a task, or (external agents) renewed its "
                    "heartbeat Lease.",
    )



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
        PrinterColumn("Desired", ".status.desiredReplicas", type="integer"),
        PrinterColumn("Revision", ".status.stableRevision"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Step", ".status.currentStep", priority=1),
        PrinterColumn("Weight", ".status.canaryWeight", type="integer", priority=1),
        PrinterColumn("Desired-Rev", ".status.desiredRevision", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    scale=ScaleSubresource(),
    root_validations=(
        {
            # Child names (<agent>-preview, <agent>-<revision>) and label values must stay <= 63 chars.
            "rule": "size(self.metadata.name) <= 40",
            "message": "Agent names are limited to 40 characters",
        },
    ),
)
