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

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from .conditions import get_condition, set_condition
from .quotawindow import (
    MAX_ROLLING,
    ROLLING_SECONDS_CEL,
    TZ_DIRECTORY_RULE,
    WINDOW_PATTERN,
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
from .timeutil import Time, format_time
from .timeutil import parse_time as parse_time  # re-exported: tests and clients read times with it
from .wire import K8sModel

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
_FROZEN = ConfigDict(frozen=True)


# ---- the ledger's types: at once the runtime types and the CRD schema (models.quota extends them) ----


# A Quota resource: a key, optionally `/` and a qualifier such as a model name (`tokens/gpt-4o`).
RESOURCE_PATTERN = r"^[a-z0-9.-]{1,63}(/[A-Za-z0-9._:@+-]{1,189})?$"
MAX_RESOURCE = 253


class LedgerSpec(K8sModel):
    """What the ledger reads of a Quota's spec (``models.quota.QuotaSpec`` adds the selector)."""

    model_config = _FROZEN

    resource: str = Field(
        description=(
            "Resource key consumed, e.g. publish, api-calls, tokens, or a key qualified by a model, "
            "tokens/<model> (agents' reported LLM token usage is charged to tokens and tokens/<model>); "
            "AgentTask costs name it."
        ),
        max_length=MAX_RESOURCE,
        pattern=RESOURCE_PATTERN,
    )
    limit: int = Field(ge=0, le=MAX_LIMIT, strict=True, description="Units allowed per window.")
    window: str = Field(
        default="daily",
        description=(
            "Calendar period hourly, daily, weekly (from Monday) or monthly, reset at local wall-clock "
            "boundaries in timeZone; or a rolling duration such as 90s, 15m, 1h, 24h, 7d, 1h30m (parts d, h, "
            "m, s in that order, at most 366d), i.e. fixed-length windows from the Quota's creation."
        ),
        max_length=32,
        pattern=WINDOW_PATTERN,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.matches('^[a-z]+$') || self.matches('[1-9]')",
                 "message": "a rolling window must be > 0"},
                {"rule": ROLLING_SECONDS_CEL + f" <= {int(MAX_ROLLING.total_seconds())}",
                 "message": f"a rolling window is at most {MAX_ROLLING.days}d"},
            ]
        },
    )
    time_zone: str = Field(
        default="UTC",
        description="IANA time zone of calendar windows, e.g. Europe/Berlin; daylight-saving safe.",
        max_length=64,
        pattern=r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$",
        json_schema_extra={"x-kubernetes-validations": [TZ_DIRECTORY_RULE]},
    )
    enforcement: Literal["Hard", "Soft"] = Field(
        default="Hard", description="Hard refuses what would exceed the limit; Soft allows it and warns."
    )
    warning_percent: int = Field(
        default=80, ge=1, le=100, strict=True, description="Set the Warning condition at this share of the limit."
    )

    @field_validator("window")
    @classmethod
    def _window_parses(cls, value: str) -> str:
        parse_window(value)  # ValueError says why (zero length, too long, unknown period)
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        zone(value)
        return value


class QuotaReservation(K8sModel):
    holder: str = Field(description="Who holds it, e.g. AgentTask/<name>/<uid>/<move>/<round>.", max_length=512)
    amount: int = Field(ge=1, description="Units held until commit or release.")
    at: Time = Field(description="When it was reserved.")
    reason: str = Field(default="", description="Why (the move it is for).", max_length=256)
    by: str = Field(
        default="",
        description=(
            "The username that made it (reservations not of AgentTasks): admission requires the requester's own "
            "username here, and lets only that identity (or the operator) release or commit it."
        ),
        max_length=1024,
    )


class QuotaCommit(K8sModel):
    holder: str = Field(description="The holder whose reservation was committed.", max_length=512)
    amount: int = Field(ge=1, description="Units it charged (once).")
    at: Time = Field(description="When it was committed.")


class QuotaReset(K8sModel):
    at: Time = Field(description="When the reset was written.")
    window_start: Time = Field(description="Start of the window it opened.")
    previous_window_start: Time = Field(description="Start of the window it closed.")
    previous_reset_at: Time = Field(description="When the closed window ended.")
    used_before: int = Field(description="Units used in the closed window.")
    windows_elapsed: int = Field(description="Window boundaries passed; above 1 means resets were caught up.")
    by: str = Field(description="operator, or the client whose call rolled the window over.", max_length=1024)
    event_recorded: bool = Field(default=False, description="Whether the QuotaReset Event was recorded.")


