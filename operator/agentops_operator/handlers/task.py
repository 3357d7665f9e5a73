"""AgentTask reconciliation: legality, gates (Jobs and approvals), quota, handoffs, history.

Thin: decisions come from `lifecycle` and `taskflow`; this module observes and writes.
"""

from __future__ import annotations

import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes.client.rest import ApiException
from prometheus_client import Counter
from pydantic import TypeAdapter, ValidationError

from .. import gateimages, kube, names, podsecurity, selectors, taskflow
from .. import settings as settings_mod
from ..cache import store
from ..conditions import get_condition, set_condition
from ..lifecycle import Phase, Verdict, judge_request, transition_key
from ..models.task import AgentTaskSpec, ApprovalGateSpec, Gate, JobGateSpec, TransitionGates
from ..runtime import register, register_work, runtime
from ..timeutil import format_time, parse_time
from . import handback

log = logging.getLogger(__name__)
PLURAL = "agenttasks"
ASSIGN = "assign"  # the per-namespace assignment pass, a work item of its own
ASSIGN_DEBOUNCE_SECONDS = 0.05  # a burst of task events brings one pass, not one per event
_ASSIGN_WRITERS = ThreadPoolExecutor(4, thread_name_prefix="agentops-assign")
JOB_POLL_SECONDS = 30.0  # a safety net: gate Job changes arrive through the watch
BACKLOG_POLL_SECONDS = 5.0
MAX_HANDOFFS = 20
# Status must stay far below etcd's 1.5 MB object limit: history copies are truncated (the full text
# stays in spec and in the Events).
MAX_TEXT = 512
MAX_MESSAGE = 256


