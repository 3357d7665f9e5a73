"""`kubectl agentops dashboard`: one readable screen of agents, tasks and quotas.

Scope: the namespace of `-n` (or the kubeconfig's); every namespace only with `-A`. A user with a
RoleBinding in one namespace therefore sees that namespace. `--watch` redraws every `--interval`
seconds; `--format html` prints one self-contained page (inline CSS, no external assets, readable
offline): `kubectl agentops dashboard --format html > report.html`.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.rest import ApiException

from .. import __version__, kube
from ..conditions import get_condition
from .analytics import phase_counts
from .common import CLIError, add_all_namespaces, api_message, scope

PHASE_ORDER = ("Backlog", "Assigned", "InProgress", "Review", "Rejected", "Done", "Deployed", "Cancelled",
               "RolledBack")


def register(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="agents, tasks and quotas at a glance", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_all_namespaces(p)
    p.add_argument("--format", choices=["text", "html", "json"], default="text")
    p.add_argument("--watch", action="store_true", help="redraw until interrupted (text)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between redraws with --watch")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for every object to have status")
    p.set_defaults(func=run)


def table(headers: list[str], rows: list[list[str]], title: str | None = None) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    out = ([f"== {title} ({len(rows)}) =="] if title else []) + [line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)


def _cond(obj: dict[str, Any], type_: str, only_true: bool = False) -> str:
    c = get_condition((obj.get("status") or {}).get("conditions"), type_)
    if not c or (only_true and c["status"] != "True"):
        return "-"
    return f"{c['status']}/{c.get('reason', '')}"


Snapshot = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


def snapshot(namespace: str | None) -> Snapshot:
    try:
        return (kube.list_custom("agents", namespace), kube.list_custom("agenttasks", namespace),
                kube.list_custom("quotas", namespace))
    except ApiException as exc:
        if exc.status == 403:
            where = "across all namespaces (-A)" if namespace is None else f"in namespace {namespace}"
            hint = "; try -n NAMESPACE" if namespace is None else ""
            raise CLIError(f"forbidden to list agentops objects {where}: {api_message(exc)}{hint}") from exc
        raise


def _agent_ready(a: dict[str, Any]) -> str:
    st = a.get("status") or {}
    if not (a.get("spec") or {}).get("image"):
        return "heartbeat" if _cond(a, "Ready").startswith("True") else "no-heartbeat"
    return f"{st.get('readyReplicas', 0)}/{(a.get('spec') or {}).get('replicas', 1)}"


def rows(agents: list[dict[str, Any]], tasks: list[dict[str, Any]], quotas: list[dict[str, Any]]) -> dict[str, Any]:
    a_rows = [
        [a["metadata"]["namespace"], a["metadata"]["name"], a["spec"].get("role", ""), _agent_ready(a),
         str((a.get("status") or {}).get("phase", "-")), str((a.get("status") or {}).get("activeTasks", 0)),
         _cond(a, "Ready")]
        for a in sorted(agents, key=lambda a: (a["metadata"]["namespace"], a["metadata"]["name"]))
    ]
    t_rows = [
        [t["metadata"]["namespace"], t["metadata"]["name"], t["spec"].get("title", "")[:40],
         str((t.get("status") or {}).get("phase", "-")), t["spec"].get("requestedPhase", ""),
         str((t.get("status") or {}).get("assignee") or "-"), str(t["spec"].get("priority", "")),
         _cond(t, "TransitionBlocked", only_true=True)]
        for t in sorted(tasks, key=lambda t: (-int(t["spec"].get("priority", 0)), t["metadata"]["name"]))
    ]
    q_rows = [
        [q["metadata"]["namespace"], q["metadata"]["name"], q["spec"].get("resource", ""),
         f"{(q.get('status') or {}).get('used', '-')}/{q['spec'].get('limit')}", q["spec"].get("window", ""),
         str((q.get("status") or {}).get("resetAt", "-")), q["spec"].get("enforcement", "Hard")]
        for q in sorted(quotas, key=lambda q: (q["metadata"]["namespace"], q["metadata"]["name"]))
    ]
    return {"agents": a_rows, "tasks": t_rows, "quotas": q_rows}


A_HEAD = ["NAMESPACE", "NAME", "ROLE", "READY", "PHASE", "TASKS", "READY-COND"]
T_HEAD = ["NAMESPACE", "NAME", "TITLE", "PHASE", "REQUESTED", "ASSIGNEE", "PRIO", "BLOCKED"]
Q_HEAD = ["NAMESPACE", "NAME", "RESOURCE", "USED/LIMIT", "WINDOW", "RESETS", "ENFORCE"]


def render(agents: list[dict[str, Any]], tasks: list[dict[str, Any]], quotas: list[dict[str, Any]]) -> str:
    r = rows(agents, tasks, quotas)
    return "\n\n".join([table(A_HEAD, r["agents"], "Agents"), table(T_HEAD, r["tasks"], "Tasks"),
                        table(Q_HEAD, r["quotas"], "Quotas")])


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}.meta{color:#667;margin-bottom:16px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e4e6ea;white-space:nowrap}
th{background:#eef0f3;font-weight:600}.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{background:#fff;box-shadow:0 1px 2px #0002;padding:8px 12px;min-width:90px}
.card b{display:block;font-size:22px}.bar{background:#e4e6ea;width:120px;height:10px;display:inline-block}
.bar i{display:block;height:10px;background:#3a7}.bar i.warn{background:#d90}.bar i.full{background:#c33}
.bad{color:#c33;font-weight:600}.ok{color:#283}#filter{margin:8px 0;padding:4px 8px;width:260px}
"""