class Ledger(K8sModel):
    """The ledger keys of a Quota's status (``models.quota.QuotaStatus`` adds conditions and
    observedGeneration). Read with ``Ledger.model_validate(status)``; ``apply`` writes ``_patch``."""

    used: int = Field(default=0, ge=0, description="Units committed in the current window.")
    reserved: int = Field(default=0, ge=0, description="Units held by reservations (moves in progress).")
    remaining: int | None = Field(default=None, ge=0, description="limit - used - reserved, at least 0.")
    window_start: Time | None = Field(default=None, description="Start of the current window.")
    reset_at: Time | None = Field(default=None, description="When used resets.")
    window_spec: str | None = Field(default=None, description="window and timeZone the current window follows.",
        max_length=1024)
    reservations: list[QuotaReservation] = Field(
        default_factory=list,
        description="Outstanding reservations, one per holder; they survive resets and commit into the new window.",
        max_length=MAX_RESERVATIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["holder"]},
    )
    committed: list[QuotaCommit] = Field(
        default_factory=list,
        description=(
            "Holders recently committed, so that a retried reserve or commit of the same holder charges nothing "
            "twice (also across resets). The operator forgets an entry once no retry can reach it; reservations "
            f"plus these never exceed {MAX_HOLDS}."
        ),
        max_length=MAX_HOLDS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["holder"]},
    )
    last_reset: QuotaReset | None = Field(default=None, description="The latest reset.")

    def wire_ledger(self) -> dict[str, Any]:
        """The ledger keys as the API server stores them (absent: not set)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json", include=_LEDGER_FIELDS)


_LEDGER_FIELDS = set(Ledger.model_fields)
Status = Ledger | dict[str, Any]  # what the functions below accept: the model, or status as read from the API


def ledger(status: Status | None) -> Ledger:
    """The ledger of a status as read from the API (validated), or the model itself."""
    if isinstance(status, Ledger):
        return status
    return Ledger.model_validate(status or {})


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


class _Anchor(K8sModel):
    creation_timestamp: Time


def view(obj: dict[str, Any]) -> QuotaView:
    """Validate a Quota object against ``LedgerSpec``; ValueError names the wrong field and says why."""
    try:
        spec = LedgerSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"spec.{where}: {err['msg']} (got {err.get('input')!r})") from exc
    anchor = _Anchor.model_validate(obj["metadata"]).creation_timestamp
    return QuotaView(
        resource=spec.resource,
        limit=spec.limit,
        window=parse_window(spec.window),
        time_zone=spec.time_zone,
        enforcement=spec.enforcement,
        warning_percent=spec.warning_percent,
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

    window_start: datetime | str  # the lastReset.windowStart it announces


Op = Consume | Reserve | Commit | Release | Check | Settle | AnnounceReset | Forget


@dataclass(frozen=True)
class Result:
    status: Ledger  # the whole ledger after the operation
    patch: dict[str, Any]  # merge patch of the ledger keys that changed; {} means nothing to write
    granted: bool
    over_limit: bool
    message: str
    rolled: QuotaReset | None  # the lastReset record when this operation rolled the window over

    @property
    def used(self) -> int:
        return self.status.used

    @property
    def remaining(self) -> int:
        return self.status.remaining or 0

    @property
    def reserved(self) -> int:
        return self.status.reserved

    @property
    def reset_at(self) -> datetime | None:
        return self.status.reset_at


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


def settle(v: QuotaView, status: Status, now: datetime, by: str) -> tuple[Ledger, QuotaReset | None]:
    """The ledger as of `now`: window initialised, rolled over after resetAt, or reshaped after a spec change.

    A rollover resets `used` and keeps reservations: moves already admitted will commit into the new
    window, so their units must stay held there.
    """
    led = ledger(status).model_copy(deep=True)  # the caller's status stays as it was
    window: Window | None = window_at(v.window, v.time_zone, now, v.anchor)
    assert window is not None
    start, reset_at = led.window_start, led.reset_at
    rolled = None
    if start is None or reset_at is None:
        pass  # first write: adopt the current window
    elif now >= reset_at:
        elapsed = max(1, windows_elapsed(v.window, v.time_zone, start, now, v.anchor))
        rolled = QuotaReset(
            at=now,
            window_start=window.start,
            previous_window_start=start,
            previous_reset_at=reset_at,
            used_before=led.used,
            windows_elapsed=elapsed,
            by=by,
        )
        # The operator emits its own Event right away, a client's rollover is announced by the
        # operator later; a window in which nothing was used ends without an Event (no noise).
        rolled.event_recorded = by == "operator" or not worth_announcing(rolled)
        led.used = 0
        led.last_reset = rolled
    elif led.window_spec == v.window_key:
        # Same spec and not yet due: keep the stored window even if this caller's clock lags.
        window = None
    # else the window or time zone changed: adopt the new window and keep what was used.
    if window is not None:
        led.window_start = window.start
        led.reset_at = window.end
    led.window_spec = v.window_key
    _derive(v, led)
    return led, rolled


def _derive(v: QuotaView, led: Ledger) -> None:
    led.reserved = sum(r.amount for r in led.reservations)
    led.remaining = max(0, v.limit - led.used - led.reserved)


def _patch(old: dict[str, Any], new: Ledger) -> dict[str, Any]:
    """Merge patch from the status as read (wire form) to `new`: changed keys, explicit nulls for gone ones."""
    wire = new.wire_ledger()
    patch = {k: wire[k] for k in LEDGER_KEYS if k in wire and old.get(k) != wire[k]}
    patch.update({k: None for k in LEDGER_KEYS if old.get(k) is not None and k not in wire})
    return patch


def _summary(v: QuotaView, led: Ledger) -> str:
    reset = format_time(led.reset_at) if led.reset_at else None
    return f"({led.used}/{v.limit} {v.resource} used, {led.reserved} reserved); resets at {reset}"


def _committed(led: Ledger, holder: str) -> QuotaCommit | None:
    return next((c for c in led.committed if c.holder == holder), None)


def held_and_remembered(status: Status) -> int:
    led = ledger(status)
    return len(led.reservations) + len(led.committed)


def window_pending(status: Status, led: Ledger) -> bool:
    """Whether settling changed the window (first write, rollover, reshape): the operator's write."""
    before = ledger(status)
    return any(getattr(led, f) != getattr(before, f) for f in ("window_start", "reset_at", "window_spec", "last_reset"))


