"""Pure Quota ledger: how one operation changes a Quota's status, and the conditions it implies. No I/O.

`quota_client` runs `apply` under optimistic concurrency (read, compute here, write with the read
resourceVersion, start over on 409), so every function here must be deterministic in its inputs.

Ledger fields (written by clients and the operator): used, reserved, remaining, windowStart,
resetAt, windowSpec, reservations, committed, lastReset. Conditions and observedGeneration are the
operator's. Only the operator may start a window (initialise, roll over, reshape) or forget a
committed holder: the admission policy manifests/admission/quota-status.yaml refuses those writes
from anyone else, and `apply(..., may_roll=False)` is how a client computes without them.

Idempotency per holder. A holder (e.g. `AgentTask/<name>/<uid>/<move>/<round>`) is reserved, then
committed or released. `committed` remembers the holders already charged, so a retried Reserve or
Commit (the caller's own record of the commit was lost: killed, 409, a second operator) charges
nothing twice, in this window or after a reset. The memory is bounded without ever evicting an
entry: an entry is only added by a Commit, which removes that holder's reservation, and a Reserve is
refused while `len(reservations) + len(committed) >= MAX_HOLDS`; so that sum never grows past
MAX_HOLDS by any operation (Consume/Check/Settle/Release/AnnounceReset do not add to either list).
Entries leave only through `Forget`, which the operator sends for holders that can no longer be
retried (`forgettable`: the task recorded a later round, or is gone, and COMMIT_GRACE passed; other
holders after COMMIT_MEMORY). So a quota sustains MAX_HOLDS task commits per COMMIT_GRACE (about 8
a second) and any burst up to MAX_HOLDS; beyond, reservations are refused ("retry shortly") until
the operator forgets older ones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .conditions import get_condition, set_condition
from .quotawindow import (
    Enforcement,
    Window,
    WindowSpec,
    decide,
    parse_window,
    usage_state,
    window_at,
    windows_elapsed,
    zone,
)
from .timeutil import format_time, parse_time

LEDGER_KEYS = (
    "used", "reserved", "remaining", "windowStart", "resetAt", "windowSpec", "reservations", "committed", "lastReset",
)
WINDOW_KEYS = ("windowStart", "resetAt", "windowSpec", "lastReset")  # the operator's alone (admission)
MAX_RESERVATIONS = 256  # bounded: status must stay small; beyond it reserve refuses
MAX_HOLDS = 512  # reservations + remembered commits; beyond it reserve refuses (see the module doc)
COMMIT_MEMORY = timedelta(minutes=30)  # how long a commit of a holder that is not an AgentTask is remembered
COMMIT_GRACE = timedelta(seconds=60)  # a task holder is remembered at least this long (see forgettable)
TASK_HOLDER = "AgentTask/"
MAX_LIMIT = 10**15  # below 2**53 so every client's JSON numbers stay exact


@dataclass(frozen=True)
class QuotaView:
    """The parts of a Quota's spec and metadata the ledger needs, validated."""

    resource: str
    limit: int
    window: WindowSpec
    time_zone: str
    enforcement: Enforcement
    warning_percent: int
    anchor: datetime  # creationTimestamp: rolling windows are k * duration after it

    @property
    def window_key(self) -> str:
        return f"{self.window.text} {self.time_zone}"


def view(obj: dict[str, Any]) -> QuotaView:
    """Validate a Quota object; ValueError says which field is wrong and why."""
    spec = obj.get("spec") or {}
    try:
        window = parse_window(spec.get("window", "daily"))
    except ValueError as exc:
        raise ValueError(f"spec.window: {exc}") from exc
    tz = spec.get("timeZone", "UTC")
    try:
        zone(tz)
    except ValueError as exc:
        raise ValueError(f"spec.timeZone: {exc}") from exc
    limit = spec.get("limit")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_LIMIT:
        raise ValueError(f"spec.limit: expected an integer from 0 to {MAX_LIMIT}, got {limit!r}")
    enforcement = spec.get("enforcement", "Hard")
    if enforcement not in ("Hard", "Soft"):
        raise ValueError(f"spec.enforcement: expected Hard or Soft, got {enforcement!r}")
    warn = spec.get("warningPercent", 80)
    if not isinstance(warn, int) or not 1 <= warn <= 100:
        raise ValueError(f"spec.warningPercent: expected 1..100, got {warn!r}")
    anchor = parse_time(obj["metadata"]["creationTimestamp"])
    assert anchor is not None
    return QuotaView(
        resource=str(spec.get("resource", "")),
        limit=limit,
        window=window,
        time_zone=tz,
        enforcement=enforcement,
        warning_percent=warn,
        anchor=anchor,
    )


