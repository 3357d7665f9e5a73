"""What an AgentTask reconcile decides, as a pure function: `plan_task(inputs) -> MovePlan`.

The handler (`handlers/task.py`) observes (the task and its status, its gate Jobs, the namespace
gate policy, matching Quotas, approver roles) and applies what the plan says: quota releases,
reservations and commits, gate Jobs to create or stop, then one status write and its Events. An
action that fails in a way the plan depends on (a reservation refused, a Job's ServiceAccount
missing) becomes an observation, and the plan is made again with it — plan → apply → observe → plan,
as `rollout.step` does for Agents. Every status field of a task has this one decision point.

No I/O here: no `kube`, no cache, no clock (``inputs.now``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import deploygate, gateimages, names, podsecurity, taskflow
from .conditions import get_condition, set_condition
from .lifecycle import Phase, Verdict, describe_allowed, is_legal, judge_request, transition_key
from .models.task import (
    AgentTaskSpec,
    AgentTaskStatus,
    ApprovalGateSpec,
    Gate,
    JobGateSpec,
    RolloutGateStatus,
    TransitionGates,
)
from .timeutil import format_time, parse_time

JOB_POLL_SECONDS = 30.0  # a safety net: gate Job changes arrive through the watch
MAX_HANDOFFS = 20
# Status must stay far below etcd's 1.5 MB object limit: history copies are truncated (the full text
# stays in spec and in the Events).
MAX_TEXT = 512
MAX_MESSAGE = 256
DEFAULT_HISTORY_LIMIT = 50
SYSTEM_RETRY_SECONDS = 0.5

Event = tuple[str, str, str]  # (type, reason, message)


def clip(text: str | None, limit: int = MAX_TEXT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def label_transition(key: str) -> str:
    return key.replace("->", "-")


def holder(name: str, uid: str, key: str, round_: int) -> str:
    """The quota ledger's holder of one move's reservation: one per (task uid, move, round)."""
    return f"AgentTask/{name}/{uid}/{key}/{round_}"


# ---- actions the handler applies, in order --------------------------------------------------


@dataclass(frozen=True)
class Release:
    quota: str
    holder: str
    resource: str
    amount: int


@dataclass(frozen=True)
class Reserve:
    quota: str
    resource: str
    amount: int
    holder: str
    reason: str


@dataclass(frozen=True)
class Commit:
    quota: str
    holder: str
    resource: str
    amount: int


@dataclass(frozen=True)
class CreateJob:
    gate: str
    name: str
    key: str
    round: int
    attempt: int


@dataclass(frozen=True)
class StopJob:
    name: str


Action = Release | Reserve | Commit | CreateJob | StopJob


# ---- observations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A reservation the plan asked for was refused; `granted` were granted before it in that pass."""

    quota: str
    message: str
    reset_at: datetime | None = None
    granted: tuple[tuple[str, str, int], ...] = ()  # (quota, resource, amount)


@dataclass(frozen=True)
class MoveInputs:
    obj: dict[str, Any]  # the task as observed (metadata, spec); its status is `status`
    spec: AgentTaskSpec
    status: AgentTaskStatus  # the observed status (after hand-back), read with the model
    now: datetime
    policy: list[TransitionGates] | None = None
    policy_error: str | None = None
    jobs: tuple[dict[str, Any], ...] = ()  # the task's gate Jobs
    quotas: tuple[tuple[str, str], ...] = ()  # (name, resource) of the Quotas whose selector matches
    role_users: Mapping[str, frozenset[str]] = field(default_factory=dict)  # role -> agents' SA users
    agents: tuple[taskflow.AgentView, ...] | None = None  # for pipeline stages picked by role
    refusal: Refusal | None = None
    missing_refs: Mapping[str, str] = field(default_factory=dict)  # gate name -> what is missing
    failure_details: Mapping[str, str] = field(default_factory=dict)  # failed Job name -> why
    rollout: deploygate.GateView | None = None  # the Rollout gate's view of spec.deploy.agent
    policy_configmaps: tuple[dict[str, Any], ...] = ()  # the namespace's gate-policy ConfigMaps (image allow-list)
    history_limit: int = DEFAULT_HISTORY_LIMIT  # the operator's cap

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"].get("uid", ""))

    @property
    def generation(self) -> int:
        return int(self.obj["metadata"].get("generation", 1))


