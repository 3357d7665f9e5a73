"""Quota reconciliation: initialise the window, reset `used` at resetAt, set conditions, emit Events.

Thin: the ledger maths is `quotaledger`, the atomic writes are `quota_client`. Runs at every watch
event, at each resetAt (the returned requeue) and at start-up (the runtime's first re-list), which
is how resets missed while the operator was down are caught up: the first reconcile finds
resetAt in the past and rolls the window over, counting the windows that elapsed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from .. import kube, quota_client
from .. import quotaledger as ql
from ..cache import store
from ..runtime import register
from ..timeutil import parse_time

log = logging.getLogger(__name__)
PLURAL = "quotas"
AFTER_RESET = 0.05  # seconds past resetAt to wake up, so the boundary has certainly passed


@register(PLURAL)
def reconcile(obj: dict[str, Any]) -> float | None:
    meta = obj["metadata"]
    gen = meta.get("generation")
    now = datetime.now(UTC)
    try:
        v = ql.view(obj)
    except ValueError as exc:
        _invalid(obj, str(exc), now)
        return None
    api = kube.custom()
    out = quota_client.settle(api, obj, now)
    obj = out.obj
    if out.result and out.result.rolled and ql.worth_announcing(out.result.rolled):
        kube.emit_event(obj, "Normal", "QuotaReset", ql.reset_message(out.result.rolled))
    obj = _announce_client_reset(api, obj)
    obj = _release_orphans(api, obj)

    status = obj.get("status") or {}
    conds, events = ql.conditions(v, status, gen, now)
    if conds != status.get("conditions") or status.get("observedGeneration") != gen:
        # No resourceVersion: only this handler writes these keys, and a ledger change in between
        # brings another watch event and another reconcile.
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], {"conditions": conds, "observedGeneration": gen})
        for type_, reason, message in events:
            kube.emit_event(obj, type_, reason, message)
    reset_at = parse_time(status.get("resetAt"))
    if reset_at is None:
        return 1.0
    return max(AFTER_RESET, (reset_at - datetime.now(UTC)).total_seconds() + AFTER_RESET)


def _announce_client_reset(api: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """A client rolled the window over (a call after resetAt): record the QuotaReset Event once."""
    last = (obj.get("status") or {}).get("lastReset") or {}
    if not last or last.get("eventRecorded"):
        return obj
    meta = obj["metadata"]
    out = quota_client.run(api, meta["namespace"], meta["name"], ql.AnnounceReset(last["windowStart"]), first=obj)
    if out.result and out.result.rolled and ql.worth_announcing(out.result.rolled):
        kube.emit_event(out.obj, "Normal", "QuotaReset", ql.reset_message(out.result.rolled))
    if out.result and out.result.granted:  # we flipped eventRecorded, so the Event is ours to emit
        kube.emit_event(out.obj, "Normal", "QuotaReset", ql.reset_message(last))
    return out.obj


def _release_orphans(api: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """Release reservations of AgentTasks that no longer exist (deleted mid-move), or they leak forever."""
    meta = obj["metadata"]
    held = (obj.get("status") or {}).get("reservations") or []
    task_holders = [r["holder"] for r in held if r["holder"].startswith("AgentTask/")]
    if not task_holders:
        return obj
    alive = {(t["metadata"]["name"], t["metadata"]["uid"]) for t in store.list("agenttasks", meta["namespace"])}
    orphans = [r for r in held if r["holder"] in task_holders and tuple(r["holder"].split("/")[1:3]) not in alive]
    for r in orphans:
        quota_client.release(api, meta["namespace"], meta["name"], r["holder"])
        task = r["holder"].split("/")[1]
        kube.emit_event(obj, "Normal", "QuotaReleased", f"released {r['amount']} held by deleted AgentTask {task}")
    if not orphans:
        return obj
    return store.get(PLURAL, meta["namespace"], meta["name"]) or obj


def _invalid(obj: dict[str, Any], message: str, now: datetime) -> None:
    meta, status = obj["metadata"], obj.get("status") or {}
    gen = meta.get("generation")
    conds = ql.invalid_conditions(status, message, gen, now)
    if conds != status.get("conditions") or status.get("observedGeneration") != gen:
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], {"conditions": conds, "observedGeneration": gen})
        kube.emit_event(obj, "Warning", "InvalidSpec", message)
    return None
