"""Pure decisions for AgentTask moves: gate policy, Job attempts, approvals, assignment. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from .lifecycle import Phase, transition_key
from .models.task import (
    ApprovalGateSpec,
    Gate,
    JobGateSpec,
    Stage,
    TransitionGates,
)

# Seed policy: the deliverable must exist to go to review, a human approves review->done, and the
# deploy command must exit 0 to reach deployed.
DEFAULT_POLICY: dict[str, list[Gate]] = {
    transition_key(Phase.IN_PROGRESS, Phase.REVIEW): [
        Gate(
            name="deliverable",
            type="Job",
            requires=["output"],
            job=JobGateSpec(command=["sh", "-c", 'test -n "$AGENTOPS_OUTPUT"']),
        )
    ],
    transition_key(Phase.REVIEW, Phase.DONE): [
        Gate(name="approval", type="Approval", approval=ApprovalGateSpec(required=1))
    ],
    transition_key(Phase.DONE, Phase.DEPLOYED): [
        Gate(name="deploy", type="Job", requires=["deployRef"], job=JobGateSpec())
    ],
}


def resolve_gates(
    key: str,
    task_overrides: list[TransitionGates] | None,
    namespace_policy: list[TransitionGates] | None = None,
) -> list[Gate]:
    """The gates of one move: task override, else namespace policy, else the default policy.

    A level that does not mention a move leaves it to the next level; an entry with no gates
    removes the gates of that move. Namespace-policy gates marked ``required`` are a floor: they
    apply whatever the task says (from every policy entry for the move), come first, and a task
    gate of the same name cannot replace them. A task override can only add to them.
    """
    ns_entries = [e for e in namespace_policy or [] if e.transition == key]
    required: list[Gate] = []
    for entry in ns_entries:
        for gate in entry.gates:
            if gate.required and all(g.name != gate.name for g in required):
                required.append(gate)
    task_entry = next((e for e in task_overrides or [] if e.transition == key), None)
    if task_entry is not None:
        chosen = list(task_entry.gates)
    elif ns_entries:
        chosen = list(ns_entries[0].gates)
    else:
        chosen = list(DEFAULT_POLICY.get(key, []))
    floor = {g.name for g in required}
    return required + [g for g in chosen if g.name not in floor]


# ---- Job gates -------------------------------------------------------------------------------

JobState = Literal["Running", "Passed", "Failed"]


def job_state(job: dict[str, Any]) -> tuple[JobState, str]:
    """Outcome of a gate Job from its status conditions."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Passed", "job completed"
        if cond.get("type") in ("Failed", "FailureTarget"):
            return "Failed", f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip(": ")
    return "Running", "job running"


@dataclass(frozen=True)
class AttemptDecision:
    action: Literal["create", "wait", "passed", "failed"]
    attempt: int
    job: dict[str, Any] | None = None
    message: str = ""


def decide_attempt(jobs: list[dict[str, Any]], generation: int, retry: int) -> AttemptDecision:
    """Given the Jobs of one gate in one round, decide what to do.

    A failed attempt is retried (attempt N+1) once the task's spec changed after it was made
    (a retry bump, a new output, a re-request). The attempt number lives in the Job's labels, so an
    operator restart finds the same Job instead of creating a second one.
    """
    if not jobs:
        return AttemptDecision("create", 1)
    latest = max(jobs, key=lambda j: int(j["metadata"]["labels"].get("agentops.dev/attempt", "1")))
    attempt = int(latest["metadata"]["labels"].get("agentops.dev/attempt", "1"))
    state, message = job_state(latest)
    if state == "Running":
        return AttemptDecision("wait", attempt, latest, message)
    if state == "Passed":
        return AttemptDecision("passed", attempt, latest, message)
    annotations = latest["metadata"].get("annotations") or {}
    made_for = int(annotations.get("agentops.dev/task-generation", "0"))
    made_retry = int(annotations.get("agentops.dev/task-retry", "0"))
    if generation > made_for or retry > made_retry:
        return AttemptDecision("create", attempt + 1, latest, message)
    return AttemptDecision("failed", attempt, latest, message)


# ---- Approval gates --------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalView:
    approver: str
    decision: str
    reason: str
    transition: str
    groups: tuple[str, ...]
    observed_at: datetime


@dataclass(frozen=True)
class ApprovalOutcome:
    state: Literal["Passed", "Waiting", "Rejected", "TimedOut"]
    message: str
    approvers: tuple[str, ...] = ()  # who approved, or for Rejected who rejected
    rejections: tuple[str, ...] = ()


