"""Pure computations behind `monitor` and `report` (no I/O: objects in, results out).

Attribution: who held a task at a moment comes from `status.handoffs` (pipeline tasks: the agent a
stage was handed to) or, for tasks without a pipeline, `status.assignee` from the Assigned move on.
Definitions (also in `report --help`):

* stage finished (throughput): a recorded move that hands the task on to another agent, or that
  reaches Done or Deployed, credited to the agent holding the task before the move (moves to
  Rejected, Cancelled or RolledBack finish nothing);
* cycle time of a phase: from the move into the phase to the move out of it, credited to the agent
  holding the task in that phase and to the period in which the phase ended;
* rejection rate: Review → Rejected moves over InProgress → Review submissions, both credited to
  the agent that submitted;
* gate failures: failed gate results (history and the pending move's gates) credited to the holder.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

OPEN_PHASES = ("Backlog", "Assigned", "InProgress", "Review", "Rejected", "Done")
FINISH_PHASES = ("Done", "Deployed")
NO_FINISH = ("Rejected", "Cancelled", "RolledBack")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `24h`, `7d`, `2w` → timedelta; ValueError naming the text otherwise."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 24h, 7d or 2w")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def ts(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _ref(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _cond(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


# ---- monitor ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    check: str  # stale, quota, gates, deploys, agents
    severity: str  # warning, critical
    kind: str
    namespace: str
    name: str
    message: str

    def wire(self, at: datetime) -> dict[str, Any]:
        return {"at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"), **asdict(self)}


CHECKS = ("stale", "quota", "gates", "deploys", "agents")


def stale_alerts(tasks: list[dict[str, Any]], now: datetime, after: timedelta) -> list[Alert]:
    """Tasks the operator marks `Stale` (its per-namespace thresholds, the same result the `Stale`
    condition, the TaskStale Event and `agentops_task_stale` show), and open tasks whose phase has not
    changed for longer than `after`."""
    out = []
    for t in tasks:
        st = t.get("status") or {}
        phase = st.get("phase") or "Backlog"
        marked = _cond(t, "Stale") or {}
        if marked.get("status") == "True":
            ns, name = _ref(t)
            out.append(Alert("stale", "warning", "AgentTask", ns, name,
                             f"{marked.get('message') or phase + ' too long'} (operator), held by "
                             f"{st.get('assignee') or 'nobody'}"))
            continue
        if phase not in OPEN_PHASES:
            continue
        since = ts(st.get("lastTransitionTime")) or ts(t["metadata"].get("creationTimestamp"))
        if since is None or now - since <= after:
            continue
        ns, name = _ref(t)
        age = now - since
        out.append(Alert("stale", "warning", "AgentTask", ns, name,
                         f"{phase} for {_human(age)} (threshold {_human(after)}), held by "
                         f"{st.get('assignee') or 'nobody'}"))
    return out


def quota_alerts(quotas: list[dict[str, Any]]) -> list[Alert]:
    """Exhausted (critical) or over the warning threshold (warning), from the Quota's conditions."""
    out = []
    for q in quotas:
        ns, name = _ref(q)
        st = q.get("status") or {}
        usage = f"{st.get('used', 0)}+{st.get('reserved', 0)} of {(q.get('spec') or {}).get('limit')}"
        ex, warn = _cond(q, "Exhausted"), _cond(q, "Warning")
        if ex and ex.get("status") == "True":
            msg = f"exhausted ({usage}): {ex.get('message', '')}"
            out.append(Alert("quota", "critical", "Quota", ns, name, msg))
        elif warn and warn.get("status") == "True":
            msg = f"over warning ({usage}): {warn.get('message', '')}"
            out.append(Alert("quota", "warning", "Quota", ns, name, msg))
    return out


def failure_alerts(tasks: list[dict[str, Any]]) -> list[Alert]:
    """Moves blocked by a failed gate; a failed Done->Deployed gate is a failed deploy."""
    out = []
    for t in tasks:
        c = _cond(t, "TransitionBlocked")
        if not c or c.get("status") != "True" or c.get("reason") != "GateFailed":
            continue
        ns, name = _ref(t)
        failed = [g for g in (t.get("status") or {}).get("gates") or [] if g.get("state") == "Failed"]
        deploy = any(g.get("transition") == "Done->Deployed" for g in failed) or \
            (t.get("spec") or {}).get("requestedPhase") == "Deployed"
        out.append(Alert("deploys" if deploy else "gates", "critical", "AgentTask", ns, name, c.get("message", "")))
    return out