_JS = """
document.getElementById('filter').addEventListener('input', function (e) {
  var q = e.target.value.toLowerCase();
  document.querySelectorAll('tbody tr').forEach(function (tr) {
    tr.style.display = tr.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
  });
});
"""


def _html_table(head: list[str], body: list[list[str]], cls: str, raw_cols: tuple[int, ...] = ()) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c if i in raw_cols else html.escape(c)}</td>" for i, c in enumerate(r))
                  + "</tr>" for r in body) or f"<tr><td colspan='{len(head)}'>none</td></tr>"
    return f"<table class='{cls}'><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def render_html(agents: list[dict[str, Any]], tasks: list[dict[str, Any]], quotas: list[dict[str, Any]],
                where: str, now: datetime | None = None) -> str:
    """One self-contained page: inline style and script, no external URL (a CSP forbids loading any)."""
    now = now or datetime.now(UTC)
    r = rows(agents, tasks, quotas)
    counts = phase_counts(tasks)
    cards = "".join(f"<div class='card phase-{p}'><b>{counts.get(p, 0)}</b>{p}</div>" for p in PHASE_ORDER)
    sections = []
    for phase in PHASE_ORDER:
        body = [row for row in r["tasks"] if row[3] == phase or (phase == "Backlog" and row[3] == "-")]
        if body:
            sections.append(f"<h3 id='phase-{phase}'>{phase} ({len(body)})</h3>"
                            + _html_table(T_HEAD, body, "tasks"))
    a_body = [[*row[:-1], f"<span class='{'ok' if row[-1].startswith('True') else 'bad'}'>{html.escape(row[-1])}"
               f"</span>"] for row in r["agents"]]
    q_body = []
    for q, row in zip(sorted(quotas, key=lambda q: (q["metadata"]["namespace"], q["metadata"]["name"])),
                      r["quotas"], strict=True):
        used, limit = int((q.get("status") or {}).get("used") or 0), int(q["spec"].get("limit") or 0)
        pct = min(100, round(100 * used / limit)) if limit else 100
        cls = "full" if pct >= 100 else "warn" if pct >= int(q["spec"].get("warningPercent", 80)) else ""
        q_body.append([*row, f"<span class='bar' title='{pct}%'><i class='{cls}' style='width:{pct}%'></i></span>"
                             f" {pct}%"])
    csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>agentops dashboard ({html.escape(where)})</title><style>{_CSS}</style></head>
<body>
<h1>agentops dashboard</h1>
<div class="meta">{html.escape(where)} · generated {now.isoformat(timespec='seconds').replace('+00:00', 'Z')}
 by kubectl-agentops {__version__}</div>
<input id="filter" type="search" placeholder="filter rows" aria-label="filter rows">
<h2>Tasks by phase ({len(tasks)})</h2><div class="cards">{cards}</div>
<h2 id="agents">Agents ({len(agents)})</h2>{_html_table(A_HEAD, a_body, "agents", raw_cols=(6,))}
<h2 id="tasks">Tasks ({len(tasks)})</h2>{"".join(sections) or "<p>none</p>"}
<h2 id="quotas">Quotas ({len(quotas)})</h2>{_html_table([*Q_HEAD, "USE"], q_body, "quotas", raw_cols=(7,))}
<script>{_JS}</script>
</body></html>
"""


def run(args: argparse.Namespace) -> int:
    ns = scope(args)
    where = "all namespaces" if ns is None else f"namespace {ns}"
    deadline = time.monotonic() + args.wait
    agents, tasks, quotas = snapshot(ns)
    while time.monotonic() < deadline and not all(o.get("status") for o in agents + tasks + quotas):
        time.sleep(1)
        agents, tasks, quotas = snapshot(ns)
    if args.format == "html":
        sys.stdout.write(render_html(agents, tasks, quotas, where))
        return 0
    if args.format == "json":
        print(json.dumps({"agents": agents, "tasks": tasks, "quotas": quotas}, indent=2))
        return 0
    while True:
        text = render(agents, tasks, quotas)
        if not args.watch:
            print(text)
            return 0
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        sys.stdout.write(f"\x1b[H\x1b[2J{where} · {stamp} · every {args.interval:g}s (Ctrl-C to stop)\n\n{text}\n")
        sys.stdout.flush()
        time.sleep(args.interval)
        agents, tasks, quotas = snapshot(ns)
