"""Tasks deployed through an Agent's rollout: the Rollout gate's reads (`agent_view`; the gate result is
`taskplan`'s), and the watch after Deployed.

Decisions are in `deploygate` (pure). Here: read the Agent and its ControllerRevisions from the cache,
turn the verdict into a gate result, and let Agent status changes wake the tasks that deploy through
that Agent -- a Done task waiting on the Rollout gate is reconciled again, a Deployed task whose
revision the Agent rolled back or undid is moved to RolledBack by a system move. The operator reads
the Agent only; its spec changes by GitOps (or the deploy Job), its rollout by the user's verbs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import ValidationError

from .. import deploygate
from ..cache import listen, store
from ..lifecycle import Phase
from ..models.agent import AgentStatus
from ..runtime import register_work, runtime
from .systemmove import request_system_move

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


# ---- waking tasks ----------------------------------------------------------------------------


class _Index:
    """(namespace, Agent) -> names of the tasks that deploy through it (spec.deploy.agent, or the Agent
    their move into Deployed went through), so an Agent's status change looks at those tasks only.
    Kept by the task listener; a namespace is scanned once, by the first watch item, since priming the
    cache notifies no listener."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[tuple[str, str], set[str]] = {}
        self._scanned: set[str] = set()

    @staticmethod
    def agents_of(t: dict[str, Any] | None) -> set[str]:
        if t is None:
            return set()
        out = {a} if (a := ((t.get("spec") or {}).get("deploy") or {}).get("agent")) else set()
        st = t.get("status") or {}
        if st.get("phase") == Phase.DEPLOYED.value and (through := deploygate.deployed_through(
                st.get("history") or [])) is not None:
            out.add(through.agent)
        return out

    def update(self, ns: str, name: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        before, after = self.agents_of(old), self.agents_of(new)
        if before == after:
            return
        with self._lock:
            for agent in before - after:
                names = self._tasks.get((ns, agent))
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self._tasks[(ns, agent)]
            for agent in after - before:
                self._tasks.setdefault((ns, agent), set()).add(name)

    def wanted(self, ns: str, agent: str) -> bool:
        with self._lock:
            return ns not in self._scanned or (ns, agent) in self._tasks

    def tasks(self, ns: str, agent: str) -> list[str]:
        with self._lock:
            scanned = ns in self._scanned
        if not scanned:
            for t in store.list("agenttasks", ns):
                self.update(ns, t["metadata"]["name"], None, t)
            with self._lock:
                self._scanned.add(ns)
        with self._lock:
            return sorted(self._tasks.get((ns, agent), ()))


index = _Index()


def _agent_changed(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    cur = new or old
    assert cur is not None
    ns, name = cur["metadata"].get("namespace") or "", cur["metadata"]["name"]
    o, n = (old or {}).get("status") or {}, (new or {}).get("status") or {}
    if (old is None or new is None or any(o.get(k) != n.get(k) for k in _WATCHED_STATUS)) and index.wanted(ns, name):
        # Even the operator's own status write: the Agent reconcile wrote it, the tasks must see it.
        runtime.enqueue(DEPLOY_WATCH, ns, name)


def _task_changed(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    """Keep the index; a task that just became Deployed through an Agent: check at once that its
    revision still stands (an undo may have come between the gate's pass and the record)."""
    cur = new or old
    assert cur is not None
    index.update(cur["metadata"].get("namespace") or "", cur["metadata"]["name"], old, new)
    if new is None:
        return
    o, n = (old or {}).get("status") or {}, new.get("status") or {}
    if n.get("phase") != Phase.DEPLOYED.value or o.get("phase") == Phase.DEPLOYED.value:
        return
    through = deploygate.deployed_through(n.get("history") or [])
    if through is not None:
        runtime.enqueue(DEPLOY_WATCH, new["metadata"].get("namespace") or "", through.agent)


def after_prime() -> None:
    """Priming the cache notifies no listener: look once at every Agent's tasks (an undo while the
    operator was away must still move its Deployed tasks)."""
    for a in store.list("agents"):
        runtime.enqueue(DEPLOY_WATCH, a["metadata"].get("namespace") or "", a["metadata"]["name"])


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
    for name in index.tasks(ns, agent):
        t = store.peek("agenttasks", ns, name)
        if t is None:
            continue
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
    return request_system_move(ns, name, Phase.ROLLED_BACK.value, by=SYSTEM_USER, reason=f"{reason}: {message}",
                               key=key)
