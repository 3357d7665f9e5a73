"""AgentTask reconciliation: legality, gates (Jobs and approvals), quota, handoffs, history.

Thin: decisions come from `lifecycle` and `taskflow`; this module observes and writes.
"""

from __future__ import annotations

import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import yaml
from prometheus_client import Counter
from pydantic import TypeAdapter, ValidationError

from .. import crdgen, deploygate, kube, names, selectors, taskflow, taskplan
from .. import settings as settings_mod
from ..cache import store
from ..conditions import get_condition
from ..lifecycle import Phase, transition_key
from ..models import task as task_models
from ..models.task import AgentTaskSpec, AgentTaskStatus, Gate, TransitionGates
from ..runtime import register, register_work, runtime
from ..timeutil import parse_time
from . import deploy, handback, monitor

log = logging.getLogger(__name__)
PLURAL = "agenttasks"
ASSIGN = "assign"  # the per-namespace assignment pass, a work item of its own
ASSIGN_DEBOUNCE_SECONDS = 0.05  # a burst of task events brings one pass, not one per event
_ASSIGN_WRITERS = ThreadPoolExecutor(4, thread_name_prefix="agentops-assign")
BACKLOG_POLL_SECONDS = 5.0
MAX_HANDOFFS = taskplan.MAX_HANDOFFS
_clip = taskplan.clip
POLICY_LABEL = "agentops.dev/gate-policy"
_policy_adapter = TypeAdapter(list[TransitionGates])

TRANSITIONS_TOTAL = Counter("agentops_task_transitions_total", "Task moves recorded (written to status)",
                            ["from_phase", "to_phase"])
GATES_TOTAL = Counter("agentops_task_gate_results_total", "Gate outcomes", ["type", "result"])


Pending = taskplan.Draft  # the status under construction (hand-back and assignment use it too)


# ---- entry point -----------------------------------------------------------------------------


@register(PLURAL)
def reconcile(obj: dict[str, Any]) -> float | None:
    """Observe (cache), plan (`taskplan.plan_task`, pure), apply (quota, Jobs), write status once."""
    meta = obj["metadata"]
    now = datetime.now(UTC)
    try:
        spec = AgentTaskSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        fields = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _write_plan(obj, taskplan.invalid_spec(obj, obj.get("status") or {}, now, fields))
    pre = Pending(obj, copy.deepcopy(obj.get("status") or {}), now)
    handback.apply(pre, spec)  # holder gone, silent past its grace, or asked to give the task back
    inputs = _observe(obj, spec, pre.status, now)
    done: set[taskplan.Action] = set()
    for _ in range(MAX_PLANS):
        plan = taskplan.plan_task(inputs)
        observed = _apply(obj, spec, plan, done)
        if observed is None:
            break
        inputs = replace(inputs, **observed)
    plan = replace(plan, events=(*pre.events, *plan.events))
    if plan.assign:
        runtime.enqueue(ASSIGN, meta["namespace"], "", delay=ASSIGN_DEBOUNCE_SECONDS)
        return monitor.backlog(Pending(obj, plan.status, now, events=list(plan.events)), _write)
    stale = Pending(obj, plan.status, now, events=list(plan.events))
    requeue = monitor.task(stale, plan.requeue)  # Stale condition and Event; look again when it becomes stale
    return _write_plan(obj, replace(plan, status=stale.status, events=tuple(stale.events), requeue=requeue))


MAX_PLANS = 4  # plan -> apply -> observe rounds; each observation only removes work from the next plan