@dataclass
class Draft:
    """Status under construction, the Events to emit once it is written, and the actions before it."""

    obj: dict[str, Any]
    status: dict[str, Any]
    now: datetime
    events: list[Event] = field(default_factory=list)
    transitions: list[tuple[str, str]] = field(default_factory=list)  # (from, to) recorded by this write
    actions: list[Action] = field(default_factory=list)
    gate_outcomes: list[tuple[str, str]] = field(default_factory=list)  # (type, Passed|Failed), new ones

    @property
    def gen(self) -> int:
        return int(self.obj["metadata"].get("generation", 1))

    def condition(self, type_: str, status: bool, reason: str, message: str, event: str | None = None) -> None:
        before = get_condition(self.status.get("conditions"), type_)
        self.status["conditions"] = set_condition(
            self.status.get("conditions"), type_, status, reason, message, self.gen, self.now
        )
        changed = before is None or (before.get("status"), before.get("reason"), before.get("message")) != (
            "True" if status else "False", reason, message)
        if event and changed:
            self.events.append((event, reason, message))


@dataclass(frozen=True)
class MovePlan:
    status: dict[str, Any]
    events: tuple[Event, ...]
    transitions: tuple[tuple[str, str], ...]
    actions: tuple[Action, ...]
    gate_outcomes: tuple[tuple[str, str], ...]
    requeue: float | None
    assign: bool = False  # the namespace's assignment pass decides this task (Backlog)


# ---- entry point -----------------------------------------------------------------------------


def wire_status(status: AgentTaskStatus) -> dict[str, Any]:
    """The status as the API server holds it: the fields it has (no defaults added), camelCase."""
    return status.model_dump(by_alias=True, mode="json", exclude_unset=True)


def plan_task(inputs: MoveInputs) -> MovePlan:
    """The whole decision of one task reconcile (a valid spec)."""
    d = Draft(inputs.obj, wire_status(inputs.status), inputs.now)
    st = d.status
    st.setdefault("phase", Phase.BACKLOG.value)
    st.setdefault("transitions", 0)
    d.condition("Accepted", True, "Valid", "spec is valid")
    sync_approvals(d, inputs.spec)
    recorded = Phase(st["phase"])
    requested = inputs.spec.requested_phase
    system = st.get("systemRequest")
    if not system and recorded == Phase.BACKLOG and requested in (Phase.BACKLOG, Phase.ASSIGNED):
        # Assignment is decided for the whole namespace at once (priority order, capacity), and its
        # write initialises the task too: one write, not two.
        return _plan(d, None, assign=True)
    if system:
        return _plan(d, _system_move(d, inputs, recorded, system))
    verdict = judge_request(recorded, requested)
    if verdict is Verdict.ILLEGAL and superseded(st, requested):
        verdict = Verdict.IDLE
    requeue: float | None = None
    if verdict is Verdict.IDLE:
        _release_all(d, inputs, keep=None)
        if (get_condition(st.get("conditions"), "TransitionBlocked") or {}).get("status") == "True":
            d.condition("TransitionBlocked", False, "NoPendingMove", f"task is {recorded.value}")
        d.condition("Progressing", False, "Idle", f"task is {recorded.value}")
    elif verdict is Verdict.ILLEGAL:
        _release_all(d, inputs, keep=None)
        d.condition("TransitionBlocked", True, "IllegalTransition", illegal_message(st, recorded, requested),
                    "Warning")
        d.condition("Progressing", False, "Blocked", "the requested move is not allowed")
    else:
        requeue = _move(d, inputs, recorded, requested)
    return _plan(d, requeue)


def _plan(d: Draft, requeue: float | None, assign: bool = False) -> MovePlan:
    d.status["observedGeneration"] = d.gen
    return MovePlan(status=d.status, events=tuple(d.events), transitions=tuple(d.transitions),
                    actions=tuple(d.actions), gate_outcomes=tuple(d.gate_outcomes), requeue=requeue,
                    assign=assign)


def invalid_spec(obj: dict[str, Any], status: dict[str, Any], now: datetime, fields: str) -> MovePlan:
    d = Draft(obj, copy.deepcopy(status), now)
    d.condition("Accepted", False, "InvalidSpec", fields, "Warning")
    return _plan(d, None)


