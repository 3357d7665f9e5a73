"""Canary analysis by task outcomes: the canary revision's tasks against the stable revision's.

Pure (no I/O): the ``tasks`` analysis provider (``analysis.measure_tasks``) hands it the AgentTasks
of the watch-fed cache. A task belongs to a revision of Agent ``A`` by the annotation
``revision.agentops.dev/<A>`` that the worker library writes when a pod of ``A`` works on it (the
admission policy ``agentops-task-identity`` lets only ``A``'s ServiceAccount set it, on a task
assigned to ``A``).

Per task, within the window (``since``: when the analysis step began):

- it *counts* once its first review decision at or after ``since`` is recorded (a history entry
  ``Review->Done`` or ``Review->Rejected``);
- ``rejected``: that decision was a rejection;
- ``first pass``: the task's first submission (its first ``InProgress->Review`` entry) passed every
  gate at the first attempt (no gate was retried);
- ``cycle``: seconds from its first move to InProgress to its first move to Done (tasks that
  reached Done only);
- ``cost``: units of quota its recorded moves committed (``spec.costs`` amount per history entry
  reaching the cost's phase).

Per side: ``count``, ``rejected``, ``rejectionRate``, ``firstPassRate``, ``done``,
``medianCycleSeconds``, ``meanCost``. A statistic with no data is ``None`` (JSON null), never NaN:
the rates are None when ``count`` is 0, the median when ``done`` is 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .timeutil import format_time, parse_time

REVISION_ANNOTATION_PREFIX = "revision.agentops.dev/"
DECISIONS = ("Done", "Rejected")


def revision_annotation(agent: str) -> str:
    """The annotation key holding the revision of ``agent`` that worked on a task."""
    return REVISION_ANNOTATION_PREFIX + agent


@dataclass(frozen=True)
class TaskOutcome:
    revision: str
    decided_at: datetime
    rejected: bool
    first_pass: bool
    cycle_seconds: float | None
    cost: float


@dataclass(frozen=True)
class SideStats:
    revision: str
    count: int
    rejected: int
    first_pass: int
    done: int
    rejection_rate: float | None
    first_pass_rate: float | None
    median_cycle_seconds: float | None
    mean_cost: float | None

    def result(self) -> dict[str, Any]:
        """As ``result.canary`` / ``result.stable`` in the conditions (camelCase, nulls, no NaN)."""
        return {
            "revision": self.revision,
            "count": self.count,
            "rejected": self.rejected,
            "firstPass": self.first_pass,
            "done": self.done,
            "rejectionRate": self.rejection_rate,
            "firstPassRate": self.first_pass_rate,
            "medianCycleSeconds": self.median_cycle_seconds,
            "meanCost": self.mean_cost,
        }


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _entries(task: Mapping[str, Any]) -> list[tuple[str, str, datetime, Mapping[str, Any]]]:
    """(from, to, at, entry) of the task's history, oldest first, skipping malformed entries."""
    out: list[tuple[str, str, datetime, Mapping[str, Any]]] = []
    for h in ((task.get("status") or {}).get("history") or []):
        if not isinstance(h, Mapping):
            continue
        at = _time(h.get("at"))
        if at is None:
            continue
        out.append((str(h.get("from") or ""), str(h.get("to") or ""), at, h))
    return sorted(out, key=lambda e: e[2])


def _attempts_ok(entry: Mapping[str, Any]) -> bool:
    gates = entry.get("gates") or []
    return all(isinstance(g, Mapping) and int(g.get("attempt") or 1) <= 1 for g in gates)


def _cost(task: Mapping[str, Any], reached: Sequence[str]) -> float:
    total = 0.0
    for c in ((task.get("spec") or {}).get("costs") or []):
        if isinstance(c, Mapping):
            amount = c.get("amount", 1)
            if isinstance(amount, int | float) and math.isfinite(amount):
                total += float(amount) * sum(1 for p in reached if p == c.get("phase"))
    return total


def outcome(task: Mapping[str, Any], agent: str, since: datetime) -> TaskOutcome | None:
    """The task's outcome for ``agent`` in the window, or None when it has no stamp or no decision yet."""
    revision = ((task.get("metadata") or {}).get("annotations") or {}).get(revision_annotation(agent))
    if not isinstance(revision, str) or not revision:
        return None
    entries = _entries(task)
    decision = next((e for e in entries if e[0] == "Review" and e[1] in DECISIONS and e[2] >= since), None)
    if decision is None:
        return None
    first_submit = next((e for e in entries if e[0] == "InProgress" and e[1] == "Review"), None)
    started = next((e[2] for e in entries if e[1] == "InProgress"), None)
    done = next((e[2] for e in entries if e[1] == "Done"), None)
    cycle = max(0.0, (done - started).total_seconds()) if started is not None and done is not None else None
    return TaskOutcome(
        revision=revision,
        decided_at=decision[2],
        rejected=decision[1] == "Rejected",
        first_pass=first_submit is not None and _attempts_ok(first_submit[3]),
        cycle_seconds=cycle,
        cost=_cost(task, [e[1] for e in entries]),
    )


def side(revision: str, outcomes: Iterable[TaskOutcome]) -> SideStats:
    mine = [o for o in outcomes if o.revision == revision]
    n = len(mine)
    rejected = sum(o.rejected for o in mine)
    first_pass = sum(o.first_pass for o in mine)
    cycles = [o.cycle_seconds for o in mine if o.cycle_seconds is not None and math.isfinite(o.cycle_seconds)]
    costs = [o.cost for o in mine if math.isfinite(o.cost)]
    return SideStats(
        revision=revision,
        count=n,
        rejected=rejected,
        first_pass=first_pass,
        done=len(cycles),
        rejection_rate=rejected / n if n else None,
        first_pass_rate=first_pass / n if n else None,
        median_cycle_seconds=float(statistics.median(cycles)) if cycles else None,
        mean_cost=_mean(costs),
    )


def _mean(values: Sequence[float]) -> float | None:
    """The mean, or None without values or when it does not fit a float (never NaN or infinity)."""
    if not values:
        return None
    try:
        mean = math.fsum(v / len(values) for v in values)  # divided first: no overflow of the sum
    except OverflowError:
        return None
    return mean if math.isfinite(mean) else None


@dataclass(frozen=True)
class Comparison:
    canary: SideStats
    stable: SideStats
    since: datetime

    def result(self) -> dict[str, Any]:
        return {"canary": self.canary.result(), "stable": self.stable.result(), "since": format_time(self.since)}

    def summary(self) -> str:
        def one(name: str, s: SideStats) -> str:
            rate = "-" if s.rejection_rate is None else f"{s.rejection_rate:.2f}"
            return f"{name} {s.revision}: {s.count} tasks, {s.rejected} rejected ({rate})"

        return f"{one('canary', self.canary)}; {one('stable', self.stable)}"


def compare(tasks: Iterable[Mapping[str, Any]], agent: str, stable: str, canary: str,
            since: datetime) -> Comparison:
    """Outcomes of ``agent``'s tasks since ``since``, canary revision against stable revision."""
    outcomes = [o for t in tasks if (o := outcome(t, agent, since)) is not None]
    return Comparison(canary=side(canary, outcomes), stable=side(stable, outcomes), since=since)
