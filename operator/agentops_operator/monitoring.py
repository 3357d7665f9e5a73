"""Monitoring inside the operator (pure): which objects have a problem right now, and since when.

Each check reads what the operator already keeps in status and returns a result the callers turn
into the same three things, so that `kubectl`, Events and Prometheus agree:

- a status condition on the object (`Stale` on an AgentTask, written by the task reconcile; the
  Quota's own `Warning`/`Exhausted`, the Agent's `phase: Degraded` and the external Agent's Ready
  reason `HeartbeatExpired` are written by their reconciles already),
- a Warning Event once per episode (when the condition turns True),
- a gauge series that exists only while the problem does (`metrics.py`, at scrape time).

Thresholds of stale tasks come from the namespace policy: ConfigMaps labelled
`agentops.dev/gate-policy=true`, key `monitoring.yaml`, e.g. ``staleAfter: {InProgress: 24h, Review: 4h}``
(read in name order, later keys win). Without one, `DEFAULT_STALE_AFTER` applies;
``staleAfter: {}`` turns the check off. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .conditions import get_condition
from .lifecycle import Phase
from .timeutil import parse_time

POLICY_KEY = "monitoring.yaml"
STALE = "Stale"
STALE_REASON = "PhaseTooLong"
CLEARED_REASON = "WithinThreshold"
INVALID_POLICY = "InvalidPolicy"
DEFAULT_STALE_AFTER: Mapping[str, float] = {Phase.IN_PROGRESS.value: 24 * 3600.0, Phase.REVIEW.value: 4 * 3600.0}
MAX_THRESHOLD = 366 * 86400.0
# A little after the threshold, so that the look at the due time certainly finds the task stale.
DUE_SLACK = 0.05

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: Any, where: str) -> float:
    """Seconds from `90s`, `15m`, `4h`, `1d2h`, `2.5s` or a plain number of seconds; > 0.
    ValueError names `where`."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a duration such as 4h or 90s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value and (m := _DURATION.match(value.strip())) and any(m.groups()):
        d, h, mi, s = m.groups()
        seconds = int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
    else:
        raise ValueError(f"{where}: expected a duration such as 4h, 30m, 90s or 1d2h, got {value!r}")
    if not 0 < seconds <= MAX_THRESHOLD:
        raise ValueError(f"{where}: must be more than 0 and at most 366d, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """`1d2h`, `4h`, `90s` -> `1m30s`; whole seconds (sub-second thresholds print as e.g. `0.5s`)."""
    if seconds != int(seconds) and seconds < 60:
        return f"{seconds:g}s"
    whole = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, whole = divmod(whole, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class MonitoringPolicy:
    """A namespace's thresholds: seconds a task may rest in a phase before it is Stale."""

    stale_after: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_STALE_AFTER))


def parse_policy(documents: Iterable[tuple[str, Any]]) -> MonitoringPolicy:
    """The namespace policy from `(where, yaml-loaded document)` pairs in order (later keys win).
    No document: the defaults. ValueError names the ConfigMap key and field that is wrong."""
    stale: dict[str, float] | None = None
    phases = {p.value for p in Phase}
    for where, doc in documents:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: expected a mapping with staleAfter, got {type(doc).__name__}")
        unknown = sorted(set(doc) - {"staleAfter"})
        if unknown:
            raise ValueError(f"{where}: unknown field {unknown[0]!r} (known: staleAfter)")
        if "staleAfter" not in doc:
            continue
        raw = doc["staleAfter"]
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: staleAfter: expected a mapping of phase to duration, got {raw!r}")
        if stale is None:
            stale = {}
        if not raw:
            stale = {}  # an explicit {} turns the check off
        for phase, value in raw.items():
            if phase not in phases:
                raise ValueError(f"{where}: staleAfter.{phase}: not a task phase (one of {', '.join(sorted(phases))})")
            stale[str(phase)] = parse_duration(value, f"{where}: staleAfter.{phase}")
    return MonitoringPolicy() if stale is None else MonitoringPolicy(stale_after=stale)


# ---- stale tasks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Staleness:
    phase: str
    entered: datetime  # when the task entered its phase
    in_phase: float  # seconds in it so far
    threshold: float | None  # None: the phase is not watched
    stale: bool
    due_in: float | None  # seconds until it becomes stale (None: never, or already stale)


def phase_entered(status: Mapping[str, Any], created: datetime) -> datetime:
    """When the task entered its current phase: the last recorded move, else its creation."""
    return parse_time(status.get("lastTransitionTime")) or created


def task_staleness(status: Mapping[str, Any], created: datetime, now: datetime, policy: MonitoringPolicy) -> Staleness:
    phase = str(status.get("phase") or Phase.BACKLOG.value)
    entered = phase_entered(status, created)
    in_phase = max(0.0, (now - entered).total_seconds())
    threshold = policy.stale_after.get(phase)
    if threshold is None:
        return Staleness(phase, entered, in_phase, None, False, None)
    stale = in_phase >= threshold
    return Staleness(phase, entered, in_phase, threshold, stale, None if stale else threshold - in_phase + DUE_SLACK)


@dataclass(frozen=True)
class ConditionUpdate:
    """What the task's Stale condition should become: None leaves it as it is."""

    status: bool
    reason: str
    message: str
    event: str | None  # the Event type to emit with it (once: only when the condition changes)


def stale_message(s: Staleness) -> str:
    """Stable for the whole episode (no live counts), so the condition is written once per episode."""
    assert s.threshold is not None
    entered = s.entered.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"in {s.phase} since {entered}, longer than the namespace's staleAfter.{s.phase} of " \
           f"{format_duration(s.threshold)}"