def superseded(st: dict[str, Any], requested: Phase) -> bool:
    """The user's request was reached, then the operator itself moved the task on (a system move,
    e.g. Deployed -> RolledBack after an alert): the old request is history, not an illegal move."""
    history = st.get("history") or []
    return bool(history) and bool(history[-1].get("key")) and history[-1].get("from") == requested.value


def illegal_message(st: dict[str, Any], recorded: Phase, requested: Phase) -> str:
    msg = f"cannot move from {recorded.value} to {requested.value}; allowed from {recorded.value}: " \
          f"{describe_allowed(recorded)}"
    if recorded == Phase.REJECTED:
        last = next((h for h in reversed(st.get("history") or []) if h.get("to") == Phase.REJECTED.value), None)
        if last:
            msg = f"review rejected ({last.get('notes') or 'no reason'}); request InProgress to rework. " + msg
    return msg


def _system_move(d: Draft, inputs: MoveInputs, recorded: Phase, req: dict[str, Any]) -> float | None:
    """Carry out status.systemRequest like a user's move; cleared once recorded (or refused)."""
    target = Phase(req["phase"])
    if not is_legal(recorded, target):
        d.status.pop("systemRequest", None)
        d.events.append(("Warning", "SystemMoveRefused",
                         f"{req.get('by')}: cannot move from {recorded.value} to {target.value} "
                         f"({req.get('reason') or 'no reason'})"))
        return SYSTEM_RETRY_SECONDS  # the user's own request, if any, is judged next
    requeue = _move(d, inputs, recorded, target, system=req)
    if d.status.get("phase") != recorded.value:
        d.status.pop("systemRequest", None)
    return requeue


# ---- approvals -------------------------------------------------------------------------------


def sync_approvals(d: Draft, spec: AgentTaskSpec) -> None:
    """Record when each decision was first seen: the audit trail's 'when' is the operator's clock."""
    seen = list(d.status.get("approvals") or [])
    ids = {a.get("id") for a in seen}
    for a in spec.approvals:
        if a.id in ids:
            continue
        ids.add(a.id)
        seen.append({"id": a.id, "approver": a.approver, "decision": a.decision,
                     "reason": clip(a.reason, MAX_MESSAGE), "transition": a.transition,
                     "observedAt": format_time(d.now)})
        d.events.append(("Normal", "ApprovalRecorded",
                         f"{a.decision} by {a.approver} for {a.transition}: {a.reason or 'no reason'}"))
    if seen:
        d.status["approvals"] = seen[-100:]


def _approval_views(d: Draft, spec: AgentTaskSpec) -> list[taskflow.ApprovalView]:
    groups = {a.id: tuple(a.groups) for a in spec.approvals}
    return [
        taskflow.ApprovalView(a["approver"], a["decision"], a.get("reason", ""), a["transition"],
                              groups.get(a.get("id"), ()), parse_time(a["observedAt"]) or d.now)
        for a in d.status.get("approvals") or []
    ]


def _approval_gate(d: Draft, inputs: MoveInputs, gate: Gate, key: str,
                   since: datetime) -> tuple[dict[str, Any], taskflow.ApprovalOutcome | None]:
    cfg = gate.approval or ApprovalGateSpec()
    author = work_author(d.status)
    # Separation of duties is about the work: who put it up for this decision (the requester of the
    # move into the current phase, e.g. -> Review) and who did it. A reviewer who approves and asks for
    # the next move in one step (`kubectl agentops task approve --move`) is neither.
    history = d.status.get("history") or []
    submitter = history[-1].get("by") if history else inputs.spec.by
    role_users: set[str] = set()
    for role in cfg.approvers.roles:
        role_users |= inputs.role_users.get(role, frozenset())
    outcome = taskflow.evaluate_approvals(cfg, _approval_views(d, inputs.spec), key, since, d.now, role_users,
                                          requester=submitter,
                                          assignee=names.agent_sa_username(inputs.namespace, author)
                                          if author else None)
    state = {"Passed": "Passed", "Waiting": "Waiting", "Rejected": "Failed", "TimedOut": "Failed"}[outcome.state]
    res = {"name": gate.name, "type": "Approval", "transition": key, "attempt": 1, "state": state,
           "message": outcome.message, "generation": d.gen}
    return res, outcome if outcome.state in ("Rejected", "TimedOut") else None


