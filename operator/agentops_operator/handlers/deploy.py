"""Tasks deployed through an Agent's rollout: the Rollout gate's reads, and the watch after Deployed.

Decisions are in `deploygate` (pure). Here: read the Agent and its ControllerRevisions from the cache,
turn the verdict into a gate result, and let Agent status changes wake the tasks that deploy through
that Agent -- a Done task waiting on the Rollout gate is reconciled again, a Deployed task whose
revision the Agent rolled back or undid is moved to RolledBack by a system move. The operator reads
the Agent only; its spec changes by GitOps (or the deploy Job), its rollout by the user's verbs.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from .. import deploygate
from ..cache import listen, store
from ..lifecycle import Phase
from ..models.agent import AgentStatus
from ..models.task import AgentTaskSpec, Gate
from ..runtime import register_work, runtime
from ..timeutil import format_time

log = logging.getLogger(__name__)
DEPLOY_WATCH = "deploy-watch"  # work item per (namespace, Agent): tasks deploying through it
SYSTEM_USER = "agentops-operator"
# What of an Agent's status the gate and the watch read: a change elsewhere (task counters) wakes nothing.
_WATCHED_STATUS = ("phase", "reason", "message", "stableRevision", "desiredRevision", "currentRevision",
                   "currentStep", "currentStepIndex", "stepCount", "canaryWeight", "rollout", "analysis",
                   "lastAnalysis", "conditions")


def agent_view(ns: str, name: str) -> tuple[AgentStatus | None, list[deploygate.RevisionInfo]]:
    """The Agent's typed status and its revisions (ControllerRevisions), from the cache."""
    obj = store.peek("agents", ns, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None, []
    try:
        status = AgentStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        log.warning("agent %s/%s: status not readable as AgentStatus", ns, name)
        return None, []
    revisions = [i for cr in store.owned("controllerrevisions", obj["metadata"]["uid"])
                 if (i := deploygate.revision_info(cr)) is not None]
    return status, revisions


def rollout_gate(obj: dict[str, Any], status_now: dict[str, Any], spec: AgentTaskSpec, gate: Gate, key: str,
                 events: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The result of a Rollout gate (as `GateResult` on the wire); Events for what changed."""
    ref = spec.deploy
    assert ref is not None and ref.agent  # deploygate.missing_inputs blocks the move before
    status, revisions = agent_view(obj["metadata"]["namespace"], ref.agent)
    view = deploygate.evaluate(ref.agent, ref, status, revisions)
    before: dict[str, Any] = next((g for g in status_now.get("gates") or []
                   if g.get("name") == gate.name and g.get("transition") == key), {})
    now = format_time(_now())
    res: dict[str, Any] = {
        "name": gate.name, "type": deploygate.ROLLOUT, "transition": key, "attempt": 1, "state": view.state,
        "message": view.message, "generation": int(obj["metadata"].get("generation", 1)),
        "startedAt": before.get("startedAt") or now,
        "rollout": view.rollout.model_dump(by_alias=True, mode="json", exclude_none=True),
    }
    if view.state in ("Passed", "Failed"):
        res["finishedAt"] = before.get("finishedAt") if before.get("state") == view.state else now
    old_summary = (before.get("rollout") or {}).get("summary")
    if view.state == "Running" and old_summary != view.rollout.summary:
        events.append(("Normal", "RolloutProgress", f"{key}: gate {gate.name}: {view.message}"[:1024]))
    return res


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# ---- waking tasks ----------------------------------------------------------------------------


def _agent_changed(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    cur = new or old
    assert cur is not None
    o, n = (old or {}).get("status") or {}, (new or {}).get("status") or {}
    if old is None or new is None or any(o.get(k) != n.get(k) for k in _WATCHED_STATUS):
        # Even the operator's own status write: the Agent reconcile wrote it, the tasks must see it.
        runtime.enqueue(DEPLOY_WATCH, cur["metadata"].get("namespace") or "", cur["metadata"]["name"])


def _task_changed(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    """A task that just became Deployed through an Agent: check at once that its revision still stands
    (an undo may have come between the gate's pass and the record)."""
    if new is None:
        return
    o, n = (old or {}).get("status") or {}, new.get("status") or {}
    if n.get("phase") != Phase.DEPLOYED.value or o.get("phase") == Phase.DEPLOYED.value:
        return
    through = deploygate.deployed_through(n.get("history") or [])
    if through is not None:
        runtime.enqueue(DEPLOY_WATCH, new["metadata"].get("namespace") or "", through.agent)


listen("agents", _agent_changed)
listen("agenttasks", _task_changed)


def _waits_on(t: dict[str, Any], agent: str) -> bool:
    spec, st = t.get("spec") or {}, t.get("status") or {}
    return (st.get("phase") == Phase.DONE.value and spec.get("requestedPhase") == Phase.DEPLOYED.value
            and (spec.get("deploy") or {}).get("agent") == agent)


@register_work(DEPLOY_WATCH)
def deploy_watch(ns: str, agent: str) -> float | None:
    """The Agent's rollout changed: its waiting Rollout gates look again; Deployed tasks whose revision
    it rolled back or undid move to RolledBack (idempotent per Agent and revision)."""
    status, revisions = agent_view(ns, agent)
    for t in store.list("agenttasks", ns):
        name = t["metadata"]["name"]
        if _waits_on(t, agent):
            runtime.enqueue("agenttasks", ns, name)
            continue
        st = t.get("status") or {}
        if st.get("phase") != Phase.DEPLOYED.value:
            continue
        through = deploygate.deployed_through(st.get("history") or [])
        if through is None or through.agent != agent:
            continue
        gone = deploygate.undone(through, status, revisions)
        if gone is None:
            continue
        result = request_rolled_back(ns, name, gone.reason, gone.message, f"agent-undo/{agent}/{through.revision}")
        log.info("task %s/%s: agent %s left revision %s (%s): %s", ns, name, agent, through.revision, gone.reason,
                 result)
    return None


def request_rolled_back(ns: str, name: str, reason: str, message: str, key: str) -> str:
    # handlers.systemmove lands on main with issue 13/14's operator-initiated moves.
    import importlib

    request_system_move = importlib.import_module(f"{__package__}.systemmove").request_system_move
    return request_system_move(ns, name, Phase.ROLLED_BACK.value, by=SYSTEM_USER, reason=f"{reason}: {message}",
                               key=key)