def allowed_approver(gate: ApprovalGateSpec, a: ApprovalView, role_users: set[str]) -> bool:
    allow = gate.approvers
    if not (allow.users or allow.groups or allow.roles):
        return True  # admission already required the `approve` verb
    return a.approver in allow.users or bool(set(a.groups) & set(allow.groups)) or a.approver in role_users


def evaluate_approvals(
    gate: ApprovalGateSpec,
    approvals: list[ApprovalView],
    key: str,
    since: datetime,
    now: datetime,
    role_users: set[str] | None = None,
    requester: str | None = None,
    assignee: str | None = None,
) -> ApprovalOutcome:
    """N distinct allowed approvers approve -> Passed; any allowed rejection -> Rejected.

    Only decisions first seen after the task entered its phase (`since`) count, so a new review
    round after a rejection starts from zero. Separation of duties: unless the gate sets
    ``allowSelfApproval``, approvals by whoever put the work up for this decision (``requester``: who
    requested the move into the current phase) or by the author of the work
    (``assignee``: the agent that did it, as its ServiceAccount user) do not count. Rejections do:
    nobody bypasses a gate by turning their own work down (a pipeline's reviewer may be the one who
    asks for the move, to record its verdict).
    """
    role_users = role_users or set()
    relevant = [a for a in approvals if a.transition == key and a.observed_at >= since]
    conflicted: dict[str, str] = {}
    if not gate.allow_self_approval:
        for a in relevant:
            if a.decision != "Approved":
                continue
            if requester and a.approver == requester:
                conflicted[a.approver] = "requested the move"
            elif assignee and a.approver == assignee:
                conflicted[a.approver] = "did the work"
    relevant = [a for a in relevant if not (a.decision == "Approved" and a.approver in conflicted)]
    ignored = sorted({a.approver for a in relevant if not allowed_approver(gate, a, role_users)})
    counted = [a for a in relevant if allowed_approver(gate, a, role_users)]
    rejections = [a for a in counted if a.decision == "Rejected"]
    if rejections:
        return ApprovalOutcome(
            "Rejected",
            "; ".join(f"rejected by {a.approver}: {a.reason or 'no reason given'}" for a in rejections),
            approvers=tuple(a.approver for a in rejections),
            rejections=tuple(f"{a.approver}: {a.reason}" for a in rejections),
        )
    approvers = tuple(sorted({a.approver for a in counted if a.decision == "Approved"}))
    if len(approvers) >= gate.required:
        return ApprovalOutcome("Passed", f"approved by {', '.join(approvers)}", approvers=approvers)
    msg = f"{len(approvers)}/{gate.required} approvals"
    if approvers:
        msg += f" (by {', '.join(approvers)})"
    if ignored:
        msg += f"; not allowed to approve: {', '.join(ignored)}"
    if conflicted:
        msg += "; not counted (separation of duties): " + ", ".join(
            f"{who} ({why})" for who, why in sorted(conflicted.items()))
    if gate.timeout_seconds is not None and (now - since).total_seconds() >= gate.timeout_seconds:
        if gate.on_timeout == "Reject":
            return ApprovalOutcome("TimedOut", f"approval timed out after {gate.timeout_seconds}s; {msg}",
                                   approvers=approvers)
        msg += f"; timed out after {gate.timeout_seconds}s, still waiting"
    return ApprovalOutcome("Waiting", msg, approvers=approvers)


# ---- Pipeline and assignment -----------------------------------------------------------------

ACTIVE_PHASES = (Phase.ASSIGNED, Phase.IN_PROGRESS, Phase.REVIEW, Phase.REJECTED)


def stage_for(pipeline: list[Stage], phase: Phase | str) -> Stage | None:
    for stage in pipeline:
        if Phase(phase).value in stage.phases:
            return stage
    return None


@dataclass
class AgentView:
    name: str
    role: str
    capabilities: frozenset[str]
    max_concurrent: int
    ready: bool
    load: int = 0


@dataclass(frozen=True)
class TaskView:
    name: str
    priority: int
    created: str  # RFC 3339, sorts chronologically
    role: str | None
    capabilities: frozenset[str]
    agent: str | None = None  # a specific agent asked for


@dataclass
class AssignmentPlan:
    assignments: list[tuple[str, str]] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # task -> why it stays in the backlog


def matches(agent: AgentView, role: str | None, capabilities: frozenset[str]) -> bool:
    return (role is None or agent.role == role) and capabilities <= agent.capabilities