def approver_roles(spec: AgentTaskSpec, policy: list[TransitionGates] | None) -> set[str]:
    """Roles named by any approval gate the task could meet (the handler resolves their users)."""
    roles: set[str] = set()
    for entry in [*(spec.gates or []), *(policy or [])]:
        for g in entry.gates:
            if g.approval:
                roles.update(g.approval.approvers.roles)
    for gates in taskflow.DEFAULT_POLICY.values():
        for g in gates:
            if g.approval:
                roles.update(g.approval.approvers.roles)
    return roles


def work_author(st: dict[str, Any]) -> str | None:
    """The agent whose work is up for approval: in a pipeline, the one that handed the task into its
    current stage (the reviewer now holds it); otherwise the assignee."""
    stage = st.get("stage")
    into: dict[str, Any] | None = None
    for h in reversed(st.get("handoffs") or []):
        if h.get("stage") != stage:
            break
        into = h  # the earliest record of the current stage: the handoff into it
    if stage is not None and into is not None and into.get("fromAgent"):
        return str(into["fromAgent"])
    assignee = st.get("assignee")
    return str(assignee) if assignee else None


def approval_requeue(gates: list[Gate], since: datetime, now: datetime) -> float | None:
    timeouts = [g.approval.timeout_seconds for g in gates if g.approval and g.approval.timeout_seconds]
    if not timeouts:
        return None
    left = min(timeouts) - (now - since).total_seconds()
    return max(1.0, left + 0.5) if left > 0 else None


# ---- moves -----------------------------------------------------------------------------------


def missing_inputs(spec: AgentTaskSpec, gates: list[Gate]) -> list[str]:
    missing = []
    for gate in gates:
        if "output" in gate.requires and not spec.output:
            missing.append("spec.output")
        if "deployRef" in gate.requires and not (spec.deploy and (spec.deploy.version or spec.deploy.image)):
            missing.append("spec.deploy.version or spec.deploy.image")
    missing += deploygate.missing_inputs(spec.deploy, gates)
    return sorted(set(missing))