def _observe(obj: dict[str, Any], spec: AgentTaskSpec, status: dict[str, Any], now: datetime) -> taskplan.MoveInputs:
    """Everything the planner reads, from the watch-fed cache (no API reads)."""
    ns = obj["metadata"]["namespace"]
    policy: list[TransitionGates] | None = None
    policy_error: str | None = None
    try:
        policy = namespace_gate_policy(ns)
    except ValueError as exc:
        policy_error = str(exc)
    labels = obj["metadata"].get("labels") or {}
    quotas = tuple((q["metadata"]["name"], q["spec"].get("resource", "")) for q in store.list("quotas", ns)
                   if selectors.matches(q["spec"].get("selector"), labels)) if spec.costs else ()
    roles = taskplan.approver_roles(spec, policy)
    role_users: dict[str, frozenset[str]] = {}
    if roles:
        for a in store.list("agents", ns):
            role = (a.get("spec") or {}).get("role")
            if role in roles:
                user = names.agent_sa_username(ns, a["metadata"]["name"])
                role_users[role] = role_users.get(role, frozenset()) | {user}
    jobs = tuple(store.owned("jobs", obj["metadata"]["uid"]))
    agents = tuple(agent_views(store.list("agents", ns), store.list(PLURAL, ns))) if taskplan.needs_agents(spec) \
        else None
    rollout = None
    if spec.deploy and spec.deploy.agent:
        agent_status, revisions = deploy.agent_view(ns, spec.deploy.agent)
        rollout = deploygate.evaluate(spec.deploy.agent, spec.deploy, agent_status, revisions)
    return taskplan.MoveInputs(
        obj=obj, spec=spec, status=AgentTaskStatus.model_validate(status), now=now, policy=policy,
        policy_error=policy_error, jobs=jobs,
        quotas=quotas, role_users=role_users, agents=agents, failure_details=_failure_details(ns, jobs),
        history_limit=settings_mod.current.history_limit, rollout=rollout,
        policy_configmaps=tuple(store.labelled("configmaps", ns, POLICY_LABEL, "true")),
    )


_details: dict[str, str] = {}  # failed Job uid -> why its pod failed (read once per Job)


def _failure_details(ns: str, jobs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    out = {}
    for job in jobs:
        if taskflow.job_state(job)[0] != "Failed":
            continue
        uid = job["metadata"].get("uid", "")
        if uid not in _details:
            if len(_details) > 10_000:
                _details.clear()
            _details[uid] = kube.job_failure_detail(ns, job["metadata"]["name"]) or ""
        if _details[uid]:
            out[job["metadata"]["name"]] = _details[uid]
    return out


def _apply(obj: dict[str, Any], spec: AgentTaskSpec, plan: taskplan.MovePlan,
           done: set[taskplan.Action]) -> dict[str, Any] | None:
    """Carry out the plan's actions in order (each once per reconcile). A refused reservation or a
    missing reference is returned as the observation to plan again with; None when all were done."""
    from .. import quota_client

    ns = obj["metadata"]["namespace"]
    granted: list[tuple[str, str, int]] = []
    for action in plan.actions:
        if action in done:
            continue
        if isinstance(action, taskplan.Release):
            quota_client.release(kube.custom(), ns, action.quota, action.holder)
        elif isinstance(action, taskplan.Reserve):
            grant = quota_client.reserve(kube.custom(), ns, action.quota, action.holder, action.amount,
                                         reason=action.reason)
            if not grant.granted:
                return {"refusal": taskplan.Refusal(action.quota, grant.message, grant.reset_at, tuple(granted))}
            granted.append((action.quota, action.resource, action.amount))
        elif isinstance(action, taskplan.Commit):
            quota_client.commit(kube.custom(), ns, action.quota, action.holder)
        elif isinstance(action, taskplan.CreateJob):
            gate = _gate_named(obj, spec, action)
            missing = _missing_references(ns, gate)
            if missing:
                return {"missing_refs": {action.gate: missing}}
            kube.create_or_adopt(taskplan.build_gate_job(obj, spec, gate, action.key, action.round,
                                                         action.attempt, action.name))
        elif isinstance(action, taskplan.StopJob):
            kube.delete_if_exists("Job", ns, action.name)
        done.add(action)
    return None


def _gate_named(obj: dict[str, Any], spec: AgentTaskSpec, action: taskplan.CreateJob) -> Gate:
    gates = taskflow.resolve_gates(action.key, spec.gates, namespace_gate_policy(obj["metadata"]["namespace"]))
    return next(g for g in gates if g.name == action.gate)


def _missing_references(ns: str, gate: Gate) -> str:
    """A ServiceAccount or PersistentVolumeClaim the gate's Job would need and that does not exist
    (one read each, only when a gate Job is about to be made); '' when all exist."""
    for kind, name, where in taskplan.gate_references(gate):
        if not kube.exists(kind, ns, name):
            return f"gate {gate.name}: {where}: {kind} {name} not found"
    return ""


def _write_plan(obj: dict[str, Any], plan: taskplan.MovePlan) -> float | None:
    """One status write (with the resourceVersion read: a concurrent change gives 409 and a retry),
    then its Events; nothing at all when the status is unchanged."""
    meta = obj["metadata"]
    check_status(plan.status)  # a key the model does not know would be dropped silently: raise instead
    new = AgentTaskStatus.model_validate(plan.status)
    st = taskplan.wire_status(new)
    for type_, result in plan.gate_outcomes:
        GATES_TOTAL.labels(type_, result).inc()
    if new != AgentTaskStatus.model_validate(obj.get("status") or {}):
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], _full_replace(obj.get("status") or {}, st),
                          meta["resourceVersion"])
        for frm, to in plan.transitions:
            TRANSITIONS_TOTAL.labels(frm, to).inc()
        for type_, reason, message in plan.events:
            # The Transitioned Event has a name derived from the move it records, so that a restart
            # between the write and the Event can emit it again without a duplicate.
            name = transition_event_name(obj, int(st.get("transitions", 0))) if reason == "Transitioned" else None
            kube.emit_event(obj, type_, reason, message, name=name)
        n = int(st.get("transitions", 0))
        if plan.transitions and _events_checked.get(meta["uid"], 0) == n - len(plan.transitions):
            _events_checked[meta["uid"]] = n  # earlier moves' Events were checked by this process
    else:
        _ensure_transition_event(obj, datetime.now(UTC))
    return plan.requeue


