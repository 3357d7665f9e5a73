"""The operator's one time format: RFC 3339 in UTC with a ``Z``; microseconds only when there are any.

Every timestamp the operator writes (conditions, task history, quota ledgers, Agent rollout state)
goes through ``format_time``; every one it reads through ``parse_time``. Pydantic fields typed
``Time`` serialise the same way, so a status dumped from a model and one built by hand compare
equal. Whole seconds read like metav1.Time (``2025-03-01T12:00:00Z``); sub-seconds are kept
(``2025-03-01T12:00:00.250000Z``) because planner clocks (pauses, scale-down delays, deadlines) are
read back from status and must not fire early.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import PlainSerializer


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """``2025-03-01T12:00:00Z`` or ``2025-03-01T12:00:00.250000Z``; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    utc = value.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"


def parse_time(value: str | None) -> datetime | None:
    """An aware UTC datetime from RFC 3339 text (``Z`` or an offset; fractions accepted); None for empty."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def wall_clock(value: datetime, after_seconds: float = 0.0) -> str:
    """``HH:MM:SSZ`` for messages (an absolute time: a countdown would change status every reconcile)."""
    return (value + timedelta(seconds=after_seconds)).astimezone(UTC).strftime("%H:%M:%SZ")


# A datetime field written in the one format above (explicitly, whatever pydantic's default may become).
Time = Annotated[datetime, PlainSerializer(format_time, return_type=str, when_used="json")]