def _move(d: Draft, inputs: MoveInputs, recorded: Phase, requested: Phase,
          system: dict[str, Any] | None = None) -> float | None:
    st, spec = d.status, inputs.spec
    key = transition_key(recorded, requested)
    _release_all(d, inputs, keep=key)
    if inputs.policy_error is not None:
        d.condition("TransitionBlocked", True, "InvalidPolicy", inputs.policy_error, "Warning")
        d.condition("Progressing", False, "Blocked", "the namespace gate policy is invalid")
        return None
    gates = deploygate.with_rollout_gate(key, spec.deploy, taskflow.resolve_gates(key, spec.gates, inputs.policy))
    refused_image = gateimages.refusal(spec, key, gates, list(inputs.policy_configmaps))
    if refused_image:  # the namespace's gate-image allow-list: no Job is started
        d.condition("TransitionBlocked", True, "ImageNotAllowed", refused_image, "Warning")
        d.condition("Progressing", False, "Blocked", "a gate image is not allowed in this namespace")
        return None
    missing = missing_inputs(spec, gates)
    if missing:
        d.condition("TransitionBlocked", True, "MissingInput", f"{key} needs {', '.join(missing)} to be set",
                    "Warning")
        d.condition("Progressing", False, "Blocked", "waiting for input")
        return None
    refused = _reserve_costs(d, inputs, key, requested)
    if refused is not None:
        message, retry_in = refused
        d.condition("TransitionBlocked", True, "QuotaExceeded", message, "Warning")
        d.condition("Progressing", False, "Blocked", "waiting for quota")
        return retry_in

    results: list[dict[str, Any]] = []
    outcome = "passed"
    message = ""
    round_ = int(st.get("transitions", 0))
    since = (parse_time(st.get("lastTransitionTime")) or parse_time(inputs.obj["metadata"].get("creationTimestamp"))
             or d.now)
    rejection: taskflow.ApprovalOutcome | None = None
    for gate in gates:
        if gate.type == "Job":
            res = _job_gate(d, inputs, gate, key, round_)
        elif gate.type == deploygate.ROLLOUT:
            res = _rollout_gate(d, inputs, gate, key)
        else:
            res, rejection = _approval_gate(d, inputs, gate, key, since)
        results.append(res)
        if res["state"] != "Passed":
            outcome = {"Running": "running", "Pending": "running", "Waiting": "waiting"}.get(res["state"], "failed")
            message = f"gate {gate.name}: {res['message']}"
            break
    before = {(g["name"], g.get("attempt"), g["state"]) for g in st.get("gates") or []}
    for r in results:
        if r["state"] in ("Passed", "Failed") and (r["name"], r.get("attempt"), r["state"]) not in before:
            d.gate_outcomes.append((r["type"], r["state"]))
    st["gates"] = [g for g in st.get("gates") or [] if g["transition"] != key] + results

    if outcome == "passed":
        _commit_all(d, inputs, key)
        if system:
            record(d, spec, requested, str(system.get("by") or names.OPERATOR_USER), results,
                   history_limit=inputs.history_limit, agents=inputs.agents,
                   reason=system.get("reason") or None, key=system.get("key"))
        else:
            record(d, spec, requested, spec.by or names.OPERATOR_USER, results,
                   history_limit=inputs.history_limit, agents=inputs.agents)
        if requested == Phase.CANCELLED:
            # Cancelling stops the gates still running; finished Jobs stay as the audit trail.
            d.actions.extend(StopJob(j["metadata"]["name"]) for j in inputs.jobs
                             if taskflow.job_state(j)[0] == "Running")
        return None
    if outcome == "running":
        d.condition("TransitionBlocked", False, "GatesRunning", message)
        d.condition("Progressing", True, "GatesRunning", message)
        return JOB_POLL_SECONDS
    if outcome == "waiting":
        d.condition("TransitionBlocked", True, "AwaitingApproval", message, "Normal")
        d.condition("Progressing", False, "AwaitingApproval", message)
        return approval_requeue(gates, since, d.now)
    if rejection is not None:
        # The reviewer's decision moves the task itself: review -> rejected, back to the assignee.
        _release_all(d, inputs, keep=None)
        approver = rejection.approvers[0] if rejection.state == "Rejected" else names.OPERATOR_USER
        record(d, spec, Phase.REJECTED, approver, results, notes=rejection.message,
               rejections=list(rejection.rejections), history_limit=inputs.history_limit, agents=inputs.agents)
        return None
    _release_all(d, inputs, keep=None)
    d.condition("TransitionBlocked", True, "GateFailed", message, "Warning")
    d.condition("Progressing", False, "GateFailed", message)
    return None


# ---- Job gates -------------------------------------------------------------------------------


def _job_gate(d: Draft, inputs: MoveInputs, gate: Gate, key: str, round_: int) -> dict[str, Any]:
    mine = [j for j in inputs.jobs if (j["metadata"].get("labels") or {}).get("agentops.dev/gate") == gate.name
            and j["metadata"]["labels"].get("agentops.dev/transition") == label_transition(key)
            and j["metadata"]["labels"].get("agentops.dev/round") == str(round_)]
    decision = taskflow.decide_attempt(mine, d.gen, inputs.spec.retry)
    name = names.gate_job_name(inputs.name, key, gate.name, round_, decision.attempt)
    res: dict[str, Any] = {"name": gate.name, "type": "Job", "transition": key, "attempt": decision.attempt,
                           "job": name, "generation": d.gen}
    if decision.action == "create":
        missing = inputs.missing_refs.get(gate.name)
        if missing:
            # The Job would be created but its pods never start (the Job controller only records an
            # Event): say which field names what is missing, instead of "running" until the deadline.
            res.update(state="Failed", message=f"{missing}; fix it, then bump spec.retry")
            return res
        d.actions.append(CreateJob(gate.name, name, key, round_, decision.attempt))
        d.events.append(("Normal", "GateStarted",
                         f"{key}: gate {gate.name} attempt {decision.attempt} started as Job {name}"))
        res.update(state="Running", message=f"job {name} started", startedAt=format_time(d.now))
        return res
    job = decision.job or {}
    res["startedAt"] = (job.get("status") or {}).get("startTime")
    if decision.action == "wait":
        res.update(state="Running", message=f"job {name} running")
    elif decision.action == "passed":
        res.update(state="Passed", message=f"job {name} completed",
                   finishedAt=(job.get("status") or {}).get("completionTime"))
    else:
        reason = inputs.failure_details.get(name) or decision.message
        res.update(state="Failed", message=f"job {name} failed: {reason}; bump spec.retry (or change the "
                                           f"request) to run attempt {decision.attempt + 1}")
    return res