def agent_alerts(agents: list[dict[str, Any]], now: datetime, grace: timedelta) -> list[Alert]:
    """Agents Degraded, or not Ready for longer than `grace` (a fresh Agent is still starting)."""
    out = []
    for a in agents:
        ns, name = _ref(a)
        st = a.get("status") or {}
        ready = _cond(a, "Ready")
        if st.get("phase") == "Degraded":
            out.append(Alert("agents", "critical", "Agent", ns, name,
                             f"Degraded ({st.get('reason') or '-'}): {st.get('message') or ''}".strip()))
            continue
        since = ts((ready or {}).get("lastTransitionTime")) or ts(a["metadata"].get("creationTimestamp"))
        if (ready is None or ready.get("status") != "True") and since and now - since > grace:
            why = f"{ready.get('reason')}: {ready.get('message', '')}" if ready else "no Ready condition yet"
            out.append(Alert("agents", "warning", "Agent", ns, name, f"not Ready for {_human(now - since)} ({why})"))
    return out


def run_checks(checks: tuple[str, ...], agents: list[dict[str, Any]], tasks: list[dict[str, Any]],
               quotas: list[dict[str, Any]], now: datetime, stale_after: timedelta,
               agent_grace: timedelta) -> list[Alert]:
    alerts: list[Alert] = []
    if "stale" in checks:
        alerts += stale_alerts(tasks, now, stale_after)
    if "quota" in checks:
        alerts += quota_alerts(quotas)
    if "gates" in checks or "deploys" in checks:
        alerts += [a for a in failure_alerts(tasks) if a.check in checks]
    if "agents" in checks:
        alerts += agent_alerts(agents, now, agent_grace)
    return alerts


def _human(d: timedelta) -> str:
    s = d.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            v = s / size
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{int(s)}s"


# ---- report ----------------------------------------------------------------------------------


def holder_at(task: dict[str, Any], at: datetime, before: bool) -> str | None:
    """Agent holding `task` just before (`before`) or just after a move recorded at `at`.

    The first holder gets the task with the Assigned move (no handoff record for that); each
    handoff record (pipeline stage change, hand-back) names the next one."""
    st = task.get("status") or {}
    handoffs = sorted(((t, h) for h in st.get("handoffs") or [] if (t := ts(h.get("at"))) is not None),
                      key=lambda x: x[0])
    assigned = next((ts(h["at"]) for h in st.get("history") or [] if h.get("to") == "Assigned"), None)
    first = handoffs[0][1].get("fromAgent") if handoffs else st.get("assignee")
    timeline: list[tuple[datetime, str | None]] = []
    if assigned is not None:
        timeline.append((assigned, first))
    timeline += [(t, h.get("toAgent")) for t, h in handoffs]
    holder: str | None = None
    for t, agent in sorted(timeline, key=lambda x: x[0]):
        if t < at or (t == at and not before):
            holder = agent
    return holder


def period_start(at: datetime, period: str) -> str:
    d = at.astimezone(UTC).date()
    if period == "day":
        return d.isoformat()
    if period == "week":
        return (d - timedelta(days=d.weekday())).isoformat()
    if period == "month":
        return d.replace(day=1).isoformat()
    return "all"


@dataclass
class AgentPeriod:
    period: str
    agent: str
    stages_finished: int = 0
    submissions: int = 0
    rejections: int = 0
    gate_failures: int = 0
    tasks: set[str] = field(default_factory=set)
    phase_seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @property
    def rejection_rate(self) -> float | None:
        return self.rejections / self.submissions if self.submissions else None

    def wire(self) -> dict[str, Any]:
        return {
            "period": self.period, "agent": self.agent, "throughput": self.stages_finished,
            "tasks": len(self.tasks), "submissions": self.submissions, "rejections": self.rejections,
            "rejectionRate": None if self.rejection_rate is None else round(self.rejection_rate, 4),
            "gateFailures": self.gate_failures,
            "cycleTime": {p: {"count": len(v), "meanSeconds": round(statistics.fmean(v), 3),
                              "medianSeconds": round(statistics.median(v), 3)}
                          for p, v in sorted(self.phase_seconds.items()) if v},
        }