def _clip(text: str | None, limit: int = MAX_TEXT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
POLICY_LABEL = "agentops.dev/gate-policy"
_policy_adapter = TypeAdapter(list[TransitionGates])

TRANSITIONS_TOTAL = Counter("agentops_task_transitions_total", "Task moves recorded (written to status)",
                            ["from_phase", "to_phase"])
GATES_TOTAL = Counter("agentops_task_gate_results_total", "Gate outcomes", ["type", "result"])


def _label_transition(key: str) -> str:
    return key.replace("->", "-")


@dataclass
class Pending:
    """Status under construction plus the Events to emit once it is written."""

    obj: dict[str, Any]
    status: dict[str, Any]
    now: datetime
    events: list[tuple[str, str, str]] = field(default_factory=list)
    transitions: list[tuple[str, str]] = field(default_factory=list)  # (from, to) recorded by this write

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


# ---- entry point -----------------------------------------------------------------------------


@register(PLURAL)
def reconcile(obj: dict[str, Any]) -> float | None:
    meta = obj["metadata"]
    status = obj.get("status") or {}
    now = datetime.now(UTC)
    pend = Pending(obj, copy.deepcopy(status), now)
    try:
        spec = AgentTaskSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        fields = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        pend.condition("Accepted", False, "InvalidSpec", fields, "Warning")
        return _write(pend, None)
    st = pend.status
    st.setdefault("phase", Phase.BACKLOG.value)
    st.setdefault("transitions", 0)
    pend.condition("Accepted", True, "Valid", "spec is valid")
    _sync_approvals(pend, spec)
    handback.apply(pend, spec)  # holder gone, silent past its grace, or asked to give the task back
    recorded = Phase(st["phase"])
    requested = spec.requested_phase

    if recorded == Phase.BACKLOG and requested in (Phase.BACKLOG, Phase.ASSIGNED):
        # Assignment is decided for the whole namespace at once (priority order, capacity), and its
        # write initialises the task too: one write, not two.
        runtime.enqueue(ASSIGN, meta["namespace"], "", delay=ASSIGN_DEBOUNCE_SECONDS)
        return None

    verdict = judge_request(recorded, requested)
    requeue: float | None = None
    if verdict is Verdict.IDLE:
        _release_all(pend, keep=None)
        if (get_condition(st.get("conditions"), "TransitionBlocked") or {}).get("status") == "True":
            pend.condition("TransitionBlocked", False, "NoPendingMove", f"task is {recorded.value}")
        pend.condition("Progressing", False, "Idle", f"task is {recorded.value}")
    elif verdict is Verdict.ILLEGAL:
        _release_all(pend, keep=None)
        pend.condition("TransitionBlocked", True, "IllegalTransition", _illegal_message(st, recorded, requested),
                       "Warning")
        pend.condition("Progressing", False, "Blocked", "the requested move is not allowed")
    else:
        requeue = _move(pend, spec, recorded, requested)
    return _write(pend, requeue)


def _illegal_message(st: dict[str, Any], recorded: Phase, requested: Phase) -> str:
    from ..lifecycle import describe_allowed

    msg = f"cannot move from {recorded.value} to {requested.value}; allowed from {recorded.value}: " \
          f"{describe_allowed(recorded)}"
    if recorded == Phase.REJECTED:
        last = next((h for h in reversed(st.get("history") or []) if h.get("to") == Phase.REJECTED.value), None)
        if last:
            msg = f"review rejected ({last.get('notes') or 'no reason'}); request InProgress to rework. " + msg
    return msg


def _write(pend: Pending, requeue: float | None) -> float | None:
    """One status write (with the resourceVersion read: a concurrent change gives 409 and a retry),
    then its Events; nothing at all when the status is unchanged."""
    obj, st = pend.obj, pend.status
    meta = obj["metadata"]
    st["observedGeneration"] = pend.gen
    if st != (obj.get("status") or {}):
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], _full_replace(obj.get("status") or {}, st),
                          meta["resourceVersion"])
        for frm, to in pend.transitions:
            TRANSITIONS_TOTAL.labels(frm, to).inc()
        for type_, reason, message in pend.events:
            # The Transitioned Event has a name derived from the move it records, so that a restart
            # between the write and the Event can emit it again without a duplicate.
            name = transition_event_name(obj, int(st.get("transitions", 0))) if reason == "Transitioned" else None
            kube.emit_event(obj, type_, reason, message, name=name)
        n = int(st.get("transitions", 0))
        if pend.transitions and _events_checked.get(meta["uid"], 0) == n - len(pend.transitions):
            _events_checked[meta["uid"]] = n  # earlier moves' Events were checked by this process
    else:
        _ensure_transition_event(obj, pend.now)
    return requeue


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
        kube.emit_event(obj, "Normal", "Transitioned", f"{entry.get('from')} -> {entry.get('to')} by "
                        f"{entry.get('by')} ({gates})", name=transition_event_name(obj, first + i))


