"""Prometheus metrics that answer operators' questions, from the watch-fed cache (never a LIST).

- State gauges (`StateCollector`) are computed at scrape time from `cache.store`: a scrape reads
  the dicts the watch keeps, O(objects), and makes no API call.
- Histograms are observed by cache listeners as changes arrive: time spent per task phase and the
  Backlog -> Done cycle time (from the moves recorded in status.history), gate Job durations (a Job
  seen finishing), and move latency (a requested phase first seen -> recorded in status).
- Monitoring gauges exist only while their problem does (`monitoring.py` decides what a problem is),
  so their cardinality is bounded by the number of objects with a problem.

Cardinality: namespace x phase (9) / reason / role; per Quota; per Agent (namespace x agent) for
rollout phase, canary weight, degraded and heartbeat gauges unless `--metrics-agent-label=false`,
which aggregates those per namespace (counts; canary weight: the maximum).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from . import __version__, monitoring
from . import settings as settings_mod
from .cache import Obj, Store, listen, store
from .conditions import get_condition
from .lifecycle import Phase
from .timeutil import parse_time

PHASE_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)
GATE_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

TASK_PHASE_SECONDS = Histogram("agentops_task_phase_duration_seconds",
                               "Time tasks spent in a phase, observed when they leave it",
                               ["namespace", "phase"], buckets=PHASE_BUCKETS)
TASK_CYCLE_SECONDS = Histogram("agentops_task_cycle_time_seconds",
                               "Time from a task's creation (Backlog) to Done", ["namespace"], buckets=PHASE_BUCKETS)
GATE_JOB_SECONDS = Histogram("agentops_gate_job_duration_seconds",
                             "Gate Job run time (start to completion or failure), by result",
                             ["namespace", "result"], buckets=GATE_BUCKETS)
MOVE_LATENCY_SECONDS = Histogram("agentops_move_latency_seconds",
                                 "Seconds from a requested phase first seen to the move recorded in status",
                                 ["namespace"], buckets=LATENCY_BUCKETS)

GATE_LABEL = "agentops.dev/gate"
PHASES = tuple(p.value for p in Phase)
BACKLOG = Phase.BACKLOG.value


# ---- state gauges at scrape time --------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    labels: tuple[str, ...]
    value: float


def _status(o: Obj) -> dict[str, Any]:
    st = o.get("status")
    return st if isinstance(st, dict) else {}


def _ns(o: Obj) -> str:
    return str((o.get("metadata") or {}).get("namespace") or "")


def _name(o: Obj) -> str:
    return str((o.get("metadata") or {}).get("name") or "")


def task_samples(tasks: Iterable[Obj], now: datetime) -> dict[str, list[Sample]]:
    """agentops_tasks, agentops_tasks_blocked, agentops_task_stale, agentops_task_deploy_failed."""
    phases: dict[tuple[str, str], int] = {}
    blocked: dict[tuple[str, str], int] = {}
    stale: list[Sample] = []
    failed: list[Sample] = []
    namespaces: set[str] = set()
    for t in tasks:
        ns, st = _ns(t), _status(t)
        namespaces.add(ns)
        phase = st.get("phase") or BACKLOG
        phases[(ns, phase)] = phases.get((ns, phase), 0) + 1
        if not st.get("conditions"):
            continue  # no condition: neither blocked, stale nor failed (most tasks, at scale)
        reason = monitoring.blocked_reason(st)
        if reason:
            blocked[(ns, reason)] = blocked.get((ns, reason), 0) + 1
        if monitoring.is_stale(st):
            created = parse_time((t.get("metadata") or {}).get("creationTimestamp")) or now
            entered = monitoring.phase_entered(st, created)
            stale.append(Sample((ns, _name(t), phase), max(0.0, (now - entered).total_seconds())))
        if monitoring.deploy_failed(t.get("spec") or {}, st):
            failed.append(Sample((ns, _name(t)), 1))
    for ns in namespaces:  # every phase of a namespace with tasks, 0 included (rates and alerts need the series)
        for p in PHASES:
            phases.setdefault((ns, p), 0)
    return {
        "tasks": [Sample(k, v) for k, v in sorted(phases.items())],
        "blocked": [Sample(k, v) for k, v in sorted(blocked.items())],
        "stale": stale,
        "deploy_failed": failed,
    }


def agent_samples(agents: Iterable[Obj], per_agent: bool) -> dict[str, list[Sample]]:
    """agentops_agents, rollout phase, canary weight, degraded, heartbeat expired. Without
    `per_agent`, the per-Agent series are aggregated per namespace (counts; the highest weight)."""
    counts: dict[tuple[str, str, str], int] = {}
    rollout: dict[tuple[str, ...], float] = {}
    weight: dict[tuple[str, ...], float] = {}
    degraded: dict[tuple[str, ...], float] = {}
    expired: dict[tuple[str, ...], float] = {}
    for a in agents:
        ns, st = _ns(a), _status(a)
        role = str((a.get("spec") or {}).get("role") or "")
        ready = get_condition(st.get("conditions"), "Ready")
        is_ready = "true" if ready and ready.get("status") == "True" else "false"
        for r in ("true", "false"):
            counts.setdefault((ns, role, r), 0)
        counts[(ns, role, is_ready)] += 1
        who: tuple[str, ...] = (ns, _name(a)) if per_agent else (ns,)
        phase = st.get("phase")
        if phase:
            key = (*who, str(phase))
            rollout[key] = 1 if per_agent else rollout.get(key, 0) + 1
        if st.get("canaryWeight") is not None:
            w = float(st["canaryWeight"])
            weight[who] = w if per_agent else max(w, weight.get(who, 0.0))
        if monitoring.agent_degraded(st):
            degraded[who] = degraded.get(who, 0) + 1
        if monitoring.heartbeat_expired(st):
            expired[who] = expired.get(who, 0) + 1
    return {
        "agents": [Sample(k, v) for k, v in sorted(counts.items())],
        "rollout": [Sample(k, v) for k, v in sorted(rollout.items())],
        "weight": [Sample(k, v) for k, v in sorted(weight.items())],
        "degraded": [Sample(k, v) for k, v in sorted(degraded.items())],
        "expired": [Sample(k, v) for k, v in sorted(expired.items())],
    }


def quota_samples(quotas: Iterable[Obj]) -> dict[str, list[Sample]]:
    """agentops_quota_used / _reserved / _limit and agentops_quota_warning."""
    out: dict[str, list[Sample]] = {"used": [], "reserved": [], "limit": [], "warning": []}
    for q in quotas:
        ns, st, spec = _ns(q), _status(q), q.get("spec") or {}
        key = (ns, _name(q), str(spec.get("resource") or ""))
        out["used"].append(Sample(key, float(st.get("used") or 0)))
        out["reserved"].append(Sample(key, float(st.get("reserved") or 0)))
        if isinstance(spec.get("limit"), int):
            out["limit"].append(Sample(key, float(spec["limit"])))
        level = monitoring.quota_level(st)
        if level:
            out["warning"].append(Sample((*key, level), 1))
    return out


def _family(name: str, doc: str, labels: list[str], samples: Iterable[Sample]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc, labels=labels)
    for s in samples:
        fam.add_metric(list(s.labels), s.value)
    return fam


class StateCollector(Collector):
    """Gauges computed from the cache at scrape time (no API call)."""

    def __init__(self, source: Store, per_agent: Callable[[], bool], clock: Callable[[], datetime]) -> None:
        self.source = source
        self.per_agent = per_agent
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        per_agent = self.per_agent()
        agent = ["agent"] if per_agent else []
        build = GaugeMetricFamily("agentops_build_info", "The operator's version (always 1)", labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        t = task_samples(self.source.list("agenttasks"), now)
        yield _family("agentops_tasks", "AgentTasks by namespace and recorded phase", ["namespace", "phase"],
                      t["tasks"])
        yield _family("agentops_tasks_blocked", "AgentTasks that cannot move, by the reason (TransitionBlocked, "
                      "or waiting in Backlog for an agent or quota)", ["namespace", "reason"], t["blocked"])
        yield _family("agentops_task_stale", "Seconds a Stale task has been in its phase (only while Stale)",
                      ["namespace", "task", "phase"], t["stale"])
        yield _family("agentops_task_deploy_failed", "1 while a task's move to Deployed is blocked by a failed gate",
                      ["namespace", "task"], t["deploy_failed"])
        a = agent_samples(self.source.list("agents"), per_agent)
        yield _family("agentops_agents", "Agents by namespace, role and readiness (Ready condition)",
                      ["namespace", "role", "ready"], a["agents"])
        rollout_doc = "1 for an Agent's current rollout phase" if per_agent else \
            "Agents in each rollout phase (per-agent label dropped)"
        yield _family("agentops_agent_rollout_phase", rollout_doc, ["namespace", *agent, "phase"], a["rollout"])
        yield _family("agentops_agent_canary_weight", "Percent of an Agent's replicas on the new revision"
                      + ("" if per_agent else " (highest per namespace)"), ["namespace", *agent], a["weight"])
        yield _family("agentops_agent_degraded", "1 while an Agent's phase is Degraded"
                      + ("" if per_agent else " (count per namespace)"), ["namespace", *agent], a["degraded"])
        yield _family("agentops_agent_heartbeat_expired", "1 while an external Agent's heartbeat Lease is expired"
                      + ("" if per_agent else " (count per namespace)"), ["namespace", *agent], a["expired"])
        q = quota_samples(self.source.list("quotas"))
        labels = ["namespace", "quota", "resource"]
        yield _family("agentops_quota_used", "Units committed in the Quota's current window", labels, q["used"])
        yield _family("agentops_quota_reserved", "Units held by reservations (moves in progress)", labels,
                      q["reserved"])
        yield _family("agentops_quota_limit", "Units allowed per window (spec.limit)", labels, q["limit"])
        yield _family("agentops_quota_warning", "1 while a Quota is at its warning level or exhausted",
                      [*labels, "level"], q["warning"])


# ---- histograms from the change stream ----------------------------------------------------------


class MoveLatency:
    """When a requested phase was first seen, per task, until the move is recorded (bounded by the
    number of tasks with a move pending)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def change(self, old: Obj | None, new: Obj | None) -> None:
        cur = new or old
        if cur is None:
            return
        uid = str((cur.get("metadata") or {}).get("uid") or "")
        if new is None:
            with self._lock:
                self._seen.pop(uid, None)
            return
        requested = str((new.get("spec") or {}).get("requestedPhase") or Phase.BACKLOG.value)
        phase = str(_status(new).get("phase") or Phase.BACKLOG.value)
        with self._lock:
            seen = self._seen.get(uid)
            if seen is not None and phase == seen[0]:
                del self._seen[uid]
                MOVE_LATENCY_SECONDS.labels(_ns(new)).observe(max(0.0, self.clock() - seen[1]))
                seen = None
            if requested == phase or requested == Phase.BACKLOG.value:
                self._seen.pop(uid, None)
            elif seen is None or seen[0] != requested:
                self._seen[uid] = (requested, self.clock())

    def pending(self) -> int:
        with self._lock:
            return len(self._seen)


move_latency = MoveLatency()


def task_changed(old: Obj | None, new: Obj | None, own: bool) -> None:
    if new is not None:
        for o in monitoring.new_moves(old, new):
            TASK_PHASE_SECONDS.labels(o.namespace, o.phase).observe(o.seconds)
            if o.cycle is not None:
                TASK_CYCLE_SECONDS.labels(o.namespace).observe(o.cycle)
    move_latency.change(old, new)


def job_changed(old: Obj | None, new: Obj | None, own: bool) -> None:
    if new is None or GATE_LABEL not in ((new.get("metadata") or {}).get("labels") or {}):
        return
    done = monitoring.job_finished(new)
    if done is None or (old is not None and monitoring.job_finished(old) is not None):
        return
    GATE_JOB_SECONDS.labels(_ns(new), done[0]).observe(done[1])


_installed = False


def install(registry: CollectorRegistry = REGISTRY) -> None:
    """Register the state collector and the change listeners (once)."""
    global _installed
    if _installed:
        return
    _installed = True
    registry.register(StateCollector(store, lambda: settings_mod.current.metrics_agent_label,
                                     lambda: datetime.now(UTC)))
    listen("agenttasks", task_changed)
    listen("jobs", job_changed)