# ---- operations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consume:
    amount: int
    by: str = ""


@dataclass(frozen=True)
class Reserve:
    holder: str
    amount: int
    reason: str = ""
    by: str = ""  # the maker's username (admission binds a reservation not of a task to it)


@dataclass(frozen=True)
class Commit:
    holder: str


@dataclass(frozen=True)
class Release:
    holder: str


@dataclass(frozen=True)
class Forget:
    """Drop remembered commits of holders that can no longer be retried (the operator's write)."""

    holders: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    """Would `amount` be granted now? Never writes anything."""

    amount: int


@dataclass(frozen=True)
class Settle:
    """Only initialise, roll over or reshape the window (the operator's periodic write)."""

    by: str = "operator"


@dataclass(frozen=True)
class AnnounceReset:
    """Mark a client's rollover as announced; granted only for the caller that flips the flag."""

    window_start: str


Op = Consume | Reserve | Commit | Release | Check | Settle | AnnounceReset | Forget


@dataclass(frozen=True)
class Result:
    status: dict[str, Any]  # the whole ledger after the operation
    patch: dict[str, Any]  # merge patch of the ledger keys that changed; {} means nothing to write
    granted: bool
    over_limit: bool
    message: str
    rolled: dict[str, Any] | None  # the lastReset record when this operation rolled the window over

    @property
    def used(self) -> int:
        return int(self.status["used"])

    @property
    def remaining(self) -> int:
        return int(self.status["remaining"])

    @property
    def reserved(self) -> int:
        return int(self.status["reserved"])

    @property
    def reset_at(self) -> datetime | None:
        return parse_time(self.status.get("resetAt"))


def _who(op: Op) -> str:
    if isinstance(op, Settle):
        return op.by
    if isinstance(op, AnnounceReset | Forget):
        return "operator"
    if isinstance(op, Consume):
        return f"client:{op.by}" if op.by else "client"
    if isinstance(op, Reserve | Commit | Release):
        return f"client:{op.holder}"
    return "client"


