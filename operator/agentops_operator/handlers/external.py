"""External Agents (no spec.image): readiness from the heartbeat Lease, no workload.

Called by `handlers.agent.reconcile` after the ServiceAccount is applied (an external agent still
has its identity `agent-<name>`). Decisions come from the pure `heartbeat.decide`; this module only
reads the Lease and writes the Agent's status (merge patch of the keys it owns, only on change).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from .. import heartbeat, kube
from ..conditions import get_condition, now_iso, set_condition
from ..models.agent import AgentSpec
from . import handback as handback_io

PLURAL = "agents"


def lease_renew_time(ns: str, name: str) -> datetime | None:
    """renewTime (else acquireTime) of the Lease named after the Agent; None if there is none."""
    try:
        lease = client.CoordinationV1Api(kube.api_client()).read_namespaced_lease(name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    spec = lease.spec
    return (spec.renew_time or spec.acquire_time) if spec else None


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def reconcile(obj: dict[str, Any], spec: AgentSpec, now: datetime) -> float | None:
    meta = obj["metadata"]
    old = obj.get("status") or {}
    ready_cond = get_condition(old.get("conditions"), "Ready")
    was_ready = None if ready_cond is None else ready_cond.get("status") == "True"
    renew = lease_renew_time(meta["namespace"], meta["name"])
    d = heartbeat.decide(renew, spec.heartbeat.timeout_seconds, now, was_ready, _ts(old.get("lastActive")))
    gen = meta.get("generation")
    conditions = set_condition(old.get("conditions"), "Ready", d.ready, d.reason, d.message, gen, now)
    new: dict[str, Any] = {
        "phase": d.phase, "reason": d.reason, "message": d.message, "observedGeneration": gen,
        "replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "desiredReplicas": 0,
        "conditions": conditions,
    }
    if d.last_active is not None:
        new["lastActive"] = now_iso(d.last_active)
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    if changed:
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], changed)
    if d.event:
        kube.emit_event(obj, *d.event)
    if not d.ready and d.reason == heartbeat.EXPIRED and spec.heartbeat.hand_back_after_seconds is not None:
        since = _ts(get_condition(conditions, "Ready")["lastTransitionTime"]) or now  # type: ignore[index]
        left = spec.heartbeat.hand_back_after_seconds - (now - since).total_seconds()
        if left > 0:
            return left + 0.5  # look again when the grace ends
        handback_io.wake_tasks_of(meta["namespace"], meta["name"])  # they hand themselves back
    return d.requeue_after
