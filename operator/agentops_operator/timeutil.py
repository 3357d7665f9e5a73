"""The operator's one time format: RFC 3339 in UTC, whole seconds, with a ``Z`` (metav1.Time).

Every timestamp the operator writes (conditions, task history, quota ledgers, Agent rollout state)
goes through ``format_time``; every one it reads through ``parse_time``. Pydantic fields typed
``Time`` serialise the same way, so a status dumped from a model and one built by hand compare
equal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import PlainSerializer

_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """``2025-03-01T12:00:00Z``; a naive datetime is taken as UTC, sub-seconds are dropped."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(_FORMAT)


def parse_time(value: str | None) -> datetime | None:
    """An aware UTC datetime from RFC 3339 text (``Z`` or an offset; fractions accepted); None for empty."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def wall_clock(value: datetime, after_seconds: float = 0.0) -> str:
    """``HH:MM:SSZ`` for messages (an absolute time: a countdown would change status every reconcile)."""
    return (value + timedelta(seconds=after_seconds)).astimezone(UTC).strftime("%H:%M:%SZ")


# A datetime field written in the one format above (pydantic's own would keep microseconds).
Time = Annotated[datetime, PlainSerializer(format_time, return_type=str, when_used="json")]