def _write(pend: Pending, requeue: float | None) -> float | None:
    """Write a draft built outside the planner (assignment)."""
    requeue = monitor.task(pend, requeue)  # Stale condition and Event; look again when it becomes stale
    pend.status["observedGeneration"] = pend.gen
    return _write_plan(pend.obj, taskplan.MovePlan(
        status=pend.status, events=tuple(pend.events), transitions=tuple(pend.transitions), actions=(),
        gate_outcomes=(), requeue=requeue))


_STATUS_SCHEMA: dict[str, Any] | None = None


def check_status(status: dict[str, Any]) -> None:
    """A status key the CRD does not know would be dropped silently by the API server: fail loudly."""
    global _STATUS_SCHEMA
    if _STATUS_SCHEMA is None:
        _STATUS_SCHEMA = crdgen.render(task_models.CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
            "properties"]["status"]
    unknown = crdgen.unknown_keys(status, _STATUS_SCHEMA)
    if unknown:
        raise ValueError(f"AgentTask status written with fields the CRD does not know: {', '.join(unknown)}")


def transition_event_name(obj: dict[str, Any], transitions: int) -> str:
    return f"{obj['metadata']['name'][:200]}.{obj['metadata']['uid'][:8]}.t{transitions}"


_events_checked: dict[str, int] = {}
TRANSITION_EVENT_RECHECK_SECONDS = 600


def forget(uid: str) -> None:
    """A deleted task's bookkeeping."""
    _events_checked.pop(uid, None)