def _rollout_gate(d: Draft, inputs: MoveInputs, gate: Gate, key: str) -> dict[str, Any]:
    """The Rollout gate (spec.deploy.agent): passes when that Agent serves the task's revision as stable;
    shows the rollout's step, weight and analysis while it runs; fails when the Agent rolled it back."""
    view = inputs.rollout
    if view is None:  # no Agent named: deploygate.missing_inputs blocked the move before
        view = deploygate.GateView("Pending", "spec.deploy.agent: not set", RolloutGateStatus(agent=""))
    before: dict[str, Any] = next((g for g in d.status.get("gates") or []
                                   if g.get("name") == gate.name and g.get("transition") == key), {})
    now = format_time(d.now)
    res: dict[str, Any] = {
        "name": gate.name, "type": deploygate.ROLLOUT, "transition": key, "attempt": 1, "state": view.state,
        "message": view.message, "generation": d.gen, "startedAt": before.get("startedAt") or now,
        "rollout": view.rollout.model_dump(by_alias=True, mode="json", exclude_none=True),
    }
    if view.state in ("Passed", "Failed"):
        res["finishedAt"] = before.get("finishedAt") if before.get("state") == view.state else now
    old_summary = (before.get("rollout") or {}).get("summary")
    if view.state == "Running" and old_summary != view.rollout.summary:
        d.events.append(("Normal", "RolloutProgress", f"{key}: gate {gate.name}: {view.message}"[:1024]))
    return res


def gate_references(gate: Gate) -> list[tuple[str, str, str]]:
    """What a gate's Job names that must exist for its pods to start: (kind, name, field)."""
    cfg = gate.job
    if cfg is None:
        return []
    refs = []
    if cfg.service_account_name:
        refs.append(("ServiceAccount", cfg.service_account_name, "job.serviceAccountName"))
    if cfg.workspace_claim:
        refs.append(("PersistentVolumeClaim", cfg.workspace_claim, "job.workspaceClaim"))
    return refs


def build_gate_job(obj: dict[str, Any], spec: AgentTaskSpec, gate: Gate, key: str, round_: int,
                   attempt: int, name: str) -> dict[str, Any]:
    meta = obj["metadata"]
    cfg = gate.job or JobGateSpec()
    command = list(cfg.command)
    if not command and key == transition_key(Phase.DONE, Phase.DEPLOYED):
        command = list(spec.deploy.command) if spec.deploy and spec.deploy.command else \
            ["sh", "-c", 'echo "deploying $AGENTOPS_DEPLOY_IMAGE $AGENTOPS_DEPLOY_VERSION"']
    labels = {
        **names.MANAGED_BY,
        "agentops.dev/task-uid": meta["uid"],
        "agentops.dev/task": meta["name"][:63],
        "agentops.dev/gate": gate.name,
        "agentops.dev/transition": label_transition(key),
        "agentops.dev/round": str(round_),
        "agentops.dev/attempt": str(attempt),
    }
    env = [
        {"name": "AGENTOPS_TASK", "value": meta["name"]},
        {"name": "AGENTOPS_TRANSITION", "value": key},
        {"name": "AGENTOPS_OUTPUT", "value": spec.output or ""},
        {"name": "AGENTOPS_DEPLOY_VERSION", "value": (spec.deploy.version or "") if spec.deploy else ""},
        {"name": "AGENTOPS_DEPLOY_IMAGE", "value": (spec.deploy.image or "") if spec.deploy else ""},
    ] + [{"name": e.name, "value": e.value} for e in cfg.env]
    container = podsecurity.check_container("gate", cfg.image, env, command=command, args=cfg.args)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": bool(cfg.service_account_name),
        "securityContext": dict(podsecurity.POD_SECURITY_CONTEXT),
        "containers": [container],
    }
    if cfg.service_account_name:
        pod_spec["serviceAccountName"] = cfg.service_account_name
    if cfg.workspace_claim:
        pod_spec["volumes"] = [{"name": "workspace",
                                "persistentVolumeClaim": {"claimName": cfg.workspace_claim, "readOnly": True}}]
        container["volumeMounts"] = [{"name": "workspace", "mountPath": "/workspace", "readOnly": True}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {
                "agentops.dev/transition": key,
                "agentops.dev/task-generation": str(meta.get("generation", 1)),
                "agentops.dev/task-retry": str(spec.retry),
            },
            "ownerReferences": [names.owner_reference(obj)],
        },
        "spec": {
            "backoffLimit": cfg.backoff_limit,
            "activeDeadlineSeconds": cfg.active_deadline_seconds,
            "template": {
                "metadata": {"labels": labels, "annotations": dict(cfg.pod_annotations)},
                "spec": pod_spec,
            },
        },
    }