def stale_update(conditions: list[dict[str, Any]] | None, s: Staleness) -> ConditionUpdate | None:
    """The Stale condition for this look: True (with a Warning Event) when the task became stale;
    False when a stale task moved on or its threshold was raised; nothing for a task that never was
    (no condition on healthy tasks, so monitoring adds no write to them)."""
    before = get_condition(conditions, STALE)
    was_stale = bool(before and before.get("status") == "True")
    if s.stale:
        message = stale_message(s)
        if was_stale and before is not None and before.get("message") == message:
            return None
        return ConditionUpdate(True, STALE_REASON, message, "Warning")
    if before is None or (before.get("status") == "False" and before.get("reason") == CLEARED_REASON):
        return None
    return ConditionUpdate(False, CLEARED_REASON, f"in {s.phase} within its threshold", None)


def invalid_policy_update(conditions: list[dict[str, Any]] | None, message: str) -> ConditionUpdate | None:
    """The namespace policy does not parse: say so on the task (once), naming the field."""
    before = get_condition(conditions, STALE)
    if before and before.get("reason") == INVALID_POLICY and before.get("message") == message:
        return None
    return ConditionUpdate(False, INVALID_POLICY, message, "Warning")


def is_stale(status: Mapping[str, Any]) -> bool:
    cond = get_condition(status.get("conditions"), STALE)
    return bool(cond and cond.get("status") == "True")


# ---- the other problems (read from what their reconciles write) -------------------------------


def deploy_failed(spec: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """A requested move to Deployed whose gate failed (TransitionBlocked, reason GateFailed)."""
    if spec.get("requestedPhase") != Phase.DEPLOYED.value or status.get("phase") == Phase.DEPLOYED.value:
        return False
    cond = get_condition(status.get("conditions"), "TransitionBlocked")
    return bool(cond and cond.get("status") == "True" and cond.get("reason") == "GateFailed")


def quota_level(status: Mapping[str, Any]) -> str | None:
    """`Exhausted`, `Warning` (at or above the Quota's warningPercent) or None, from its conditions."""
    conds = status.get("conditions")
    for type_ in ("Exhausted", "Warning"):
        cond = get_condition(conds, type_)
        if cond and cond.get("status") == "True":
            return type_
    return None


def agent_degraded(status: Mapping[str, Any]) -> bool:
    return status.get("phase") == "Degraded"


def heartbeat_expired(status: Mapping[str, Any]) -> bool:
    """An external Agent whose heartbeat Lease was not renewed in time (its Ready reason)."""
    cond = get_condition(status.get("conditions"), "Ready")
    return bool(cond and cond.get("status") == "False" and cond.get("reason") == "HeartbeatExpired")


def blocked_reason(status: Mapping[str, Any]) -> str | None:
    """Why a task cannot move: TransitionBlocked's reason, or the Assigned condition's when it waits
    for an agent or quota; None when nothing blocks it."""
    cond = get_condition(status.get("conditions"), "TransitionBlocked")
    if cond and cond.get("status") == "True":
        return str(cond.get("reason") or "Unknown")
    if (status.get("phase") or Phase.BACKLOG.value) == Phase.BACKLOG.value:
        assigned = get_condition(status.get("conditions"), "Assigned")
        if assigned and assigned.get("status") == "False":
            return str(assigned.get("reason") or "Unknown")
    return None


# ---- durations from history (histograms) -------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    namespace: str
    phase: str  # the phase left
    seconds: float  # time spent in it
    cycle: float | None  # Backlog -> Done seconds when this move reached Done


def new_moves(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Observation]:
    """The moves recorded between two versions of a task (from status.history), each with the time
    spent in the phase it left, and the cycle time (creation -> Done) of a move to Done."""
    meta = new.get("metadata") or {}
    created = parse_time(meta.get("creationTimestamp"))
    o_st, n_st = (old or {}).get("status") or {}, new.get("status") or {}
    if (old or {}).get("metadata", {}).get("uid") not in (None, meta.get("uid")):
        o_st = {}
    added = int(n_st.get("transitions") or 0) - int(o_st.get("transitions") or 0)
    history = n_st.get("history") or []
    if added <= 0 or not history or created is None:
        return []
    entries = history[-added:]
    start = parse_time(o_st.get("lastTransitionTime")) if o_st.get("transitions") else created
    out: list[Observation] = []
    for entry in entries:
        at = parse_time(entry.get("at"))
        if at is None:
            continue
        if start is not None:
            cycle = max(0.0, (at - created).total_seconds()) if entry.get("to") == Phase.DONE.value else None
            out.append(Observation(str(meta.get("namespace") or ""), str(entry.get("from") or Phase.BACKLOG.value),
                                   max(0.0, (at - start).total_seconds()), cycle))
        start = at
    return out


def job_finished(job: Mapping[str, Any]) -> tuple[str, float] | None:
    """("passed" | "failed", seconds from start to finish) of a finished Job, else None."""
    st = job.get("status") or {}
    result: str | None = None
    end: datetime | None = None
    for cond in st.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            result, end = "passed", parse_time(st.get("completionTime")) or parse_time(cond.get("lastTransitionTime"))
        elif cond.get("type") in ("Failed", "FailureTarget"):
            result, end = "failed", parse_time(cond.get("lastTransitionTime"))
        if result:
            break
    started = parse_time(st.get("startTime"))
    if result is None or end is None or started is None:
        return None
    return result, max(0.0, (end - started).total_seconds())
