"""Quota reconciliation: initialise the window, reset `used` at resetAt, set conditions, emit Events.

Thin: the ledger maths is `quotaledger`, the atomic writes are `quota_client`. Runs at every watch
event, at each resetAt (the returned requeue) and at start-up (the runtime's first re-list), which
is how resets missed while the operator was down are caught up: the first reconcile finds
resetAt in the past and rolls the window over, counting the windows that elapsed.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import kube, quota_client
from .. import quotaledger as ql
from ..cache import store
from ..models.quota import QuotaStatus
from ..runtime import register

log = logging.getLogger(__name__)
PLURAL = "quotas"
AFTER_RESET = 0.05  # seconds past resetAt to wake up, so the boundary has certainly passed
# How long a task's commit is remembered at least (quotaledger.COMMIT_GRACE); shorter only for tests.
GRACE = timedelta(seconds=float(os.environ.get("AGENTOPS_QUOTA_COMMIT_GRACE_SECONDS", "60")))
TIDY_IDLE = 30.0  # seconds between looks while remembered commits wait for their task; see _tidy_again


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
    obj = _tidy_holders(api, obj, now)

    raw = obj.get("status") or {}
    status = QuotaStatus.model_validate(raw)
    conds, events = ql.conditions(v, raw, gen, now)
    if conds != raw.get("conditions") or status.observed_generation != gen:
        # No resourceVersion: only this handler writes these keys, and a ledger change in between
        # brings another watch event and another reconcile.
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], {"conditions": conds, "observedGeneration": gen})
        for type_, reason, message in events:
            kube.emit_event(obj, type_, reason, message)
    if status.reset_at is None:
        return 1.0
    until_reset = max(AFTER_RESET, (status.reset_at - datetime.now(UTC)).total_seconds() + AFTER_RESET)
    return min(until_reset, _tidy_again(status, now)) if status.committed else until_reset


def _tidy_again(status: QuotaStatus, now: datetime) -> float:
    """Remembered commits are forgotten once old enough and their task recorded the move, which brings no
    Quota event: look again when the next one is old enough, then now and then while any is left."""
    wait = ql.next_forget_in(status, now, GRACE)
    return TIDY_IDLE if wait is None or wait <= 0 else wait + AFTER_RESET


def _announce_client_reset(api: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """A client rolled the window over (a call after resetAt): record the QuotaReset Event once."""
    last = QuotaStatus.model_validate(obj.get("status") or {}).last_reset
    if last is None or last.event_recorded:
        return obj
    meta = obj["metadata"]
    out = quota_client.run(api, meta["namespace"], meta["name"], ql.AnnounceReset(last.window_start), first=obj)
    if out.result and out.result.rolled and ql.worth_announcing(out.result.rolled):
        kube.emit_event(out.obj, "Normal", "QuotaReset", ql.reset_message(out.result.rolled))
    if out.result and out.result.granted:  # we flipped eventRecorded, so the Event is ours to emit
        kube.emit_event(out.obj, "Normal", "QuotaReset", ql.reset_message(last))
    return out.obj


def _task_views(ns: str, holders: list[str]) -> dict[str, ql.TaskView]:
    """The tasks named by task holders, as the ledger needs them (missing ones are absent)."""
    wanted = {p[0] for h in holders if (p := ql.parse_task_holder(h))}
    if not wanted:
        return {}
    # From the watch-fed cache: a task absent there is deleted (or not yet seen; the cache is primed
    # before any reconcile runs, so only a task created in the last moments could be missed, and its
    # holds are younger than the grace period the ledger keeps them for).
    found = [t for n in sorted(wanted) if (t := store.peek("agenttasks", ns, n)) is not None]
    return {
        t["metadata"]["name"]: ql.TaskView(t["metadata"]["uid"], int((t.get("status") or {}).get("transitions") or 0))
        for t in found
    }


def _tidy_holders(api: Any, obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Release reservations no task will ever settle (task deleted mid-move, or it moved on and its own
    record of the hold was lost), and forget remembered commits no retry can reach any more."""
    meta, status = obj["metadata"], QuotaStatus.model_validate(obj.get("status") or {})
    holders = [r.holder for r in status.reservations] + [c.holder for c in status.committed]
    if not holders:
        return obj
    tasks = _task_views(meta["namespace"], holders)
    stale = ql.stale_reservations(status, tasks)
    for r in stale:
        quota_client.release(api, meta["namespace"], meta["name"], r.holder)
        name = (ql.parse_task_holder(r.holder) or ("?",))[0]
        why = "deleted" if name not in tasks else "that moved on"
        kube.emit_event(obj, "Normal", "QuotaReleased", f"released {r.amount} held by {why} AgentTask {name}")
    if stale:
        obj = kube.get_custom(PLURAL, meta["namespace"], meta["name"]) or obj
    done = ql.forgettable(obj.get("status") or {}, tasks, now, GRACE)
    if done:
        obj = quota_client.forget(api, obj, done).obj
    return obj


def _invalid(obj: dict[str, Any], message: str, now: datetime) -> None:
    meta, raw = obj["metadata"], obj.get("status") or {}
    gen = meta.get("generation")
    conds = ql.invalid_conditions(raw, message, gen, now)
    if conds != raw.get("conditions") or raw.get("observedGeneration") != gen:
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], {"conditions": conds, "observedGeneration": gen})
        kube.emit_event(obj, "Warning", "InvalidSpec", message)
    return None