# ---- quota -----------------------------------------------------------------------------------


def _reserve_costs(d: Draft, inputs: MoveInputs, key: str, requested: Phase) -> tuple[str, float | None] | None:
    """Reserve the move's costs in every matching Quota (once per quota and move); None when held.
    With a refusal observed: release what this pass was granted, and say why and when to retry."""
    costs = [c for c in inputs.spec.costs if c.phase == requested.value]
    if not costs:
        return None
    round_ = int(d.status.get("transitions", 0))
    who = holder(inputs.name, inputs.uid, key, round_)
    held = list(d.status.get("reservations") or [])
    refusal = inputs.refusal
    if refusal is not None:
        for qname, resource, amount in refusal.granted:
            if not any(r["quota"] == qname and r["transition"] == key for r in held):
                held.append({"quota": qname, "resource": resource, "amount": amount, "transition": key})
        d.status["reservations"] = held
        _release_all(d, inputs, keep=None)
        retry_in = None
        if refusal.reset_at:
            retry_in = max(1.0, (refusal.reset_at - d.now).total_seconds() + 1)
        return f"quota {refusal.quota}: {refusal.message}", retry_in
    for cost in costs:
        for qname, resource in inputs.quotas:
            if resource != cost.resource:
                continue
            if any(r["quota"] == qname and r["transition"] == key for r in held):
                continue
            d.actions.append(Reserve(qname, cost.resource, cost.amount, who, f"{inputs.name}: {key}"))
            held.append({"quota": qname, "resource": cost.resource, "amount": cost.amount, "transition": key})
            d.events.append(("Normal", "QuotaReserved",
                             f"{cost.amount} {cost.resource} reserved in {qname} for {key}"))
    d.status["reservations"] = held
    return None


def _release_all(d: Draft, inputs: MoveInputs, keep: str | None) -> None:
    held = d.status.get("reservations") or []
    if not held:
        return
    round_ = int(d.status.get("transitions", 0))
    kept = []
    for r in held:
        if r["transition"] == keep:
            kept.append(r)
            continue
        d.actions.append(Release(r["quota"], holder(inputs.name, inputs.uid, r["transition"], round_),
                                 r["resource"], r["amount"]))
        d.events.append(("Normal", "QuotaReleased", f"{r['amount']} {r['resource']} released in {r['quota']}"))
    d.status["reservations"] = kept


def _commit_all(d: Draft, inputs: MoveInputs, key: str) -> None:
    held = d.status.get("reservations") or []
    if not held:
        return
    round_ = int(d.status.get("transitions", 0))
    for r in held:
        d.actions.append(Commit(r["quota"], holder(inputs.name, inputs.uid, key, round_), r["resource"],
                                r["amount"]))
        d.events.append(("Normal", "QuotaCommitted", f"{r['amount']} {r['resource']} used in {r['quota']}"))
    d.status["reservations"] = []


# ---- recording a transition ------------------------------------------------------------------


def initialise(d: Draft) -> None:
    """What the task's own reconcile would set on a valid task, so one write does both."""
    d.status.setdefault("phase", Phase.BACKLOG.value)
    d.status.setdefault("transitions", 0)
    d.condition("Accepted", True, "Valid", "spec is valid")


