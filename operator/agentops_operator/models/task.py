"""AgentTask: a unit of work moving through the lifecycle in `lifecycle.py`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from ..lifecycle import Phase, cel_initial_rule, cel_request_rule
from ..quotaledger import MAX_RESOURCE, RESOURCE_PATTERN
from .base import (
    DNS_SUBDOMAIN,
    LONG_TEXT,
    NAME_LEN,
    TEXT_LEN,
    CheckJob,
    Condition,
    CRDInfo,
    K8sModel,
    Name,
    PrinterColumn,
    Text,
    args_field,
    conditions_field,
    unique_by,
)

PHASES = [p.value for p in Phase]
_TRANSITION_PATTERN = r"^(" + "|".join(PHASES) + r")->(" + "|".join(PHASES) + r")$"


class JobGateSpec(CheckJob):
    """A gate run as a Kubernetes Job; the move proceeds when the Job completes."""

    backoff_limit: int = Field(default=0, ge=0, le=10, description="Pod retries before the gate fails.")
    active_deadline_seconds: int = Field(
        default=600, ge=1, le=86400, description="Wall-clock limit of one attempt."
    )
    workspace_claim: str | None = Field(
        default=None, description="PersistentVolumeClaim mounted read-only at /workspace (e.g. the agent's).",
        max_length=NAME_LEN, pattern=DNS_SUBDOMAIN,
    )
    service_account_name: str | None = Field(
        default=None, description="ServiceAccount to run as; its token is mounted only when set. Setting it "
        "needs the create verb on jobs and impersonate on that ServiceAccount (admission-checked).",
        max_length=NAME_LEN, pattern=DNS_SUBDOMAIN,
    )


class Approvers(K8sModel):
    users: list[Name] = Field(default_factory=list, description="Usernames allowed to approve.", max_length=50)
    groups: list[Name] = Field(default_factory=list, description="Groups whose members may approve.", max_length=50)
    roles: list[Name] = Field(
        default_factory=list, description="Agent roles whose ServiceAccounts may approve.", max_length=50
    )


class ApprovalGateSpec(K8sModel):
    """Human-in-the-loop approval: N of the allowed approvers must approve."""

    required: int = Field(default=1, ge=1, le=20, description="Approvals needed.")
    approvers: Approvers = Field(
        default_factory=Approvers,
        description="Who may approve; empty means anyone the API server lets approve.",
    )
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=31_622_400, description="How long to wait for approvals (at most 366 days)."
    )
    on_timeout: Literal["Reject", "Wait"] = Field(
        default="Wait", description="After the timeout: reject the move, or keep waiting."
    )
    allow_self_approval: bool = Field(
        default=False,
        description="Separation of duties is the default: decisions by the move's requester (spec.by) or by the "
        "task's assignee do not count. true lets them count for this gate.",
    )


class Gate(K8sModel):
    name: str = Field(description="Gate name, unique within the transition.", pattern=r"^[a-z0-9-]{1,30}$")
    type: Literal["Job", "Approval", "Rollout"] = Field(
        description="How the gate is decided. Rollout (Done->Deployed): passes when the Agent named in "
        "spec.deploy.agent serves spec.deploy.image/version (and config) as its stable revision.")
    job: JobGateSpec | None = Field(default=None, description="Job gate settings (type Job).")
    approval: ApprovalGateSpec | None = Field(default=None, description="Approval settings (type Approval).")
    requires: list[Literal["output", "deployRef"]] = Field(
        default_factory=list, description="Move inputs that must be set before the gate runs.", max_length=2
    )
    required: bool | None = Field(
        default=None,
        description="Namespace gate policy only: the gate applies even when a task overrides the move's gates "
        "(a floor tasks may add to, never weaken). Not allowed in an AgentTask's spec.gates.",
    )


class TransitionGates(K8sModel):
    transition: str = Field(
        description="Move the gates guard, as 'From->To', e.g. 'InProgress->Review'.",
        pattern=_TRANSITION_PATTERN,
    )
    gates: list[Gate] = Field(
        default_factory=list, description="Gates, all of which must pass; names are unique.", max_length=16,
        json_schema_extra=unique_by("name"),
    )


class Stage(K8sModel):
    """A pipeline stage: while the task is in one of its phases, its agent holds the task."""

    name: str = Field(description="Stage name, e.g. dev, qa, deploy.", pattern=r"^[a-z0-9-]{1,30}$")
    phases: list[Literal["Assigned", "InProgress", "Review", "Rejected", "Done", "Deployed"]] = Field(
        description="Phases in which this stage holds the task.", max_length=6
    )
    agent: str | None = Field(default=None, description="A specific Agent.", max_length=NAME_LEN,
                              pattern=DNS_SUBDOMAIN)
    role: str | None = Field(default=None, description="Any Ready Agent with this role (least loaded).",
                             max_length=63)


class Cost(K8sModel):
    """Quota a move consumes: reserved when the move starts, committed when it is recorded."""

    resource: str = Field(description="Quota resource key, e.g. publish or tokens/<model>.",
                          max_length=MAX_RESOURCE, pattern=RESOURCE_PATTERN)
    amount: int = Field(default=1, ge=1, le=10**15, description="Units consumed.")
    phase: Literal["Assigned", "InProgress", "Review", "Done", "Deployed", "RolledBack"] = Field(
        description="Reaching this phase costs the amount."
    )


class Approval(K8sModel):
    id: str = Field(
        description="Unique id of this decision (the CLI generates one); entries are keyed by it.",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
    )
    approver: str = Field(description="Username of the approver; admission checks it is the caller.",
                          max_length=NAME_LEN)
    decision: Literal["Approved", "Rejected"] = Field(description="The approver's decision.")
    reason: str = Field(default="", description="Why.", max_length=4096)
    transition: str = Field(
        default="Review->Done", description="Move the decision is for.", pattern=_TRANSITION_PATTERN
    )
    groups: list[Name] = Field(
        default_factory=list, description="Approver's groups at the time; admission checks them.", max_length=50
    )


class DeployRef(K8sModel):
    version: str | None = Field(default=None, description="Version being deployed.", max_length=256)
    image: str | None = Field(default=None, description="Image reference (ideally by digest).", max_length=512)
    agent: str | None = Field(
        default=None, max_length=NAME_LEN, pattern=DNS_SUBDOMAIN,
        description="Agent that serves what is deployed: Done->Deployed gets a Rollout gate that passes once the "
        "Agent serves image/version (and config) as its stable revision and is Healthy; an undo or rollback of "
        "that revision later moves the task to RolledBack. Setting it needs get on that Agent "
        "(admission-checked). The operator never writes the Agent: the change reaches it by GitOps or the "
        "deploy Job.",
    )
    config: dict[Name, Text] = Field(
        default_factory=dict, max_length=64,
        description="Rollout gate: config keys the Agent's revision must have with these values (its merged "
        "config), to tell apart revisions of one image.",
    )
    command: list[Text] = args_field(
        "Deploy command run by the deploy gate; setting it needs the create verb on jobs (admission-checked)."
    )


class AgentTaskSpec(K8sModel):
    title: str = Field(description="Short summary of the work.", min_length=1, max_length=256)
    description: str = Field(default="", description="What is to be done.", max_length=32768)
    priority: int = Field(default=100, ge=0, le=1000, description="Higher is scheduled first.")
    requested_phase: Phase = Field(
        default=Phase.BACKLOG,
        max_length=16,
        description=(
            "Phase the requester wants next. The operator runs the move's gates and records the "
            "phase in status.phase only when they pass. Illegal moves are refused at admission."
        ),
    )
    by: str | None = Field(default=None, description="Who requests the move; admission checks it is the caller.",
                           max_length=NAME_LEN)
    retry: int = Field(
        default=0, ge=0, le=1_000_000, description="Bump to retry the failed gates of the requested move."
    )
    output: str | None = Field(default=None, description="Deliverable reference (URL, path, PR).", max_length=TEXT_LEN)
    notes: str = Field(default="", description="Notes for the next stage.", max_length=LONG_TEXT)
    deploy: DeployRef | None = Field(default=None, description="What to deploy and how (Done->Deployed).")
    assignee: str | None = Field(default=None, description="Agent to work on the task; unset for auto-assignment.",
                                 max_length=NAME_LEN, pattern=DNS_SUBDOMAIN)
    role: str | None = Field(default=None, description="Role an auto-assigned Agent must have.", max_length=63)
    capabilities: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, description="Capability tags an auto-assigned Agent must all have.", max_length=32
    )
    pipeline: list[Stage] = Field(
        default_factory=list, description="Stages handing the task from agent to agent (e.g. dev, qa, deploy).",
        max_length=16, json_schema_extra=unique_by("name"),
    )
    gates: list[TransitionGates] | None = Field(
        default=None,
        description="Gate overrides per move (one entry per move); unset moves use the namespace policy, "
        "then the default policy. Job gates need the create verb on jobs (admission-checked).",
        max_length=16,
        json_schema_extra={
            **unique_by("transition"),
            "x-kubernetes-validations": [{
                "rule": "self.all(t, !has(t.gates) || t.gates.all(g, !has(g.required)))",
                "message": "gates[].required is for namespace gate policies only; a task cannot mark gates required",
            }],
        },
    )
    costs: list[Cost] = Field(default_factory=list, description="Quota consumed by moves.", max_length=16)
    approvals: list[Approval] = Field(
        default_factory=list,
        description="Approval decisions, append-only (admission-checked), unique by id.",
        max_length=100,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )
    history_limit: int = Field(
        default=50, ge=1, le=100, description="Transitions kept in status.history (all are also Events)."
    )


class RolloutGateStatus(K8sModel):
    """What a Rollout gate saw of its Agent's rollout (models the gate result's `rollout`)."""

    agent: str = Field(description="Agent named in spec.deploy.agent.", max_length=TEXT_LEN)
    revision: str | None = Field(default=None, description="Agent revision serving the task's image.",
                                 max_length=TEXT_LEN)
    phase: str | None = Field(default=None, description="Agent phase.", max_length=TEXT_LEN)
    step: str | None = Field(default=None, description="Rollout step in progress.", max_length=TEXT_LEN)
    step_index: int | None = Field(default=None, description="Index of that step.")
    step_count: int | None = Field(default=None, description="Steps of the strategy.")
    weight: int | None = Field(default=None, description="Canary weight (percent).")
    analysis: str | None = Field(default=None, description="Analysis phase and message.", max_length=TEXT_LEN)
    reason: str | None = Field(default=None, description="The Agent's reason (e.g. AnalysisFailed).",
                               max_length=TEXT_LEN)
    summary: str = Field(default="", description="One line for kubectl get.", max_length=TEXT_LEN)


class GateResult(K8sModel):
    name: str = Field(description="Gate name.", max_length=TEXT_LEN)
    type: str = Field(description="Job, Approval or Rollout.", max_length=TEXT_LEN)
    transition: str = Field(description="The move it guards.", max_length=TEXT_LEN)
    attempt: int = Field(default=1, description="Attempt number (Job gates).")
    state: Literal["Pending", "Running", "Passed", "Failed", "Waiting"] = Field(description="Outcome so far.")
    job: str | None = Field(default=None, description="Job of this attempt.", max_length=TEXT_LEN)
    message: str = Field(default="", description="Why it passed or failed.", max_length=LONG_TEXT)
    generation: int | None = Field(default=None, description="Task generation the attempt ran for.")
    started_at: datetime | None = Field(default=None, description="When the attempt started.")
    finished_at: datetime | None = Field(default=None, description="When it ended.")
    rollout: RolloutGateStatus | None = Field(default=None, description="Rollout gates: the Agent's rollout.")


class HistoryEntry(K8sModel):
    from_phase: str = Field(alias="from", description="Phase before.", max_length=TEXT_LEN)
    to: str = Field(description="Phase after.", max_length=TEXT_LEN)
    at: datetime = Field(description="When the operator recorded the move.")
    by: str = Field(default="", description="Who asked for it (admission-checked), or the operator.",
        max_length=TEXT_LEN)
    gates: list[GateResult] = Field(default_factory=list, description="Gate results of the move.", max_length=64)
    output: str | None = Field(default=None, description="Deliverable at the time.", max_length=LONG_TEXT)
    deploy_ref: str | None = Field(default=None, description="Deploy reference recorded.", max_length=TEXT_LEN)
    notes: str | None = Field(default=None, description="Notes at the time.", max_length=LONG_TEXT)
    reason: str | None = Field(default=None, description="Why the operator moved the task itself (a system "
                               "move: an alert, an Agent rollback).", max_length=LONG_TEXT)
    key: str | None = Field(default=None, description="Idempotency key of a system move (e.g. an alert "
                            "fingerprint); a key recorded here is never carried out again.", max_length=TEXT_LEN)


class SystemRequest(K8sModel):
    """A move the operator itself was asked to make (never a spec write): an alert, an Agent rollback."""

    phase: Phase = Field(description="Phase to move to.", max_length=16)
    by: str = Field(description="Who asked (the alert receiver, the operator).", max_length=TEXT_LEN)
    reason: str = Field(default="", description="Why.", max_length=LONG_TEXT)
    key: str = Field(description="Idempotency key: one move per key.", max_length=TEXT_LEN)
    requested_at: datetime | None = Field(default=None, description="When it was asked for.")


class Handoff(K8sModel):
    stage: str = Field(description="Stage entered.", max_length=TEXT_LEN)
    from_agent: str | None = Field(default=None, description="Previous holder.", max_length=TEXT_LEN)
    to_agent: str | None = Field(default=None, description="New holder.", max_length=TEXT_LEN)
    at: datetime = Field(description="When.")
    outputs: list[Text] = Field(default_factory=list, description="Outputs so far.", max_length=16)
    notes: str | None = Field(default=None, description="Notes handed over.", max_length=LONG_TEXT)
    rejections: list[Text] = Field(default_factory=list, description="Rejection reasons to address.", max_length=16)


class Reservation(K8sModel):
    quota: str = Field(description="Quota name.", max_length=TEXT_LEN)
    resource: str = Field(description="Resource key.", max_length=TEXT_LEN)
    amount: int = Field(description="Units reserved.")
    transition: str = Field(description="Move the reservation is for.", max_length=TEXT_LEN)


class ObservedApproval(K8sModel):
    id: str = Field(description="Id of the decision in spec.approvals.", max_length=TEXT_LEN)
    approver: str = Field(description="Who.", max_length=TEXT_LEN)
    decision: str = Field(description="Approved or Rejected.", max_length=TEXT_LEN)
    reason: str = Field(default="", description="Why.", max_length=LONG_TEXT)
    transition: str = Field(description="Move.", max_length=TEXT_LEN)
    observed_at: datetime = Field(description="When the operator first saw it.")


class AgentTaskStatus(K8sModel):
    phase: Phase | None = Field(default=None, description="Recorded phase.", max_length=16)
    assignee: str | None = Field(default=None, description="Agent holding the task.", max_length=TEXT_LEN)
    stage: str | None = Field(default=None, description="Current pipeline stage.", max_length=TEXT_LEN)
    observed_generation: int | None = Field(default=None, description="Last generation reconciled.")
    conditions: list[Condition] = conditions_field("task")
    gates: list[GateResult] = Field(default_factory=list, description="Gates of the pending move.", max_length=256)
    history: list[HistoryEntry] = Field(default_factory=list, description="Latest transitions.", max_length=100)
    handoffs: list[Handoff] = Field(default_factory=list, description="Latest handoffs.", max_length=50)
    approvals: list[ObservedApproval] = Field(default_factory=list, description="Approvals seen.", max_length=100)
    reservations: list[Reservation] = Field(default_factory=list, description="Quota held.", max_length=256)
    deploy_ref: str | None = Field(default=None, description="Deployed version / digest.", max_length=TEXT_LEN)
    completed_by: str | None = Field(default=None, description="Agent that held the task when it reached Done.",
        max_length=TEXT_LEN)
    transitions: int = Field(default=0, description="Transitions recorded over the task's life.")
    last_transition_time: datetime | None = Field(default=None, description="When the phase last changed.")
    system_request: SystemRequest | None = Field(
        default=None, description="A move the operator was asked to make itself, carried out like a user's "
        "move and then cleared.")


CRD = CRDInfo(
    kind="AgentTask",
    plural="agenttasks",
    singular="agenttask",
    short_names=("at", "atask"),
    spec=AgentTaskSpec,
    status=AgentTaskStatus,
    description="A unit of work for agents, moved through gated phases with an audit trail.",
    printer_columns=(
        PrinterColumn("Phase", ".status.phase", description="Recorded phase."),
        PrinterColumn("Requested", ".spec.requestedPhase", description="Requested phase."),
        PrinterColumn("Assignee", ".status.assignee"),
        PrinterColumn("Priority", ".spec.priority", type="integer"),
        PrinterColumn(
            "Blocked", ".status.conditions[?(@.type=='TransitionBlocked')].reason", priority=1
        ),
        PrinterColumn("Rollout", ".status.gates[?(@.type=='Rollout')].rollout.summary",
                      description="Rollout gate: the Agent's rollout of the task's image."),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    root_validations=(cel_request_rule(), cel_initial_rule()),
)
