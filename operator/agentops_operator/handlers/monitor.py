"""The task reconcile's hook into monitoring: the Stale condition, its Event, and when to look again.

The decisions are `monitoring` (pure); this reads the namespace policy from the cache and puts the
result on the status under construction (`handlers.task.Pending`), which the task's one status write
carries. The gauge is computed at scrape time from the condition (`metrics.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import yaml

from .. import monitoring
from ..cache import store
from ..conditions import get_condition
from ..runtime import register_work, runtime
from ..timeutil import parse_time

# The namespace policy's ConfigMaps: the same label as the gate policy (handlers.task.POLICY_LABEL).
POLICY_LABEL = "agentops.dev/gate-policy"
WAKE_TASKS = "wake-monitored-tasks"
_cache: dict[str, tuple[tuple[tuple[str, str], ...], monitoring.MonitoringPolicy | str]] = {}
_lock = threading.Lock()


class _Pending(Protocol):
    obj: dict[str, Any]
    status: dict[str, Any]
    now: datetime
    events: list[tuple[str, str, str]]

    def condition(self, type_: str, status: bool, reason: str, message: str, event: str | None = None) -> None: ...


def namespace_policy(ns: str) -> monitoring.MonitoringPolicy | str:
    """The namespace's monitoring policy from the cached policy ConfigMaps (key `monitoring.yaml`),
    or the error text naming the ConfigMap and field. Parsed once per version of those ConfigMaps."""
    cms = sorted(store.labelled("configmaps", ns, POLICY_LABEL, "true"), key=lambda c: c["metadata"]["name"])
    version = tuple((c["metadata"]["name"], str(c["metadata"].get("resourceVersion"))) for c in cms)
    with _lock:
        hit = _cache.get(ns)
        if hit is not None and hit[0] == version:
            return hit[1]
    docs: list[tuple[str, Any]] = []
    result: monitoring.MonitoringPolicy | str
    try:
        for cm in cms:
            raw = (cm.get("data") or {}).get(monitoring.POLICY_KEY)
            if raw is None:
                continue
            where = f"ConfigMap {cm['metadata']['name']} data.{monitoring.POLICY_KEY}"
            try:
                docs.append((where, yaml.safe_load(raw)))
            except yaml.YAMLError as exc:
                raise ValueError(f"{where}: not YAML: {exc}") from exc
        result = monitoring.parse_policy(docs)
    except ValueError as exc:
        result = str(exc)
    with _lock:
        _cache[ns] = (version, result)
    return result


def task(pend: _Pending, requeue: float | None) -> float | None:
    """Set the task's Stale condition for this look (a Warning Event when it turns stale) and return
    the sooner of `requeue` and the moment it becomes stale."""
    meta = pend.obj["metadata"]
    st = pend.status
    policy = namespace_policy(meta["namespace"])
    due: float | None = None
    if isinstance(policy, str):
        update = monitoring.invalid_policy_update(st.get("conditions"), policy)
    else:
        created = parse_time(meta.get("creationTimestamp")) or pend.now
        s = monitoring.task_staleness(st, created, pend.now, policy)
        update = monitoring.stale_update(st.get("conditions"), s)
        due = s.due_in
    if update is not None:
        pend.condition(monitoring.STALE, update.status, update.reason, update.message)
        if update.event:
            pend.events.append((update.event, "TaskStale" if update.status else update.reason, update.message))
    if due is None:
        return requeue
    # Also a timer of its own: the assignment pass writes tasks too and returns no per-task requeue.
    # The queue keeps the earliest timer of a key, so the reconcile's own requeue adds nothing.
    runtime.schedule("agenttasks", meta["namespace"], meta["name"], due)
    return due if requeue is None else min(requeue, due)


def backlog(pend: _Pending, write: Callable[[Any, float | None], float | None]) -> float | None:
    """A task waiting in Backlog (its write belongs to the assignment pass): write only when its
    Stale condition changes; else just come back when it becomes stale."""
    due = task(pend, None)
    before = get_condition((pend.obj.get("status") or {}).get("conditions"), monitoring.STALE)
    if before != get_condition(pend.status.get("conditions"), monitoring.STALE):
        return write(pend, due)
    return due


@register_work(WAKE_TASKS)
def wake_tasks(ns: str, _name: str = "") -> None:
    """The namespace policy changed: every task of the namespace is looked at again."""
    for t in store.list("agenttasks", ns):
        runtime.enqueue("agenttasks", ns, t["metadata"]["name"])


def forget(ns: str) -> None:
    with _lock:
        _cache.pop(ns, None)