def apply(v: QuotaView, status: Status, op: Op, now: datetime, may_roll: bool = True) -> Result:
    """Apply one operation to a Quota's status as of `now`.

    `status` is the status as read from the API (validated here as a `Ledger`) or the model itself; the
    result's `patch` is the merge patch from the former to the new ledger. `may_roll=False` (a client the
    admission policy does not let start windows): when the window must be started or rolled over first,
    nothing is granted or written and the message says so (`WindowPending`); the operator does it at resetAt.
    """
    raw = status.wire_ledger() if isinstance(status, Ledger) else (status or {})
    before = ledger(status)
    led, rolled = settle(v, before, now, _who(op))
    if not may_roll and not isinstance(op, Check) and window_pending(before, led):
        pending = format_time(before.reset_at) if before.reset_at else "(not started)"
        return Result(status=led, patch={}, granted=False, over_limit=False, rolled=None,
                      message=f"WindowPending: the window ending {pending} "
                              f"is started anew by the operator; retry shortly")
    granted, over, message = True, False, ""
    if isinstance(op, Consume | Check):
        d = decide(v.limit, led.used, led.reserved, op.amount, v.enforcement)
        granted, over = d.granted, d.over_limit
        if granted and isinstance(op, Consume):
            led.used += op.amount
        verb = "would be granted" if isinstance(op, Check) else "granted"
        message = f"{verb} {op.amount}" if granted else d.reason
        if granted and over:
            message += f" over the {v.enforcement.lower()} limit"
    elif isinstance(op, Reserve):
        mine = next((r for r in led.reservations if r.holder == op.holder), None)
        done = _committed(led, op.holder)
        if done is not None:
            message = f"already committed {done.amount} for {op.holder}"  # a retry: charged once
        elif mine is not None and mine.by != op.by and not op.holder.startswith(TASK_HOLDER):
            granted = False
            message = f"HolderTaken: {op.holder} is reserved by {mine.by or 'another identity'}"
        elif mine is not None:
            message = f"already reserved {mine.amount} for {op.holder}"  # idempotent per holder
        elif len(led.reservations) >= MAX_RESERVATIONS or held_and_remembered(led) >= MAX_HOLDS:
            granted = False
            message = (f"TooManyReservations: {len(led.reservations)} reservations outstanding and "
                       f"{len(led.committed)} recent commits remembered (at most {MAX_RESERVATIONS} and "
                       f"{MAX_HOLDS} in all); retry shortly")
        else:
            d = decide(v.limit, led.used, led.reserved, op.amount, v.enforcement)
            granted, over = d.granted, d.over_limit
            if granted:
                led.reservations.append(
                    QuotaReservation(holder=op.holder, amount=op.amount, at=now, reason=op.reason[:256], by=op.by)
                )
                message = f"reserved {op.amount} for {op.holder}"
            else:
                message = d.reason
    elif isinstance(op, Commit | Release):
        mine = next((r for r in led.reservations if r.holder == op.holder), None)
        done = _committed(led, op.holder)
        if done is not None:
            message = f"already committed {done.amount} for {op.holder}"  # idempotent, even after a reset
        elif mine is None:
            message = f"no reservation held by {op.holder}"  # already released (or never held): idempotent
        else:
            led.reservations.remove(mine)
            if isinstance(op, Commit):
                led.used += mine.amount
                led.committed.append(QuotaCommit(holder=op.holder, amount=mine.amount, at=now))
                message = f"committed {mine.amount} for {op.holder}"
            else:
                message = f"released {mine.amount} for {op.holder}"
    elif isinstance(op, Forget):
        gone = set(op.holders)
        led.committed = [c for c in led.committed if c.holder not in gone]
    elif isinstance(op, AnnounceReset):
        last = led.last_reset
        granted = bool(last and not last.event_recorded and _same_instant(last.window_start, op.window_start))
        if granted and last is not None:
            led.last_reset = last.model_copy(update={"event_recorded": True})
    _derive(v, led)
    message = f"{message} {_summary(v, led)}" if message else _summary(v, led)
    patch = {} if isinstance(op, Check) else _patch(raw, led)
    return Result(status=led, patch=patch, granted=granted, over_limit=over, message=message, rolled=rolled)


