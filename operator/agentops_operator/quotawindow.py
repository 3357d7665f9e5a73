"""Pure quota maths: window parsing, window boundaries and grant decisions. No I/O.

Calendar windows (hourly, daily, weekly, monthly) start at local wall-clock boundaries in an
IANA time zone. The boundary of a local label L (an hour start, a midnight, Monday midnight, the
1st at midnight) is the first instant at which the zone's wall clock reaches L:

* L exists once: that instant.
* L is repeated (clocks go back): the first occurrence (fold=0).
* L falls in a gap (clocks go forward over it): the transition instant that ends the gap, i.e.
  the first instant of that local hour or date (America/Santiago's 00:00 on spring-forward day
  resolves to 01:00 -03).

Hourly windows additionally start at the second occurrence of a repeated hour, as cron's hourly
jobs do, so that no "hourly" window lasts two hours. Labels in the same gap collapse into one
boundary. Windows are the intervals between consecutive distinct boundaries, so they are
contiguous by construction.

Rolling windows are fixed-length: start = anchor + k * duration for the integer k that puts
`now` inside.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Period = Literal["hourly", "daily", "weekly", "monthly"]
Enforcement = Literal["Hard", "Soft"]

CALENDAR_PERIODS: tuple[Period, ...] = ("hourly", "daily", "weekly", "monthly")
MAX_ROLLING = timedelta(days=366)
# Shared with the CRD schema (RE2 and ECMA compatible); parse_window also rejects zero durations.
WINDOW_PATTERN = r"^(hourly|daily|weekly|monthly|([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?)$"
_ROLLING_RE = re.compile(r"^(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,6})s)?$")
_ACCEPTED = (
    "accepted: hourly, daily, weekly, monthly, or a rolling duration of d/h/m/s parts in that "
    f"order such as 90s, 15m, 1h, 24h, 7d, 1h30m (at least 1s, at most {MAX_ROLLING.days}d)"
)
# Offsets never jump by more than a day (Pacific/Apia skipped 2011-12-30); label margins cover it.
_MARGIN: dict[Period, int] = {"hourly": 27, "daily": 3, "weekly": 2, "monthly": 2}


@dataclass(frozen=True)
class WindowSpec:
    """A parsed window: exactly one of `period` (calendar) or `duration` (rolling) is set."""

    text: str
    period: Period | None = None
    duration: timedelta | None = None

    @property
    def is_calendar(self) -> bool:
        return self.period is not None


@dataclass(frozen=True)
class Window:
    """Half-open interval [start, end) in aware UTC datetimes."""

    start: datetime
    end: datetime

    def __contains__(self, when: datetime) -> bool:
        return self.start <= when < self.end


@dataclass(frozen=True)
class Decision:
    granted: bool
    over_limit: bool
    reason: str


def parse_window(text: str) -> WindowSpec:
    """Parse a Quota window; raises ValueError naming the bad value and the accepted forms."""
    if not isinstance(text, str):
        raise ValueError(f"invalid window {text!r}: {_ACCEPTED}")
    if text in CALENDAR_PERIODS:
        return WindowSpec(text=text, period=text)
    match = _ROLLING_RE.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"invalid window {text!r}: {_ACCEPTED}")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration <= timedelta(0) or duration > MAX_ROLLING:
        raise ValueError(f"invalid window {text!r}: duration out of range; {_ACCEPTED}")
    return WindowSpec(text=text, duration=duration)


# Directories of the tz database (and its posix/ and right/ variants) are not zones: refused at
# admission (spec.timeZone CEL rule) as well as here.
TZ_DIRECTORIES = (
    "Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Brazil", "Canada",
    "Chile", "Etc", "Europe", "Indian", "Mexico", "Pacific", "US", "posix", "right",
)
TZ_DIRECTORY_RULE: dict[str, Any] = {
    "rule": "!(self in [" + ", ".join(f"'{d}'" for d in TZ_DIRECTORIES) + "]) && !self.matches('^(posix|right)/')"
            " && !self.matches('/$')",
    "message": "must be an IANA time zone such as Europe/Berlin, not a directory of the tz database",
}
# Total seconds of a rolling window text (0 for calendar windows), for the CRD's CEL bound.
ROLLING_SECONDS_CEL = " + ".join(
    f"(self.matches('[0-9]+{unit}') ? int(self.find('[0-9]+{unit}').replace('{unit}', '')) * {mult} : 0)"
    for unit, mult in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
)


def zone(tz: str) -> ZoneInfo:
    """ZoneInfo for an IANA name; ValueError (not a KeyError subclass) for unknown names and for
    directories of the tz database (ZoneInfo raises IsADirectoryError for 'America')."""
    problem = "expected an IANA name such as UTC or Europe/Paris"
    if not isinstance(tz, str) or not tz or tz in TZ_DIRECTORIES or tz.startswith(("posix/", "right/")):
        raise ValueError(f"invalid time zone {tz!r}: {problem}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"invalid time zone {tz!r}: {problem}") from exc


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    # Via UTC: astimezone() to the instant's own tzinfo is a no-op and would hide gaps.
    return instant.astimezone(UTC).astimezone(tz).replace(tzinfo=None, fold=0)


def _floor_label(local: datetime, period: Period) -> datetime:
    if period == "hourly":
        return local.replace(minute=0, second=0, microsecond=0)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight
    if period == "weekly":
        return midnight - timedelta(days=midnight.weekday())
    return midnight.replace(day=1)


def _shift_label(label: datetime, period: Period, n: int) -> datetime:
    if period == "hourly":
        return label + timedelta(hours=n)
    if period == "daily":
        return label + timedelta(days=n)
    if period == "weekly":
        return label + timedelta(weeks=n)
    months = label.year * 12 + label.month - 1 + n
    return label.replace(year=months // 12, month=months % 12 + 1)


def _gap_end(label: datetime, tz: ZoneInfo) -> datetime:
    """The transition instant closing the gap that swallows `label` (first instant with wall >= label)."""
    # fold=1 reads a gap time with the later offset (an instant before the transition), fold=0
    # with the earlier offset (after it); transitions fall on whole seconds.
    lo = math.floor(label.replace(tzinfo=tz, fold=1).timestamp())
    hi = math.ceil(label.replace(tzinfo=tz, fold=0).timestamp())
    while lo < hi:
        mid = (lo + hi) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), tz) >= label:
            hi = mid
        else:
            lo = mid + 1
    return datetime.fromtimestamp(lo, UTC)


def _label_instants(label: datetime, tz: ZoneInfo, both_folds: bool) -> list[datetime]:
    first = label.replace(tzinfo=tz, fold=0)
    second = label.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    if _wall(first, tz) != label:  # does not round-trip: label is in a gap
        return [_gap_end(label, tz)]
    if both_folds:  # repeated label
        return [first.astimezone(UTC), second.astimezone(UTC)]
    return [first.astimezone(UTC)]


def _boundaries(period: Period, tz: ZoneInfo, first_label: datetime, last_label: datetime) -> list[datetime]:
    """Sorted distinct boundary instants of all labels from first_label to last_label inclusive."""
    out: set[datetime] = set()
    label = first_label
    n = 0
    while label <= last_label:
        out.update(_label_instants(label, tz, both_folds=period == "hourly"))
        n += 1
        label = _shift_label(first_label, period, n)
    return sorted(out)


def _calendar_boundaries_around(period: Period, tz: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    margin = _MARGIN[period]
    first = _shift_label(_floor_label(_wall(lo, tz), period), period, -margin)
    last = _shift_label(_floor_label(_wall(hi, tz), period), period, margin)
    return _boundaries(period, tz, first, last)


def window_at(spec: WindowSpec, tz: str, now: datetime, anchor: datetime) -> Window:
    """The window containing `now` (start <= now < end); `anchor` only matters for rolling windows."""
    _require_aware("now", now)
    if spec.duration is not None:
        _require_aware("anchor", anchor)
        k = (now - anchor) // spec.duration  # floor division, so now before anchor works too
        start = (anchor + k * spec.duration).astimezone(UTC)
        return Window(start=start, end=start + spec.duration)
    assert spec.period is not None
    bounds = _calendar_boundaries_around(spec.period, zone(tz), now, now)
    for start, end in itertools.pairwise(bounds):
        if start <= now < end:
            return Window(start=start, end=end)
    raise AssertionError(f"no {spec.period} window around {now.isoformat()} in {tz}")  # margins too small


def next_reset(spec: WindowSpec, tz: str, now: datetime, anchor: datetime) -> datetime:
    """When the window containing `now` ends and `used` resets."""
    return window_at(spec, tz, now, anchor).end


def windows_elapsed(spec: WindowSpec, tz: str, last_start: datetime, now: datetime, anchor: datetime) -> int:
    """Resets between the window containing `last_start` and the one containing `now` (0 if same or earlier)."""
    _require_aware("last_start", last_start)
    _require_aware("now", now)
    if now <= last_start:
        return 0
    if spec.duration is not None:
        _require_aware("anchor", anchor)
        return (now - anchor) // spec.duration - (last_start - anchor) // spec.duration
    assert spec.period is not None
    bounds = _calendar_boundaries_around(spec.period, zone(tz), last_start, now)
    return sum(1 for b in bounds if last_start < b <= now)


def iter_windows(spec: WindowSpec, tz: str, start: datetime, anchor: datetime) -> Iterable[Window]:
    """Consecutive windows from the one containing `start`, without end."""
    window = window_at(spec, tz, start, anchor)
    while True:
        yield window
        window = window_at(spec, tz, window.end, anchor)


def decide(limit: int, used: int, reserved: int, amount: int, enforcement: Enforcement) -> Decision:
    """Whether `amount` more units may be taken. Hard never lets used + reserved exceed limit."""
    if amount < 1:
        raise ValueError(f"amount must be at least 1, got {amount}")
    if min(limit, used, reserved) < 0:
        raise ValueError(f"limit, used and reserved must not be negative: {limit}, {used}, {reserved}")
    taken = used + reserved
    over = taken + amount > limit
    if not over:
        return Decision(granted=True, over_limit=False, reason=f"granted {amount}: {taken + amount}/{limit}")
    available = max(limit - taken, 0)
    if enforcement == "Hard":
        return Decision(
            granted=False,
            over_limit=True,
            reason=f"QuotaExceeded: {amount} requested, {available} of {limit} available",
        )
    return Decision(
        granted=True,
        over_limit=True,
        reason=f"SoftLimitExceeded: granted {amount} over the limit: {taken + amount}/{limit}",
    )


def usage_state(used: int, reserved: int, limit: int, warn_percent: int) -> tuple[bool, bool]:
    """(exhausted, warning): no unit left under Hard; usage at or above warn_percent of the limit."""
    taken = used + reserved
    exhausted = taken >= limit
    warning = taken * 100 >= warn_percent * limit  # integers: no float rounding at the threshold
    return exhausted, warning
