"""External Agents (no spec.image): readiness from the heartbeat Lease, no workload.

Called by `handlers.agent.reconcile` after the ServiceAccount is applied (an external agent still
has its identity `agent-<name>`). Decisions come from the pure `heartbeat.decide`; this module only
reads the Lease and writes the Agent's status (merge patch of the keys it owns, only on change).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import heartbeat, kube
from ..cache import store
from ..conditions import get_condition, set_condition
from ..mergepatch import merge_patch
from ..models.agent import AgentSpec
from ..timeutil import format_time, parse_time
from . import handback as handback_io

PLURAL = "agents"


def lease_renew_time(ns: str, name: str) -> datetime | None:
    """renewTime (else acquireTime) of the Lease named after the Agent (from the watch-fed cache: a
    renewal wakes the Agent); None if there is none."""
    lease = store.peek("leases", ns, name)
    spec = (lease or {}).get("spec") or {}
    return parse_time(spec.get("renewTime") or spec.get("acquireTime"))


def reconcile(obj: dict[str, Any], spec: AgentSpec, now: datetime) -> float | None:
    meta = obj["metadata"]
    old = obj.get("status") or {}
    ready_cond = get_condition(old.get("conditions"), "Ready")
    was_ready = None if ready_cond is None else ready_cond.get("status") == "True"
    renew = lease_renew_time(meta["namespace"], meta["name"])
    d = heartbeat.decide(renew, spec.heartbeat.timeout_seconds, now, was_ready, parse_time(old.get("lastActive")))
    gen = meta.get("generation")
    conditions = set_condition(old.get("conditions"), "Ready", d.ready, d.reason, d.message, gen, now)
    new: dict[str, Any] = {
        "phase": d.phase, "reason": d.reason, "message": d.message, "observedGeneration": gen,
        "replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "desiredReplicas": 0,
        "conditions": conditions,
    }
    if d.last_active is not None:
        new["lastActive"] = format_time(d.last_active)
    changed = merge_patch(old, new)
    if changed:
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], changed)
    if d.event:
        kube.emit_event(obj, *d.event)
    if not d.ready and d.reason == heartbeat.EXPIRED and spec.heartbeat.hand_back_after_seconds is not None:
        since = parse_time(get_condition(conditions, "Ready")["lastTransitionTime"]) or now  # type: ignore[index]
        left = spec.heartbeat.hand_back_after_seconds - (now - since).total_seconds()
        if left > 0:
            return left + 0.5  # look again when the grace ends
        handback_io.wake_tasks_of(meta["namespace"], meta["name"])  # they hand themselves back
    return d.requeue_after
