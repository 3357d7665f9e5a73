"""Readiness of external Agents (no spec.image) from their heartbeat Lease. Pure: no I/O.

An external agent renews the coordination.k8s.io Lease named after its Agent (the way a kubelet
renews its node lease). The Agent is Ready while the Lease's renewTime is within
spec.heartbeat.timeoutSeconds; after that NotReady with reason HeartbeatExpired (and a Warning
Event once). status.lastActive follows the renewals, written at most every timeoutSeconds / 2 so a
heartbeat does not cost a status write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FRESH = "HeartbeatFresh"
EXPIRED = "HeartbeatExpired"
AWAITING = "AwaitingHeartbeat"


@dataclass(frozen=True)
class HeartbeatDecision:
    ready: bool
    phase: str  # Agent status.phase: Healthy, Degraded, Pending
    reason: str
    message: str
    requeue_after: float | None  # seconds until the heartbeat expires; None: only a Lease event can change it
    last_active: datetime | None  # new status.lastActive to write, or None to leave it
    event: tuple[str, str, str] | None  # (type, reason, message) to emit on a change of readiness


def decide(renew_time: datetime | None, timeout_seconds: int, now: datetime, was_ready: bool | None,
           last_active: datetime | None) -> HeartbeatDecision:
    """`was_ready`: the Ready condition recorded so far (None: never recorded)."""
    timeout = timedelta(seconds=timeout_seconds)
    if renew_time is None:
        return HeartbeatDecision(False, "Pending", AWAITING,
                                 "no heartbeat yet: the agent renews the Lease named after its Agent to become Ready",
                                 None, None, None)
    age = now - renew_time
    advanced = last_active is None or renew_time - last_active >= timeout / 2
    if age <= timeout:
        expires_in = (timeout - age).total_seconds()
        event = ("Normal", FRESH, f"heartbeat resumed (renewed {age.total_seconds():.0f}s ago)") \
            if was_ready is False else None
        return HeartbeatDecision(
            True, "Healthy", FRESH, f"heartbeat Lease renewed within the last {timeout_seconds}s",
            # a little after the expiry instant, so the next look sees it expired unless it was renewed
            max(0.5, expires_in + 0.2), renew_time if (advanced or was_ready is not True) else None, event)
    message = f"no heartbeat within {timeout_seconds}s; Lease last renewed " \
              f"{renew_time.isoformat(timespec='seconds').replace('+00:00', 'Z')}"
    event = ("Warning", EXPIRED, message) if was_ready is not False else None
    new_last = renew_time if last_active is None or renew_time > last_active else None
    return HeartbeatDecision(False, "Degraded", EXPIRED, message, None, new_last, event)