def _ensure_transition_event(obj: dict[str, Any], now: datetime) -> None:
    """After a restart, the Events of the last recorded moves may be missing (the process died between
    a status write and its Events, which are sent asynchronously, possibly several moves ago): emit
    each again under its deterministic name (409 if it exists). Only for moves recorded in the last
    few minutes, and once per move per process."""
    st = obj.get("status") or {}
    n = int(st.get("transitions", 0))
    uid = obj["metadata"]["uid"]
    checked = _events_checked.get(uid, 0)
    if n <= checked:
        return
    _events_checked[uid] = n
    history = st.get("history") or []
    first = n - len(history) + 1  # the move number of history[0] (history keeps only the last ones)
    for i, entry in enumerate(history):
        at = parse_time(entry.get("at"))
        if first + i <= checked or not at or (now - at).total_seconds() > TRANSITION_EVENT_RECHECK_SECONDS:
            continue
        gates = ", ".join(f"{g['name']} {str(g.get('state', '')).lower()}" for g in entry.get("gates") or []) \
            or "no gates"
        why = f": {taskplan.clip(entry['reason'], taskplan.MAX_MESSAGE)}" if entry.get("reason") else ""
        kube.emit_event(obj, "Normal", "Transitioned", f"{entry.get('from')} -> {entry.get('to')} by "
                        f"{entry.get('by')} ({gates}){why}", name=transition_event_name(obj, first + i))