def record(d: Draft, spec: AgentTaskSpec, to: Phase, by: str, gates: list[dict[str, Any]], *,
           history_limit: int = DEFAULT_HISTORY_LIMIT, notes: str | None = None,
           rejections: list[str] | None = None, agents: tuple[taskflow.AgentView, ...] | None = None,
           reason: str | None = None, key: str | None = None) -> None:
    st, now = d.status, d.now
    frm = st.get("phase", Phase.BACKLOG.value)
    entry: dict[str, Any] = {
        "from": frm, "to": to.value, "at": format_time(now), "by": by,
        "gates": [{k: (clip(v, MAX_MESSAGE) if k == "message" else v) for k, v in g.items() if v is not None}
                  for g in gates],
    }
    if spec.output:
        entry["output"] = clip(spec.output)
    if spec.notes or notes:
        entry["notes"] = clip(notes or spec.notes)
    if reason:
        entry["reason"] = clip(reason)
    if key:
        entry["key"] = key
    if to == Phase.DEPLOYED and spec.deploy:
        ref = "@".join(x for x in (spec.deploy.version, spec.deploy.image) if x)
        st["deployRef"] = ref
        entry["deployRef"] = ref
    if to == Phase.DONE and st.get("assignee"):
        st["completedBy"] = st["assignee"]
    history = [*(st.get("history") or []), entry]
    limit = min(spec.history_limit, history_limit) if spec.history_limit else DEFAULT_HISTORY_LIMIT
    st["history"] = history[-limit:]
    st["transitions"] = int(st.get("transitions", 0)) + 1
    st["phase"] = to.value
    st["lastTransitionTime"] = format_time(now)
    d.transitions.append((frm, to.value))
    gate_note = ", ".join(f"{g['name']} {g['state'].lower()}" for g in gates) or "no gates"
    why = f": {clip(reason, MAX_MESSAGE)}" if reason else ""
    d.events.append(("Normal", "Transitioned", f"{frm} -> {to.value} by {by} ({gate_note}){why}"))
    d.condition("TransitionBlocked", False, "Transitioned", f"moved {frm} -> {to.value}")
    d.condition("Progressing", False, "Idle", f"task is {to.value}")
    _handoff(d, spec, to, notes=notes, rejections=rejections or [], agents=agents)


def _handoff(d: Draft, spec: AgentTaskSpec, to: Phase, notes: str | None, rejections: list[str],
             agents: tuple[taskflow.AgentView, ...] | None) -> None:
    st = d.status
    stage = taskflow.stage_for(spec.pipeline, to)
    if stage is None or stage.name == st.get("stage"):
        return
    previous = st.get("assignee")
    # Returning to a stage goes back to the agent that held it (rework after a rejection).
    back = next((h.get("toAgent") for h in reversed(st.get("handoffs") or []) if h.get("stage") == stage.name), None)
    target = stage.agent or back
    if target is None and stage.role:
        chosen = taskflow.pick_agent(list(agents or ()), stage.role, frozenset())
        target = chosen.name if chosen else None
    if target is None:
        target = previous
        d.events.append(("Warning", "NoAgentForStage",
                         f"no Ready agent with role {stage.role} for stage {stage.name}; {previous} keeps it"))
    outputs = [h["output"] for h in st.get("history") or [] if h.get("output")]
    entry: dict[str, Any] = {"stage": stage.name, "at": format_time(d.now), "outputs": sorted(set(outputs))[-10:]}
    if previous:
        entry["fromAgent"] = previous
    if target:
        entry["toAgent"] = target
    if notes or spec.notes:
        entry["notes"] = clip(notes or spec.notes)
    if rejections:
        entry["rejections"] = [clip(r, MAX_MESSAGE) or "" for r in rejections[:5]]
    st["handoffs"] = [*(st.get("handoffs") or []), entry][-MAX_HANDOFFS:]
    st["stage"] = stage.name
    if target:
        st["assignee"] = target
    if target != previous:
        d.events.append(("Normal", "HandedOff", f"stage {stage.name}: {previous or '-'} -> {target}"))


def needs_agents(spec: AgentTaskSpec) -> bool:
    """Whether a move may pick an agent by role (a pipeline stage): the handler then passes the views."""
    return any(s.role and not s.agent for s in spec.pipeline)