def pick_agent(agents: list[AgentView], role: str | None, capabilities: frozenset[str]) -> AgentView | None:
    """Least-loaded Ready matching agent with room. Ties go to the agent with the fewest capabilities,
    so generalist work does not take the only specialist; then by name, for determinism."""
    fits = [a for a in agents if a.ready and matches(a, role, capabilities) and a.load < a.max_concurrent]
    return min(fits, key=lambda a: (a.load / a.max_concurrent, a.load, len(a.capabilities), a.name), default=None)


def plan_assignments(tasks: list[TaskView], agents: list[AgentView]) -> AssignmentPlan:
    """Assign backlog tasks, higher priority first, then older first, within each agent's capacity.

    Pure: works on copies, so the caller's AgentViews keep their loads and the same input always
    gives the same plan.
    """
    agents = [replace(a) for a in agents]
    plan = AssignmentPlan()
    by_name = {a.name: a for a in agents}
    for task in sorted(tasks, key=lambda t: (-t.priority, t.created, t.name)):
        if task.agent is not None:
            chosen = by_name.get(task.agent)
            if chosen is None:
                plan.waiting[task.name] = f"agent {task.agent} does not exist"
                continue
            # A named agent is a human decision: it need not be Ready, but capacity still holds.
            if chosen.load >= chosen.max_concurrent:
                plan.waiting[task.name] = f"agent {task.agent} is at maxConcurrentTasks ({chosen.max_concurrent})"
                continue
        else:
            chosen = pick_agent(agents, task.role, task.capabilities)
            if chosen is None:
                want = f"role={task.role or '*'} capabilities={sorted(task.capabilities)}"
                plan.waiting[task.name] = f"no Ready agent with room matches {want}"
                continue
        chosen.load += 1
        plan.assignments.append((task.name, chosen.name))
    return plan


# ---- Agent statistics ------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentStatistics:
    active_tasks: int = 0
    tasks_completed: int = 0
    last_active: str | None = None  # RFC 3339: the latest move of a task it holds or completed

    def as_status(self) -> dict[str, Any]:
        return {"activeTasks": self.active_tasks, "tasksCompleted": self.tasks_completed,
                "lastActive": self.last_active}


Contribution = tuple[tuple[str, int, int, str | None], ...]  # (agent, active, completed, lastActive), by agent


def task_statistics(st: dict[str, Any]) -> Contribution:
    """What one task contributes to its agents' statistics (see `agent_statistics`), sorted by agent:
    the figures of all tasks are the sums of these (and the latest lastActive), so they can be kept
    incrementally from the watched tasks."""
    active_phases = {p.value for p in ACTIVE_PHASES}
    active: dict[str, int] = {}
    completed: dict[str, int] = {}
    last: dict[str, str] = {}

    def seen(who: Any, at: Any) -> None:
        if isinstance(who, str) and isinstance(at, str) and (who not in last or at > last[who]):
            last[who] = at

    assignee, done_by, at = st.get("assignee"), st.get("completedBy"), st.get("lastTransitionTime")
    if isinstance(assignee, str) and st.get("phase") in active_phases:
        active[assignee] = active.get(assignee, 0) + 1
    stage: Any = None
    for h in st.get("handoffs") or []:
        frm, to = h.get("fromAgent"), h.get("toAgent")
        if isinstance(frm, str) and frm != to and h.get("stage") != stage and stage is not None:
            completed[frm] = completed.get(frm, 0) + 1
            seen(frm, h.get("at"))
        stage = h.get("stage")
    if isinstance(done_by, str):
        completed[done_by] = completed.get(done_by, 0) + 1
    if st.get("phase") == "Deployed" and isinstance(assignee, str) and assignee != done_by:
        completed[assignee] = completed.get(assignee, 0) + 1
    seen(assignee, at)
    seen(done_by, at)
    return tuple((a, active.get(a, 0), completed.get(a, 0), last.get(a)) for a in sorted({*active, *completed, *last}))


def agent_statistics(task_statuses: list[dict[str, Any]]) -> dict[str, AgentStatistics]:
    """activeTasks, tasksCompleted and lastActive per agent, counted from the tasks themselves (so they
    never drift). active: assigned and in an ACTIVE_PHASES phase. completed: stages the agent
    finished: every pipeline handoff away from it (a change of stage; a hand-back within a stage does
    not count), the task it completed (Done), and Deployed when someone else had completed it.
    lastActive: the latest move of a task it holds or completed, or a handoff it made."""
    out: dict[str, AgentStatistics] = {}
    for st in task_statuses:
        for agent, active, completed, last in task_statistics(st):
            have = out.get(agent, AgentStatistics())
            latest = have.last_active if last is None or (have.last_active or "") >= last else last
            out[agent] = AgentStatistics(have.active_tasks + active, have.tasks_completed + completed, latest)
    return out