def _full_replace(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that also removes keys dropped from status (null deletes in merge patch)."""
    patch: dict[str, Any] = dict(new)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def namespace_gate_policy(ns: str) -> list[TransitionGates] | None:
    """A namespace-wide policy: ConfigMaps labelled agentops.dev/gate-policy=true, key `policy.yaml`
    holding a list like spec.gates. Several ConfigMaps are read in name order (from the cache)."""
    cms = store.labelled("configmaps", ns, POLICY_LABEL, "true")
    if not cms:
        return None
    policy: list[TransitionGates] = []
    for cm in sorted(cms, key=lambda c: c["metadata"]["name"]):
        raw = (cm.get("data") or {}).get("policy.yaml", "")
        where = f"ConfigMap {cm['metadata']['name']} data.policy.yaml"
        try:
            policy += _policy_adapter.validate_python(yaml.safe_load(raw) or [])
        except yaml.YAMLError as exc:
            raise ValueError(f"{where}: not YAML: {exc}") from exc
        except ValidationError as exc:
            fields = "; ".join(f"[{']['.join(str(p) for p in e['loc'])}]: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{where}: {fields}") from exc
    return policy


# ---- quota on assignment ---------------------------------------------------------------------


def charge_assignment(pend: Pending, spec: AgentTaskSpec) -> tuple[str, float | None] | None:
    """Costs on phase Assigned, charged when the task is assigned (no gates, so reserve and commit at once).

    Once per (task uid, Backlog->Assigned, round): a pass that charged but lost its status write charges
    nothing again. None when charged or free; else why not, and when to try again.
    """
    from .. import quota_client

    costs = [(c.resource, c.amount) for c in spec.costs if c.phase == Phase.ASSIGNED.value]
    if not costs:
        return None
    meta = pend.obj["metadata"]
    key = transition_key(Phase.BACKLOG, Phase.ASSIGNED)
    who = taskplan.holder(meta["name"], meta["uid"], key, int(pend.status.get("transitions", 0)))
    got = quota_client.charge_for(kube.custom(), meta["namespace"], meta.get("labels") or {}, who, costs,
                                  reason=f"{meta['name']}: {key}")
    if not got.ok:
        retry = max(1.0, (got.reset_at - pend.now).total_seconds() + 1) if got.reset_at else BACKLOG_POLL_SECONDS
        return got.message, retry
    for qname, resource, amount in got.charged:
        pend.events.append(("Normal", "QuotaCommitted", f"{amount} {resource} used in {qname}"))
    return None


# ---- assignment ------------------------------------------------------------------------------


def _agent_ready(agent: dict[str, Any]) -> bool:
    """Can take work: Ready, and at least one replica actually up (a scaled-to-zero Agent is Ready
    in the Deployment sense but has nobody to do the task)."""
    status = agent.get("status") or {}
    cond = get_condition(status.get("conditions"), "Ready")
    external = not (agent.get("spec") or {}).get("image")  # no pods: Ready means its heartbeat is fresh
    return bool(cond and cond.get("status") == "True") and (external or int(status.get("readyReplicas") or 0) >= 1)


def agent_available(agent: dict[str, Any]) -> tuple[bool, int]:
    """What assignment depends on in an Agent's status (a change wakes the assignment pass)."""
    return _agent_ready(agent), int((agent.get("spec") or {}).get("maxConcurrentTasks", 1))


def agent_views(agents: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> list[taskflow.AgentView]:
    load: dict[str, int] = {}
    active = {p.value for p in taskflow.ACTIVE_PHASES}
    for t in tasks:
        st = t.get("status") or {}
        if st.get("assignee") and st.get("phase") in active:
            load[st["assignee"]] = load.get(st["assignee"], 0) + 1
    return [
        taskflow.AgentView(
            name=a["metadata"]["name"], role=(a.get("spec") or {}).get("role", ""),
            capabilities=frozenset((a.get("spec") or {}).get("capabilities") or []),
            max_concurrent=int((a.get("spec") or {}).get("maxConcurrentTasks", 1)), ready=_agent_ready(a),
            load=load.get(a["metadata"]["name"], 0),
        )
        for a in agents
        if not a["metadata"].get("deletionTimestamp")
    ]


def _waits_for_assignment(t: dict[str, Any]) -> bool:
    st = t.get("status") or {}
    spec = t.get("spec") or {}
    return (st.get("phase") or "Backlog") == "Backlog" and not t["metadata"].get("deletionTimestamp") and \
        spec.get("requestedPhase", "Backlog") in ("Backlog", "Assigned")


def assignment_relevant(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Whether a task change can change the namespace's assignment: a task waiting (or no longer
    waiting) for assignment, or capacity taken or freed."""
    active = {p.value for p in taskflow.ACTIVE_PHASES}

    def holds(t: dict[str, Any] | None) -> tuple[str | None, bool]:
        st = (t or {}).get("status") or {}
        return st.get("assignee"), st.get("phase") in active

    return any(t is not None and _waits_for_assignment(t) for t in (old, new)) or holds(old) != holds(new)


WAKE_QUOTA_WAITERS = "wake-quota-waiters"
WAKE_PENDING_MOVES = "wake-pending-moves"


@register_work(WAKE_QUOTA_WAITERS)
def wake_quota_waiters(ns: str, _name: str = "") -> None:
    """Quota was freed or changed: tasks blocked on it try again."""
    for key in tasks_waiting_for_quota(ns):
        runtime.enqueue(*key)


@register_work(WAKE_PENDING_MOVES)
def wake_pending_moves(ns: str, _name: str = "") -> None:
    """The namespace gate policy changed: tasks with a move pending are judged again."""
    for key in tasks_with_pending_moves(ns):
        runtime.enqueue(*key)


def tasks_waiting_for_quota(ns: str) -> list[tuple[str, str, str]]:
    def blocked(t: dict[str, Any]) -> bool:
        cond = get_condition((t.get("status") or {}).get("conditions"), "TransitionBlocked") or {}
        return cond.get("status") == "True" and cond.get("reason") == "QuotaExceeded"

    return [(PLURAL, ns, t["metadata"]["name"]) for t in store.list(PLURAL, ns, blocked)]


def tasks_with_pending_moves(ns: str) -> list[tuple[str, str, str]]:
    def pending(t: dict[str, Any]) -> bool:
        st = t.get("status") or {}
        return (t.get("spec") or {}).get("requestedPhase", "Backlog") != st.get("phase", "Backlog")

    return [(PLURAL, ns, t["metadata"]["name"]) for t in store.list(PLURAL, ns, pending)]


@register_work(ASSIGN)
def assign_namespace(ns: str, _name: str = "") -> float | None:
    """Assign every waiting backlog task of a namespace, highest priority first (one pass covers all).

    Reads the cache; one status write per task whose state changes (assigned, or newly waiting with
    a reason), which also initialises a new task. The queue never runs two passes of one namespace at
    once, and a pass asked for while one runs runs once more afterwards."""
    tasks = store.list(PLURAL, ns)
    agents = store.list("agents", ns)
    views = agent_views(agents, tasks)
    backlog: dict[str, dict[str, Any]] = {}
    task_views = []
    for t in tasks:
        if not _waits_for_assignment(t):
            continue
        try:
            spec = AgentTaskSpec.model_validate(t.get("spec") or {})
        except ValidationError:
            runtime.enqueue(PLURAL, ns, t["metadata"]["name"])  # its reconcile reports the invalid spec
            continue
        stage = taskflow.stage_for(spec.pipeline, Phase.ASSIGNED)
        role = (stage.role if stage and stage.role else None) or spec.role
        agent = spec.assignee or (stage.agent if stage else None)
        backlog[t["metadata"]["name"]] = t
        task_views.append(taskflow.TaskView(
            name=t["metadata"]["name"], priority=spec.priority, created=t["metadata"]["creationTimestamp"],
            role=role, capabilities=frozenset(spec.capabilities), agent=agent))
    if not task_views:
        return None
    plan = taskflow.plan_assignments(task_views, views)
    now = datetime.now(UTC)
    writes: list[Pending] = []
    for task_name, agent_name in plan.assignments:
        obj = copy.deepcopy(backlog[task_name])
        pend = Pending(obj, copy.deepcopy(obj.get("status") or {}), now)
        spec = AgentTaskSpec.model_validate(obj["spec"])
        taskplan.initialise(pend)
        refused = charge_assignment(pend, spec)
        if refused is not None:
            _assignment_refused(pend, *refused)
            continue
        pend.status["assignee"] = agent_name
        stage = taskflow.stage_for(spec.pipeline, Phase.ASSIGNED)
        if stage:
            pend.status["stage"] = stage.name
        by = spec.by if spec.requested_phase == Phase.ASSIGNED and spec.by else names.OPERATOR_USER
        taskplan.record(pend, spec, Phase.ASSIGNED, by, [], history_limit=settings_mod.current.history_limit,
                        agents=tuple(views) if taskplan.needs_agents(spec) else None)
        pend.condition("Assigned", True, "Assigned", f"assigned to {agent_name}")
        pend.events.append(("Normal", "Assigned", f"assigned to agent {agent_name}"))
        writes.append(pend)
    for task_name, why in plan.waiting.items():
        obj = copy.deepcopy(backlog[task_name])
        pend = Pending(obj, copy.deepcopy(obj.get("status") or {}), now)
        taskplan.initialise(pend)
        pend.condition("Assigned", False, "NoAgentAvailable", why)
        writes.append(pend)
    # The plan is decided; the writes are independent (one task each, resourceVersion-checked), so a
    # burst of new tasks is written at the API server's pace rather than one round trip at a time.
    list(_ASSIGN_WRITERS.map(_write_or_skip, writes))
    return None


def _assignment_refused(pend: Pending, message: str, retry: float | None) -> None:
    """A cost on Assigned that the quota refuses: the task waits in Backlog, saying why, and the
    namespace's assignment pass tries again (at the quota's reset, or when quota is freed)."""
    pend.condition("Assigned", False, "QuotaExceeded", message, "Warning")
    _write_or_skip(pend)
    runtime.enqueue(ASSIGN, pend.obj["metadata"]["namespace"], "", delay=retry or BACKLOG_POLL_SECONDS)


def _write_or_skip(pend: Pending) -> None:
    try:
        _write(pend, None)
    except kube.ApiException as exc:
        if exc.status not in (404, 409):
            raise
        # Changed or deleted under us: the watch brings the new version and another pass.
