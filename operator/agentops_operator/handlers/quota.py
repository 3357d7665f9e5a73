"""Quota reconciliation: initialise the window, reset used at resetAt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .. import kube, quotawindow
from ..conditions import now_iso, set_condition
from ..runtime import register


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@register("quotas")
def reconcile(obj: dict[str, Any]) -> float | None:
    meta, spec, status = obj["metadata"], obj["spec"], obj.get("status") or {}
    now = datetime.now(UTC)
    anchor = _parse_time(meta["creationTimestamp"])
    spec_w = quotawindow.parse_window(spec.get("window", "daily"))
    window = quotawindow.window_at(spec_w, spec.get("timeZone", "UTC"), now, anchor)
    used = int(status.get("used", 0))
    limit = int(spec["limit"])
    new: dict[str, Any] = {}
    if "resetAt" not in status:
        new = {"used": 0, "remaining": limit}
    elif _parse_time(status["resetAt"]) <= now:
        new = {"used": 0, "remaining": limit}
        kube.emit_event(obj, "Normal", "QuotaReset", f"window ended at {status['resetAt']}; used {used} reset to 0")
    else:
        new = {"remaining": max(0, limit - used)}
    new["windowStart"] = now_iso(window.start)
    new["resetAt"] = now_iso(window.end)
    new["observedGeneration"] = meta.get("generation")
    exhausted = new.get("used", used) >= limit
    new["conditions"] = set_condition(
        status.get("conditions"), "Exhausted", exhausted,
        "LimitReached" if exhausted else "WithinLimit",
        f"{new.get('used', used)}/{limit} used; resets at {new['resetAt']}",
        meta.get("generation"), now,
    )
    if any(status.get(k) != v for k, v in new.items()):
        kube.patch_status("quotas", meta["namespace"], meta["name"], new, meta["resourceVersion"])
    return max(1.0, (window.end - now).total_seconds())
