"""metav1.Condition bookkeeping (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .timeutil import format_time, utc_now


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Return a new list with the condition upserted; lastTransitionTime moves only on a status change."""
    status_s = status if isinstance(status, str) else ("True" if status else "False")
    stamp = format_time(now or utc_now())
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions or []:
        if cond.get("type") != type_:
            out.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != status_s
        out.append(
            {
                "type": type_,
                "status": status_s,
                "observedGeneration": generation,
                "lastTransitionTime": stamp if changed else cond.get("lastTransitionTime", stamp),
                "reason": reason,
                "message": message,
            }
        )
    if not found:
        out.append(
            {
                "type": type_,
                "status": status_s,
                "observedGeneration": generation,
                "lastTransitionTime": stamp,
                "reason": reason,
                "message": message,
            }
        )
    return out


def remove_condition(conditions: list[dict[str, Any]] | None, type_: str) -> list[dict[str, Any]]:
    return [dict(c) for c in conditions or [] if c.get("type") != type_]


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    for cond in conditions or []:
        if cond.get("type") == type_:
            return cond
    return None
