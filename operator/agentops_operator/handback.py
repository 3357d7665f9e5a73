"""When an open task goes back to the queue (pure: no I/O).

A task held by an agent is handed back — reassigned to another Ready agent of the stage's role,
with a handoff record saying why — when:

* the agent asked for it: the annotation ``agentops.dev/hand-back`` (set by the worker library's
  ``hand_back``/``fail``) names the agent holding the task;
* the Agent is gone (deleted);
* the Agent is external and NotReady with reason HeartbeatExpired for longer than its
  ``spec.heartbeat.handBackAfterSeconds`` (default 300 s; null: never).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

ANNOTATION = "agentops.dev/hand-back"
HOLDING_PHASES = ("Assigned", "InProgress", "Review", "Rejected", "Done")
DEFAULT_GRACE = 300


@dataclass(frozen=True)
class HandBack:
    reason: str | None  # set: hand the task back now, with this reason
    wait: float | None = None  # seconds until it would be handed back (the grace still running)


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def decide(task: dict[str, Any], agent: dict[str, Any] | None, now: datetime) -> HandBack:
    """`agent`: the Agent named by status.assignee as read now (None: it does not exist)."""
    st = task.get("status") or {}
    holder = st.get("assignee")
    if not holder or (st.get("phase") or "Backlog") not in HOLDING_PHASES:
        return HandBack(None)
    try:
        asked = json.loads((task["metadata"].get("annotations") or {}).get(ANNOTATION) or "{}")
    except ValueError:
        asked = {}
    if isinstance(asked, dict) and asked.get("agent") == holder:
        return HandBack(f"handed back by {holder}: {asked.get('reason') or 'no reason given'}")
    if agent is None or agent["metadata"].get("deletionTimestamp"):
        return HandBack(f"agent {holder} was removed")
    spec = agent.get("spec") or {}
    if spec.get("image"):
        return HandBack(None)
    grace = (spec.get("heartbeat") or {}).get("handBackAfterSeconds", DEFAULT_GRACE)
    ready = next((c for c in (agent.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    if grace is None or not ready or ready.get("status") != "False" or ready.get("reason") != "HeartbeatExpired":
        return HandBack(None)
    since = _ts(ready.get("lastTransitionTime"))
    if since is None:
        return HandBack(None)
    left = grace - (now - since).total_seconds()
    if left > 0:
        return HandBack(None, wait=left)
    return HandBack(f"agent {holder} has had no heartbeat since {ready.get('lastTransitionTime')} "
                    f"(NotReady for more than {grace}s)")