def _same_instant(a: datetime, b: datetime | str) -> bool:
    return format_time(a) == (b if isinstance(b, str) else format_time(b))


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


def forgettable(status: Status, tasks: dict[str, TaskView], now: datetime,
                grace: timedelta = COMMIT_GRACE) -> tuple[str, ...]:
    """Remembered commits that no retry can reach any more: safe to forget.

    A task holder: its task recorded a later round (or is gone), and COMMIT_GRACE has passed, so that a
    reconcile working from a view of the task older than that (a watch cache that lags, a second
    operator, a paused process) still finds the commit. Other holders: after COMMIT_MEMORY.
    """
    out = []
    for c in ledger(status).committed:
        old = now - c.at >= _age_needed(c.holder, grace)
        done = _task_done_with(c.holder, tasks)
        if old and done is not False:
            out.append(c.holder)
    return tuple(out)


def next_forget_in(status: Status, now: datetime, grace: timedelta = COMMIT_GRACE) -> float | None:
    """Seconds until the youngest-to-mature remembered commit is old enough to be forgotten (0: one is
    already; None: nothing remembered)."""
    waits = []
    for c in ledger(status).committed:
        waits.append(max(0.0, (c.at + _age_needed(c.holder, grace) - now).total_seconds()))
    return min(waits) if waits else None


def stale_reservations(status: Status, tasks: dict[str, TaskView]) -> list[QuotaReservation]:
    """Task reservations no reconcile will ever commit or release: the task is gone, or it recorded a later
    round (the move was given up and the task's own record of the hold was lost)."""
    return [r for r in ledger(status).reservations if _task_done_with(r.holder, tasks)]


# ---- conditions ------------------------------------------------------------------------------

Event = tuple[str, str, str]  # (type, reason, message)


def conditions(
    v: QuotaView, status: dict[str, Any], generation: int | None, now: datetime
) -> tuple[list[dict[str, Any]], list[Event]]:
    """Ready, Exhausted and Warning from the ledger, plus the Events their transitions call for.

    `status` is the Quota's status as read (its conditions are the ones to update).

    Condition messages carry no live counts, so they change only when a condition flips or the
    window moves: the operator writes conditions a few times per window, not once per grant.
    """
    old = status.get("conditions") or []
    led = ledger(status)
    used, reserved = led.used, led.reserved
    resets = format_time(led.reset_at) if led.reset_at else None
    taken = used + reserved
    exhausted, warning = usage_state(used, reserved, v.limit, v.warning_percent)
    soft_over = v.enforcement == "Soft" and taken > v.limit
    until = f"until {resets}"
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
    usage = f"{used} used + {reserved} reserved of {of_limit} ({pct}); resets at {resets}"
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


def worth_announcing(rolled: QuotaReset) -> bool:
    """Whether a reset deserves a QuotaReset Event: something was used, or resets were missed."""
    return rolled.used_before > 0 or rolled.windows_elapsed > 1


def reset_message(rolled: QuotaReset) -> str:
    """Text of the QuotaReset Event, saying so when resets were missed (operator downtime)."""
    f = format_time
    msg = (
        f"window {f(rolled.previous_window_start)} - {f(rolled.previous_reset_at)} ended; "
        f"used {rolled.used_before} reset to 0; new window from {f(rolled.window_start)}"
    )
    if rolled.windows_elapsed > 1:
        msg += f"; caught up {rolled.windows_elapsed - 1} missed reset(s) (reset at {f(rolled.at)})"
    if not rolled.by.startswith("operator"):
        msg += f"; rolled over by {rolled.by}"
    return msg