def _full_replace(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that also removes keys dropped from status (null deletes in merge patch)."""
    patch: dict[str, Any] = dict(new)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


# ---- approvals -------------------------------------------------------------------------------


def _sync_approvals(pend: Pending, spec: AgentTaskSpec) -> None:
    """Record when each decision was first seen: the audit trail's 'when' is the operator's clock."""
    seen = list(pend.status.get("approvals") or [])
    ids = {a.get("id") for a in seen}
    for a in spec.approvals:
        if a.id in ids:
            continue
        ids.add(a.id)
        seen.append({"id": a.id, "approver": a.approver, "decision": a.decision,
                     "reason": _clip(a.reason, MAX_MESSAGE), "transition": a.transition,
                     "observedAt": format_time(pend.now)})
        pend.events.append(("Normal", "ApprovalRecorded",
                            f"{a.decision} by {a.approver} for {a.transition}: {a.reason or 'no reason'}"))
    if seen:
        pend.status["approvals"] = seen[-100:]


def _approval_views(pend: Pending, spec: AgentTaskSpec) -> list[taskflow.ApprovalView]:
    groups = {a.id: tuple(a.groups) for a in spec.approvals}
    return [
        taskflow.ApprovalView(a["approver"], a["decision"], a.get("reason", ""), a["transition"],
                              groups.get(a.get("id"), ()), parse_time(a["observedAt"]) or pend.now)
        for a in pend.status.get("approvals") or []
    ]


def _role_users(ns: str, roles: list[str]) -> set[str]:
    if not roles:
        return set()
    return {names.agent_sa_username(ns, a["metadata"]["name"]) for a in store.list("agents", ns)
            if (a.get("spec") or {}).get("role") in roles}


# ---- moves -----------------------------------------------------------------------------------


def _move(pend: Pending, spec: AgentTaskSpec, recorded: Phase, requested: Phase) -> float | None:
    st = pend.status
    key = transition_key(recorded, requested)
    _release_all(pend, keep=key)
    try:
        ns_policy = namespace_gate_policy(pend.obj["metadata"]["namespace"])
    except ValueError as exc:
        pend.condition("TransitionBlocked", True, "InvalidPolicy", str(exc), "Warning")
        pend.condition("Progressing", False, "Blocked", "the namespace gate policy is invalid")
        return None
    gates = taskflow.resolve_gates(key, spec.gates, ns_policy)
    refused = gateimages.refusal(spec, key, gates, store.labelled("configmaps", pend.obj["metadata"]["namespace"],
                                                                  POLICY_LABEL, "true"))
    if refused:  # the namespace's gate-image allow-list: no Job is started
        pend.condition("TransitionBlocked", True, "ImageNotAllowed", refused, "Warning")
        pend.condition("Progressing", False, "Blocked", "a gate image is not allowed in this namespace")
        return None
    missing = _missing_inputs(spec, gates)
    if missing:
        pend.condition("TransitionBlocked", True, "MissingInput",
                       f"{key} needs {', '.join(missing)} to be set", "Warning")
        pend.condition("Progressing", False, "Blocked", "waiting for input")
        return None
    ok, quota_msg, retry_in = _reserve_costs(pend, spec, key, requested)
    if not ok:
        pend.condition("TransitionBlocked", True, "QuotaExceeded", quota_msg, "Warning")
        pend.condition("Progressing", False, "Blocked", "waiting for quota")
        return retry_in

    results: list[dict[str, Any]] = []
    outcome = "passed"
    message = ""
    jobs = _task_jobs(pend.obj) if any(g.type == "Job" for g in gates) else []
    round_ = int(st.get("transitions", 0))
    since = (parse_time(st.get("lastTransitionTime")) or parse_time(pend.obj["metadata"]["creationTimestamp"])
             or pend.now)
    rejection: taskflow.ApprovalOutcome | None = None
    for gate in gates:
        if gate.type == "Job":
            res = _job_gate(pend, spec, gate, key, round_, jobs)
        else:
            res, rejection = _approval_gate(pend, spec, gate, key, since)
        results.append(res)
        if res["state"] != "Passed":
            outcome = {"Running": "running", "Pending": "running", "Waiting": "waiting"}.get(res["state"], "failed")
            message = f"gate {gate.name}: {res['message']}"
            break
    before = {(g["name"], g.get("attempt"), g["state"]) for g in st.get("gates") or []}
    for r in results:
        if r["state"] in ("Passed", "Failed") and (r["name"], r.get("attempt"), r["state"]) not in before:
            GATES_TOTAL.labels(r["type"], r["state"]).inc()
    st["gates"] = [g for g in st.get("gates") or [] if g["transition"] != key] + results

    if outcome == "passed":
        _commit_all(pend, key)
        by = spec.by or names.OPERATOR_USER
        _record(pend, spec, requested, by, results)
        return None
    if outcome == "running":
        pend.condition("TransitionBlocked", False, "GatesRunning", message)
        pend.condition("Progressing", True, "GatesRunning", message)
        return JOB_POLL_SECONDS
    if outcome == "waiting":
        pend.condition("TransitionBlocked", True, "AwaitingApproval", message, "Normal")
        pend.condition("Progressing", False, "AwaitingApproval", message)
        return _approval_requeue(gates, since, pend.now)
    if rejection is not None:
        # The reviewer's decision moves the task itself: review -> rejected, back to the assignee.
        _release_all(pend, keep=None)
        approver = rejection.approvers[0] if rejection.state == "Rejected" else names.OPERATOR_USER
        _record(pend, spec, Phase.REJECTED, approver, results, notes=rejection.message,
                rejections=list(rejection.rejections))
        return None
    _release_all(pend, keep=None)
    pend.condition("TransitionBlocked", True, "GateFailed", message, "Warning")
    pend.condition("Progressing", False, "GateFailed", message)
    return None


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


def _approval_requeue(gates: list[Gate], since: datetime, now: datetime) -> float | None:
    timeouts = [g.approval.timeout_seconds for g in gates if g.approval and g.approval.timeout_seconds]
    if not timeouts:
        return None
    left = min(timeouts) - (now - since).total_seconds()
    return max(1.0, left + 0.5) if left > 0 else None


def _missing_inputs(spec: AgentTaskSpec, gates: list[Gate]) -> list[str]:
    missing = []
    for gate in gates:
        if "output" in gate.requires and not spec.output:
            missing.append("spec.output")
        if "deployRef" in gate.requires and not (spec.deploy and (spec.deploy.version or spec.deploy.image)):
            missing.append("spec.deploy.version or spec.deploy.image")
    return sorted(set(missing))


def _approval_gate(pend: Pending, spec: AgentTaskSpec, gate: Gate, key: str,
                   since: datetime) -> tuple[dict[str, Any], taskflow.ApprovalOutcome | None]:
    assert gate.approval is not None or gate.type == "Approval"
    cfg = gate.approval or ApprovalGateSpec()
    ns = pend.obj["metadata"]["namespace"]
    author = _work_author(pend.status)
    # Separation of duties is about the work: who put it up for this decision (the requester of the
    # move into the current phase, e.g. -> Review) and who did it. A reviewer who approves and asks for
    # the next move in one step (`kubectl agentops task approve --move`) is neither.
    history = pend.status.get("history") or []
    submitter = history[-1].get("by") if history else spec.by
    outcome = taskflow.evaluate_approvals(cfg, _approval_views(pend, spec), key, since, pend.now,
                                          _role_users(ns, cfg.approvers.roles), requester=submitter,
                                          assignee=names.agent_sa_username(ns, author) if author else None)
    state = {"Passed": "Passed", "Waiting": "Waiting", "Rejected": "Failed", "TimedOut": "Failed"}[outcome.state]
    res = {"name": gate.name, "type": "Approval", "transition": key, "attempt": 1, "state": state,
           "message": outcome.message, "generation": pend.gen}
    return res, outcome if outcome.state in ("Rejected", "TimedOut") else None


def _work_author(st: dict[str, Any]) -> str | None:
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


# ---- Job gates -------------------------------------------------------------------------------


def _task_jobs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's gate Jobs, from the cache (owned by the task)."""
    return store.owned("jobs", obj["metadata"]["uid"])


def _job_gate(pend: Pending, spec: AgentTaskSpec, gate: Gate, key: str, round_: int,
              jobs: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [j for j in jobs if (j["metadata"].get("labels") or {}).get("agentops.dev/gate") == gate.name
            and j["metadata"]["labels"].get("agentops.dev/transition") == _label_transition(key)
            and j["metadata"]["labels"].get("agentops.dev/round") == str(round_)]
    decision = taskflow.decide_attempt(mine, pend.gen, spec.retry)
    name = names.gate_job_name(pend.obj["metadata"]["name"], key, gate.name, round_, decision.attempt)
    res: dict[str, Any] = {"name": gate.name, "type": "Job", "transition": key, "attempt": decision.attempt,
                           "job": name, "generation": pend.gen}
    if decision.action == "create":
        missing = _missing_references(pend.obj["metadata"]["namespace"], gate)
        if missing:
            # The Job would be created but its pods never start (the Job controller only records an
            # Event): say which field names what is missing, instead of "running" until the deadline.
            res.update(state="Failed", message=f"{missing}; fix it, then bump spec.retry")
            return res
        body = build_gate_job(pend.obj, spec, gate, key, round_, decision.attempt, name)
        _, created = kube.create_or_adopt(body)  # made before a restart: adopted, not made twice
        if created:
            pend.events.append(("Normal", "GateStarted", f"{key}: gate {gate.name} attempt {decision.attempt} "
                                                         f"started as Job {name}"))
        res.update(state="Running", message=f"job {name} started", startedAt=format_time(pend.now))
        return res
    job = decision.job or {}
    res["startedAt"] = (job.get("status") or {}).get("startTime")
    if decision.action == "wait":
        res.update(state="Running", message=f"job {name} running")
    elif decision.action == "passed":
        res.update(state="Passed", message=f"job {name} completed",
                   finishedAt=(job.get("status") or {}).get("completionTime"))
    else:
        reason = kube.job_failure_detail(pend.obj["metadata"]["namespace"], name) or decision.message
        res.update(state="Failed", message=f"job {name} failed: {reason}; bump spec.retry (or change the "
                                           f"request) to run attempt {decision.attempt + 1}")
    return res


def _missing_references(ns: str, gate: Gate) -> str:
    """A ServiceAccount or PersistentVolumeClaim the gate's Job would need and that does not exist
    (one read each, only when a gate Job is about to be made); '' when all exist."""
    cfg = gate.job
    if cfg is None:
        return ""
    if cfg.service_account_name and not kube.exists("ServiceAccount", ns, cfg.service_account_name):
        return f"gate {gate.name}: job.serviceAccountName: ServiceAccount {cfg.service_account_name} not found"
    if cfg.workspace_claim and not kube.exists("PersistentVolumeClaim", ns, cfg.workspace_claim):
        return f"gate {gate.name}: job.workspaceClaim: PersistentVolumeClaim {cfg.workspace_claim} not found"
    return ""


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
        "agentops.dev/transition": _label_transition(key),
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


def _holder(obj: dict[str, Any], key: str, round_: int) -> str:
    return f"AgentTask/{obj['metadata']['name']}/{obj['metadata']['uid']}/{key}/{round_}"


def _reserve_costs(pend: Pending, spec: AgentTaskSpec, key: str, requested: Phase) -> tuple[bool, str, float | None]:
    costs = [c for c in spec.costs if c.phase == requested.value]
    if not costs:
        return True, "", None
    from .. import quota_client
    ns = pend.obj["metadata"]["namespace"]
    labels = pend.obj["metadata"].get("labels") or {}
    round_ = int(pend.status.get("transitions", 0))
    holder = _holder(pend.obj, key, round_)
    quotas = store.list("quotas", ns)
    held = list(pend.status.get("reservations") or [])
    for cost in costs:
        for q in quotas:
            if q["spec"].get("resource") != cost.resource or not selectors.matches(q["spec"].get("selector"), labels):
                continue
            qname = q["metadata"]["name"]
            if any(r["quota"] == qname and r["transition"] == key for r in held):
                continue
            grant = quota_client.reserve(kube.custom(), ns, qname, holder, cost.amount,
                                         reason=f"{pend.obj['metadata']['name']}: {key}")
            if not grant.granted:
                pend.status["reservations"] = held
                _release_all(pend, keep=None)
                retry_in = None
                if grant.reset_at:
                    retry_in = max(1.0, (grant.reset_at - pend.now).total_seconds() + 1)
                return False, f"quota {qname}: {grant.message}", retry_in
            held.append({"quota": qname, "resource": cost.resource, "amount": cost.amount, "transition": key})
            pend.events.append(("Normal", "QuotaReserved", f"{cost.amount} {cost.resource} reserved in {qname} "
                                                           f"for {key}"))
    pend.status["reservations"] = held
    return True, "", None


def _release_all(pend: Pending, keep: str | None) -> None:
    held = pend.status.get("reservations") or []
    if not held:
        return
    from .. import quota_client

    ns = pend.obj["metadata"]["namespace"]
    round_ = int(pend.status.get("transitions", 0))
    kept = []
    for r in held:
        if r["transition"] == keep:
            kept.append(r)
            continue
        quota_client.release(kube.custom(), ns, r["quota"], _holder(pend.obj, r["transition"], round_))
        pend.events.append(("Normal", "QuotaReleased", f"{r['amount']} {r['resource']} released in {r['quota']}"))
    pend.status["reservations"] = kept


def _commit_all(pend: Pending, key: str) -> None:
    held = pend.status.get("reservations") or []
    if not held:
        return
    from .. import quota_client

    ns = pend.obj["metadata"]["namespace"]
    round_ = int(pend.status.get("transitions", 0))
    for r in held:
        quota_client.commit(kube.custom(), ns, r["quota"], _holder(pend.obj, key, round_))
        pend.events.append(("Normal", "QuotaCommitted", f"{r['amount']} {r['resource']} used in {r['quota']}"))
    pend.status["reservations"] = []


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
    holder = _holder(pend.obj, key, int(pend.status.get("transitions", 0)))
    got = quota_client.charge_for(kube.custom(), meta["namespace"], meta.get("labels") or {}, holder, costs,
                                  reason=f"{meta['name']}: {key}")
    if not got.ok:
        retry = max(1.0, (got.reset_at - pend.now).total_seconds() + 1) if got.reset_at else BACKLOG_POLL_SECONDS
        return got.message, retry
    for qname, resource, amount in got.charged:
        pend.events.append(("Normal", "QuotaCommitted", f"{amount} {resource} used in {qname}"))
    return None


# ---- recording a transition ------------------------------------------------------------------


def _record(pend: Pending, spec: AgentTaskSpec, to: Phase, by: str, gates: list[dict[str, Any]],
            notes: str | None = None, rejections: list[str] | None = None,
            agents: list[dict[str, Any]] | None = None) -> None:
    st, obj, now = pend.status, pend.obj, pend.now
    frm = st.get("phase", Phase.BACKLOG.value)
    entry: dict[str, Any] = {
        "from": frm, "to": to.value, "at": format_time(now), "by": by,
        "gates": [{k: (_clip(v, MAX_MESSAGE) if k == "message" else v) for k, v in g.items() if v is not None}
                  for g in gates],
    }
    if spec.output:
        entry["output"] = _clip(spec.output)
    if spec.notes or notes:
        entry["notes"] = _clip(notes or spec.notes)
    if to == Phase.DEPLOYED and spec.deploy:
        ref = "@".join(x for x in (spec.deploy.version, spec.deploy.image) if x)
        st["deployRef"] = ref
        entry["deployRef"] = ref
    if to == Phase.DONE and st.get("assignee"):
        st["completedBy"] = st["assignee"]
    history = [*(st.get("history") or []), entry]
    limit = min(spec.history_limit, settings_mod.current.history_limit) if spec.history_limit else 50
    st["history"] = history[-limit:]
    st["transitions"] = int(st.get("transitions", 0)) + 1
    st["phase"] = to.value
    st["lastTransitionTime"] = format_time(now)
    pend.transitions.append((frm, to.value))
    gate_note = ", ".join(f"{g['name']} {g['state'].lower()}" for g in gates) or "no gates"
    pend.events.append(("Normal", "Transitioned", f"{frm} -> {to.value} by {by} ({gate_note})"))
    pend.condition("TransitionBlocked", False, "Transitioned", f"moved {frm} -> {to.value}")
    pend.condition("Progressing", False, "Idle", f"task is {to.value}")
    _handoff(pend, spec, to, notes=notes, rejections=rejections or [], agents=agents)
    if to == Phase.CANCELLED:
        _stop_running_jobs(obj)


def _handoff(pend: Pending, spec: AgentTaskSpec, to: Phase, notes: str | None, rejections: list[str],
             agents: list[dict[str, Any]] | None) -> None:
    st = pend.status
    stage = taskflow.stage_for(spec.pipeline, to)
    if stage is None or stage.name == st.get("stage"):
        return
    ns = pend.obj["metadata"]["namespace"]
    previous = st.get("assignee")
    # Returning to a stage goes back to the agent that held it (rework after a rejection).
    back = next((h.get("toAgent") for h in reversed(st.get("handoffs") or []) if h.get("stage") == stage.name), None)
    target = stage.agent or back
    if target is None and stage.role:
        views = agent_views(agents if agents is not None else store.list("agents", ns), store.list(PLURAL, ns))
        chosen = taskflow.pick_agent(views, stage.role, frozenset())
        target = chosen.name if chosen else None
    if target is None:
        target = previous
        pend.events.append(("Warning", "NoAgentForStage",
                            f"no Ready agent with role {stage.role} for stage {stage.name}; {previous} keeps it"))
    outputs = [h["output"] for h in st.get("history") or [] if h.get("output")]
    record: dict[str, Any] = {"stage": stage.name, "at": format_time(pend.now), "outputs": sorted(set(outputs))[-10:]}
    if previous:
        record["fromAgent"] = previous
    if target:
        record["toAgent"] = target
    if notes or spec.notes:
        record["notes"] = _clip(notes or spec.notes)
    if rejections:
        record["rejections"] = [_clip(r, MAX_MESSAGE) or "" for r in rejections[:5]]
    st["handoffs"] = [*(st.get("handoffs") or []), record][-MAX_HANDOFFS:]
    st["stage"] = stage.name
    if target:
        st["assignee"] = target
    if target != previous:
        pend.events.append(("Normal", "HandedOff", f"stage {stage.name}: {previous or '-'} -> {target}"))


def _stop_running_jobs(obj: dict[str, Any]) -> None:
    """Cancelling stops the gates still running; finished Jobs stay as the audit trail."""
    for job in _task_jobs(obj):
        if taskflow.job_state(job)[0] == "Running":
            kube.delete_if_exists("Job", obj["metadata"]["namespace"], job["metadata"]["name"])


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
        _initialise(pend)
        refused = charge_assignment(pend, spec)
        if refused is not None:
            _assignment_refused(pend, *refused)
            continue
        pend.status["assignee"] = agent_name
        stage = taskflow.stage_for(spec.pipeline, Phase.ASSIGNED)
        if stage:
            pend.status["stage"] = stage.name
        by = spec.by if spec.requested_phase == Phase.ASSIGNED and spec.by else names.OPERATOR_USER
        _record(pend, spec, Phase.ASSIGNED, by, [], agents=agents)
        pend.condition("Assigned", True, "Assigned", f"assigned to {agent_name}")
        pend.events.append(("Normal", "Assigned", f"assigned to agent {agent_name}"))
        writes.append(pend)
    for task_name, why in plan.waiting.items():
        obj = copy.deepcopy(backlog[task_name])
        pend = Pending(obj, copy.deepcopy(obj.get("status") or {}), now)
        _initialise(pend)
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


def _initialise(pend: Pending) -> None:
    """What the task's own reconcile would set on a valid task, so one write does both."""
    pend.status.setdefault("phase", Phase.BACKLOG.value)
    pend.status.setdefault("transitions", 0)
    pend.condition("Accepted", True, "Valid", "spec is valid")


def _write_or_skip(pend: Pending) -> None:
    try:
        _write(pend, None)
    except ApiException as exc:
        if exc.status not in (404, 409):
            raise
        # Changed or deleted under us: the watch brings the new version and another pass.
