"""`kubectl agentops dashboard`: one readable screen of agents, tasks and quotas."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .. import kube
from ..conditions import get_condition


def register(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="agents, tasks and quotas at a glance")
    p.add_argument("-A", "--all-namespaces", action="store_true", default=True)
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for every object to have status")
    p.set_defaults(func=run)


def _table(title: str, headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [f"== {title} ({len(rows)}) ==", line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _cond(obj: dict[str, Any], type_: str, only_true: bool = False) -> str:
    c = get_condition((obj.get("status") or {}).get("conditions"), type_)
    if not c or (only_true and c["status"] != "True"):
        return "-"
    return f"{c['status']}/{c.get('reason', '')}"


def snapshot() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    return kube.list_custom("agents"), kube.list_custom("agenttasks"), kube.list_custom("quotas")


def render(agents: list[dict[str, Any]], tasks: list[dict[str, Any]], quotas: list[dict[str, Any]]) -> str:
    a_rows = [
        [
            a["metadata"]["namespace"], a["metadata"]["name"], a["spec"].get("role", ""),
            f"{(a.get('status') or {}).get('readyReplicas', 0)}/{a['spec'].get('replicas', 1)}",
            str((a.get("status") or {}).get("phase", "-")), str((a.get("status") or {}).get("activeTasks", 0)),
            _cond(a, "Ready"),
        ]
        for a in agents
    ]
    t_rows = [
        [
            t["metadata"]["namespace"], t["metadata"]["name"], t["spec"].get("title", "")[:40],
            str((t.get("status") or {}).get("phase", "-")), t["spec"].get("requestedPhase", ""),
            str((t.get("status") or {}).get("assignee") or "-"), str(t["spec"].get("priority", "")),
            _cond(t, "TransitionBlocked", only_true=True),
        ]
        for t in sorted(tasks, key=lambda t: -int(t["spec"].get("priority", 0)))
    ]
    q_rows = [
        [
            q["metadata"]["namespace"], q["metadata"]["name"], q["spec"].get("resource", ""),
            f"{(q.get('status') or {}).get('used', '-')}/{q['spec'].get('limit')}", q["spec"].get("window", ""),
            str((q.get("status") or {}).get("resetAt", "-")), q["spec"].get("enforcement", "Hard"),
        ]
        for q in quotas
    ]
    return "\n\n".join(
        [
            _table("Agents", ["NAMESPACE", "NAME", "ROLE", "READY", "PHASE", "TASKS", "READY-COND"], a_rows),
            _table("Tasks", ["NAMESPACE", "NAME", "TITLE", "PHASE", "REQUESTED", "ASSIGNEE", "PRIO", "BLOCKED"],
                   t_rows),
            _table("Quotas", ["NAMESPACE", "NAME", "RESOURCE", "USED/LIMIT", "WINDOW", "RESETS", "ENFORCE"], q_rows),
        ]
    )


def run(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.wait
    agents, tasks, quotas = snapshot()
    while time.monotonic() < deadline and not all(o.get("status") for o in agents + tasks + quotas):
        time.sleep(1)
        agents, tasks, quotas = snapshot()
    print(render(agents, tasks, quotas))
    return 0