def settle(v: QuotaView, status: dict[str, Any], now: datetime,
           by: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The ledger as of `now`: window initialised, rolled over after resetAt, or reshaped after a spec change.

    A rollover resets `used` and keeps reservations: moves already admitted will commit into the new
    window, so their units must stay held there.
    """
    led: dict[str, Any] = {k: copy.deepcopy(status[k]) for k in LEDGER_KEYS if k in status}
    led["used"] = int(led.get("used") or 0)
    led["reservations"] = list(led.get("reservations") or [])
    led["committed"] = list(led.get("committed") or [])
    window: Window | None = window_at(v.window, v.time_zone, now, v.anchor)
    assert window is not None
    start, reset_at = parse_time(led.get("windowStart")), parse_time(led.get("resetAt"))
    rolled = None
    if start is None or reset_at is None:
        pass  # first write: adopt the current window
    elif now >= reset_at:
        elapsed = max(1, windows_elapsed(v.window, v.time_zone, start, now, v.anchor))
        rolled = {
            "at": format_time(now),
            "windowStart": format_time(window.start),
            "previousWindowStart": format_time(start),
            "previousResetAt": format_time(reset_at),
            "usedBefore": led["used"],
            "windowsElapsed": elapsed,
            "by": by,
        }
        # The operator emits its own Event right away, a client's rollover is announced by the
        # operator later; a window in which nothing was used ends without an Event (no noise).
        rolled["eventRecorded"] = by == "operator" or not worth_announcing(rolled)
        led["used"] = 0
        led["lastReset"] = rolled
    elif led.get("windowSpec") == v.window_key:
        # Same spec and not yet due: keep the stored window even if this caller's clock lags.
        window = None
    # else the window or time zone changed: adopt the new window and keep what was used.
    if window is not None:
        led["windowStart"] = format_time(window.start)
        led["resetAt"] = format_time(window.end)
    led["windowSpec"] = v.window_key
    _derive(v, led)
    return led, rolled


def _derive(v: QuotaView, led: dict[str, Any]) -> None:
    led["reserved"] = sum(int(r["amount"]) for r in led["reservations"])
    led["remaining"] = max(0, v.limit - led["used"] - led["reserved"])


def _patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    patch = {k: new[k] for k in LEDGER_KEYS if k in new and old.get(k) != new[k]}
    patch.update({k: None for k in LEDGER_KEYS if k in old and k not in new})
    return patch


def _summary(v: QuotaView, led: dict[str, Any]) -> str:
    return f"({led['used']}/{v.limit} {v.resource} used, {led['reserved']} reserved); resets at {led['resetAt']}"


def _committed(led: dict[str, Any], holder: str) -> dict[str, Any] | None:
    return next((c for c in led["committed"] if c["holder"] == holder), None)


def held_and_remembered(led: dict[str, Any]) -> int:
    return len(led.get("reservations") or []) + len(led.get("committed") or [])


def window_pending(status: dict[str, Any], led: dict[str, Any]) -> bool:
    """Whether settling changed the window (first write, rollover, reshape): the operator's write."""
    return any(led.get(k) != status.get(k) for k in WINDOW_KEYS)


def apply(v: QuotaView, status: dict[str, Any], op: Op, now: datetime, may_roll: bool = True) -> Result:
    """Apply one operation to a Quota's status as of `now`.

    `may_roll=False` (a client the admission policy does not let start windows): when the window must
    be started or rolled over first, nothing is granted or written and the message says so
    (`WindowPending`); the operator does it at resetAt.
    """
    led, rolled = settle(v, status, now, _who(op))
    if not may_roll and not isinstance(op, Check) and window_pending(status, led):
        return Result(status=led, patch={}, granted=False, over_limit=False, rolled=None,
                      message=f"WindowPending: the window ending {status.get('resetAt') or '(not started)'} "
                              f"is started anew by the operator; retry shortly")
    granted, over, message = True, False, ""
    if isinstance(op, Consume | Check):
        d = decide(v.limit, led["used"], led["reserved"], op.amount, v.enforcement)
        granted, over = d.granted, d.over_limit
        if granted and isinstance(op, Consume):
            led["used"] += op.amount
        verb = "would be granted" if isinstance(op, Check) else "granted"
        message = f"{verb} {op.amount}" if granted else d.reason
        if granted and over:
            message += f" over the {v.enforcement.lower()} limit"
    elif isinstance(op, Reserve):
        mine = next((r for r in led["reservations"] if r["holder"] == op.holder), None)
        done = _committed(led, op.holder)
        if done is not None:
            message = f"already committed {done['amount']} for {op.holder}"  # a retry: charged once
        elif mine is not None and (mine.get("by") or "") != op.by and not op.holder.startswith(TASK_HOLDER):
            granted = False
            message = f"HolderTaken: {op.holder} is reserved by {mine.get('by') or 'another identity'}"
        elif mine is not None:
            message = f"already reserved {mine['amount']} for {op.holder}"  # idempotent per holder
        elif len(led["reservations"]) >= MAX_RESERVATIONS or held_and_remembered(led) >= MAX_HOLDS:
            granted = False
            message = (f"TooManyReservations: {len(led['reservations'])} reservations outstanding and "
                       f"{len(led['committed'])} recent commits remembered (at most {MAX_RESERVATIONS} and "
                       f"{MAX_HOLDS} in all); retry shortly")
        else:
            d = decide(v.limit, led["used"], led["reserved"], op.amount, v.enforcement)
            granted, over = d.granted, d.over_limit
            if granted:
                led["reservations"].append(
                    {"holder": op.holder, "amount": op.amount, "at": format_time(now), "reason": op.reason[:256]}
                    | ({"by": op.by} if op.by else {})
                )
                message = f"reserved {op.amount} for {op.holder}"
            else:
                message = d.reason
    elif isinstance(op, Commit | Release):
        mine = next((r for r in led["reservations"] if r["holder"] == op.holder), None)
        done = _committed(led, op.holder)
        if done is not None:
            message = f"already committed {done['amount']} for {op.holder}"  # idempotent, even after a reset
        elif mine is None:
            message = f"no reservation held by {op.holder}"  # already released (or never held): idempotent
        else:
            led["reservations"].remove(mine)
            if isinstance(op, Commit):
                led["used"] += int(mine["amount"])
                led["committed"].append({"holder": op.holder, "amount": int(mine["amount"]), "at": format_time(now)})
                message = f"committed {mine['amount']} for {op.holder}"
            else:
                message = f"released {mine['amount']} for {op.holder}"
    elif isinstance(op, Forget):
        gone = set(op.holders)
        led["committed"] = [c for c in led["committed"] if c["holder"] not in gone]
    elif isinstance(op, AnnounceReset):
        last = led.get("lastReset")
        granted = bool(last and not last.get("eventRecorded") and last.get("windowStart") == op.window_start)
        if granted:
            led["lastReset"] = {**(last or {}), "eventRecorded": True}
    _derive(v, led)
    message = f"{message} {_summary(v, led)}" if message else _summary(v, led)
    patch = {} if isinstance(op, Check) else _patch(status, led)
    return Result(status=led, patch=patch, granted=granted, over_limit=over, message=message, rolled=rolled)


# ---- holders that are done with --------------------------------------------------------------


@dataclass(frozen=True)
class TaskView:
    """What the ledger needs of an AgentTask to judge its holders."""

    uid: str
    transitions: int


def parse_task_holder(holder: str) -> tuple[str, str, str, int] | None:
    """`AgentTask/<name>/<uid>/<move>/<round>` -> (name, uid, move, round); None for other holders."""
    if not holder.startswith(TASK_HOLDER):
        return None
    parts = holder.split("/")
    if len(parts) != 5 or not parts[4].isdigit():
        return None
    return parts[1], parts[2], parts[3], int(parts[4])


def _task_done_with(holder: str, tasks: dict[str, TaskView]) -> bool | None:
    """True: this task holder can never be reserved or committed again (task gone, or it recorded a later
    round: holders carry the round they were taken in). None: not a task holder."""
    parsed = parse_task_holder(holder)
    if parsed is None:
        return None
    name, uid, _, round_ = parsed
    t = tasks.get(name)
    return t is None or t.uid != uid or t.transitions > round_


def _age_needed(holder: str, grace: timedelta) -> timedelta:
    return grace if parse_task_holder(holder) else COMMIT_MEMORY


def forgettable(status: dict[str, Any], tasks: dict[str, TaskView], now: datetime,
                grace: timedelta = COMMIT_GRACE) -> tuple[str, ...]:
    """Remembered commits that no retry can reach any more: safe to forget.

    A task holder: its task recorded a later round (or is gone), and COMMIT_GRACE has passed, so that a
    reconcile working from a view of the task older than that (a watch cache that lags, a second
    operator, a paused process) still finds the commit. Other holders: after COMMIT_MEMORY.
    """
    out = []
    for c in status.get("committed") or []:
        at_ = parse_time(c.get("at"))
        old = at_ is None or now - at_ >= _age_needed(c["holder"], grace)
        done = _task_done_with(c["holder"], tasks)
        if old and done is not False:
            out.append(c["holder"])
    return tuple(out)


def next_forget_in(status: dict[str, Any], now: datetime, grace: timedelta = COMMIT_GRACE) -> float | None:
    """Seconds until the youngest-to-mature remembered commit is old enough to be forgotten (0: one is
    already; None: nothing remembered)."""
    waits = []
    for c in status.get("committed") or []:
        at_ = parse_time(c.get("at"))
        waits.append(0.0 if at_ is None else max(0.0, (at_ + _age_needed(c["holder"], grace) - now).total_seconds()))
    return min(waits) if waits else None


def stale_reservations(status: dict[str, Any], tasks: dict[str, TaskView]) -> list[dict[str, Any]]:
    """Task reservations no reconcile will ever commit or release: the task is gone, or it recorded a later
    round (the move was given up and the task's own record of the hold was lost)."""
    return [r for r in status.get("reservations") or [] if _task_done_with(r["holder"], tasks)]


# ---- conditions ------------------------------------------------------------------------------

Event = tuple[str, str, str]  # (type, reason, message)


def conditions(
    v: QuotaView, status: dict[str, Any], generation: int | None, now: datetime
) -> tuple[list[dict[str, Any]], list[Event]]:
    """Ready, Exhausted and Warning from the ledger, plus the Events their transitions call for.

    Condition messages carry no live counts, so they change only when a condition flips or the
    window moves: the operator writes conditions a few times per window, not once per grant.
    """
    old = status.get("conditions") or []
    used, reserved = int(status.get("used") or 0), int(status.get("reserved") or 0)
    taken = used + reserved
    exhausted, warning = usage_state(used, reserved, v.limit, v.warning_percent)
    soft_over = v.enforcement == "Soft" and taken > v.limit
    until = f"until {status.get('resetAt')}"
    of_limit = f"{v.limit} {v.resource}"
    conds = set_condition(old, "Ready", True, "Valid", f"{v.window.text} window in {v.time_zone}", generation, now)
    if soft_over:
        ex = ("SoftLimitExceeded", f"over the soft limit of {of_limit}; still allowing, with warnings, {until}")
    elif exhausted:
        verb = "refusing more" if v.enforcement == "Hard" else "further use exceeds the soft limit"
        ex = ("LimitReached", f"limit of {of_limit} reached; {verb} {until}")
    else:
        ex = ("WithinLimit", f"below the limit of {of_limit}")
    conds = set_condition(conds, "Exhausted", exhausted, *ex, generation, now)
    if soft_over:
        warn = ("SoftLimitExceeded", f"over the soft limit of {of_limit} {until}")
    elif warning:
        warn = ("AboveThreshold", f"at or above {v.warning_percent}% of {of_limit} {until}")
    else:
        warn = ("BelowThreshold", f"below {v.warning_percent}% of {of_limit}")
    conds = set_condition(conds, "Warning", warning, *warn, generation, now)

    pct = f"{taken * 100 // v.limit}%" if v.limit else "no limit left"
    usage = f"{used} used + {reserved} reserved of {of_limit} ({pct}); resets at {status.get('resetAt')}"
    before_ex, before_w = get_condition(old, "Exhausted"), get_condition(old, "Warning")
    was_exhausted = bool(before_ex and before_ex.get("status") == "True")
    was_warning = bool(before_w and before_w.get("status") == "True")
    was_soft_over = bool(before_w and before_w.get("reason") == "SoftLimitExceeded")
    events: list[Event] = []
    if soft_over and not was_soft_over:
        events.append(("Warning", "QuotaSoftLimitExceeded", f"soft limit exceeded, still allowing: {usage}"))
    elif exhausted and not was_exhausted:
        events.append(("Warning", "QuotaExhausted", f"{ex[1]}: {usage}"))
    elif warning and not was_warning:
        events.append(("Warning", "QuotaWarning", f"usage reached the {v.warning_percent}% threshold: {usage}"))
    return conds, events


def invalid_conditions(
    status: dict[str, Any], message: str, generation: int | None, now: datetime
) -> list[dict[str, Any]]:
    return set_condition(status.get("conditions"), "Ready", False, "InvalidSpec", message, generation, now)


def worth_announcing(rolled: dict[str, Any]) -> bool:
    """Whether a reset deserves a QuotaReset Event: something was used, or resets were missed."""
    return int(rolled.get("usedBefore", 0)) > 0 or int(rolled.get("windowsElapsed", 1)) > 1


def reset_message(rolled: dict[str, Any]) -> str:
    """Text of the QuotaReset Event, saying so when resets were missed (operator downtime)."""
    msg = (
        f"window {rolled['previousWindowStart']} - {rolled['previousResetAt']} ended; "
        f"used {rolled['usedBefore']} reset to 0; new window from {rolled['windowStart']}"
    )
    if rolled.get("windowsElapsed", 1) > 1:
        msg += f"; caught up {rolled['windowsElapsed'] - 1} missed reset(s) (reset at {rolled['at']})"
    if not str(rolled.get("by", "")).startswith("operator"):
        msg += f"; rolled over by {rolled['by']}"
    return msg
