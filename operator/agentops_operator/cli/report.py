"""`kubectl agentops report`: per agent and per period, from the tasks' audit trail and the Quotas.

    kubectl agentops -n team-a report --since 7d --period day -o markdown > week.md

Columns: throughput (stages the agent finished: handing a task on, Done, Deployed), tasks touched,
rejection rate (its submissions rejected in review), gate failures, median cycle time per phase;
then quota use. Definitions: `agentops_operator.cli.analytics`. Formats: text, markdown, json.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from .analytics import build_report, parse_duration, report_table
from .common import CLIError, add_all_namespaces, add_output, scope
from .dashboard import snapshot


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="throughput, cycle time, rejection rate, gate failures, quota use",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_all_namespaces(p)
    p.add_argument("--since", default=None, help="only moves in the last 7d / 24h / ... (default: all recorded)")
    p.add_argument("--period", choices=["all", "day", "week", "month"], default="all", help="group rows by")
    p.add_argument("--agent", help="only this agent")
    add_output(p, "text", "markdown", "json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        since = now - parse_duration(args.since) if args.since else None
    except ValueError as exc:
        raise CLIError(f"--since: {exc}") from exc
    _, tasks, quotas = snapshot(scope(args))
    rep = build_report(tasks, quotas, since, now, args.period, args.agent)
    if args.output == "json":
        print(json.dumps(rep, indent=2))
    else:
        print(report_table(rep, markdown=args.output == "markdown"))
    return 0