def build_report(tasks: list[dict[str, Any]], quotas: list[dict[str, Any]], since: datetime | None,
                 until: datetime, period: str = "all", agent: str | None = None) -> dict[str, Any]:
    """Per agent and period: throughput, cycle time per phase, rejection rate, gate failures; quota use."""
    rows: dict[tuple[str, str], AgentPeriod] = {}

    def row(at: datetime, who: str | None) -> AgentPeriod | None:
        if who is None or (agent and who != agent) or at >= until or (since and at < since):
            return None
        key = (period_start(at, period), who)
        if key not in rows:
            rows[key] = AgentPeriod(*key)
        return rows[key]

    for t in tasks:
        tname = f"{t['metadata'].get('namespace', '')}/{t['metadata']['name']}"
        history = [(ts(h.get("at")), h) for h in (t.get("status") or {}).get("history") or []]
        history = [(at, h) for at, h in history if at is not None]
        history.sort(key=lambda x: x[0])  # type: ignore[arg-type,return-value]
        last_submitter: str | None = None
        for i, (at, h) in enumerate(history):
            assert at is not None
            before, after = holder_at(t, at, True), holder_at(t, at, False)
            to, frm = h.get("to"), h.get("from")
            if to not in NO_FINISH and before and (before != after or to in FINISH_PHASES):
                r = row(at, before)
                if r:
                    r.stages_finished += 1
                    r.tasks.add(tname)
            if frm == "InProgress" and to == "Review":
                last_submitter = before
                r = row(at, before)
                if r:
                    r.submissions += 1
            if frm == "Review" and to == "Rejected" and last_submitter:
                r = row(at, last_submitter)
                if r:
                    r.rejections += 1
            failed = sum(1 for g in h.get("gates") or [] if g.get("state") == "Failed")
            if failed:
                r = row(at, before)
                if r:
                    r.gate_failures += failed
            if i + 1 < len(history):
                end = history[i + 1][0]
                assert end is not None
                r = row(end, after)
                if r and to:
                    r.phase_seconds[to].append((end - at).total_seconds())
        st = t.get("status") or {}
        for g in st.get("gates") or []:
            fin = ts(g.get("finishedAt"))
            if g.get("state") == "Failed" and fin:
                r = row(fin, st.get("assignee"))
                if r:
                    r.gate_failures += 1
    quota_rows = []
    for q in quotas:
        st, spec = q.get("status") or {}, q.get("spec") or {}
        limit = int(spec.get("limit") or 0)
        used = int(st.get("used") or 0)
        quota_rows.append({"namespace": q["metadata"].get("namespace", ""), "name": q["metadata"]["name"],
                           "resource": spec.get("resource", ""), "used": used, "reserved": int(st.get("reserved") or 0),
                           "limit": limit, "percent": round(100 * used / limit, 1) if limit else None,
                           "window": spec.get("window", "daily"), "resetAt": st.get("resetAt")})
    return {
        "since": since.isoformat().replace("+00:00", "Z") if since else None,
        "until": until.isoformat().replace("+00:00", "Z"), "period": period,
        "agents": [rows[k].wire() for k in sorted(rows)],
        "quotas": sorted(quota_rows, key=lambda r: (r["namespace"], r["name"])),
    }


def _fmt_seconds(s: float) -> str:
    return _human(timedelta(seconds=s)) if s >= 60 else f"{s:.1f}s"


def report_table(report: dict[str, Any], markdown: bool = False) -> str:
    phases = sorted({p for r in report["agents"] for p in r["cycleTime"]},
                    key=lambda p: (OPEN_PHASES + FINISH_PHASES).index(p) if p in OPEN_PHASES + FINISH_PHASES else 99)
    head = ["PERIOD", "AGENT", "THROUGHPUT", "TASKS", "REJECTION-RATE", "GATE-FAILURES",
            *[f"{p} (median)" for p in phases]]
    body = []
    for r in report["agents"]:
        rate = "-" if r["rejectionRate"] is None else f"{100 * r['rejectionRate']:.0f}% ({r['rejections']}/" \
                                                         f"{r['submissions']})"
        body.append([r["period"], r["agent"], str(r["throughput"]), str(r["tasks"]), rate, str(r["gateFailures"]),
                     *[_fmt_seconds(r["cycleTime"][p]["medianSeconds"]) if p in r["cycleTime"] else "-"
                       for p in phases]])
    qhead = ["NAMESPACE", "QUOTA", "RESOURCE", "USED", "RESERVED", "LIMIT", "USE", "WINDOW"]
    qbody = [[q["namespace"], q["name"], q["resource"], str(q["used"]), str(q["reserved"]), str(q["limit"]),
              "-" if q["percent"] is None else f"{q['percent']}%", q["window"]] for q in report["quotas"]]
    span = f"{report['since'] or 'beginning'} .. {report['until']}"
    if markdown:
        return "\n".join([f"# agentops report\n\n{span}, per {report['period']}\n\n## Agents\n",
                          _md(head, body), "\n## Quotas\n", _md(qhead, qbody)]) + "\n"
    from .dashboard import table

    return f"agentops report {span}, per {report['period']}\n\n" + table(head, body, "Agents") + "\n\n" + \
        table(qhead, qbody, "Quotas")


def _md(head: list[str], body: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in body]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc]) if body else "\n".join(lines) + "\n(none)"


def phase_counts(tasks: list[dict[str, Any]]) -> Counter[str]:
    return Counter(((t.get("status") or {}).get("phase") or "Backlog") for t in tasks)
