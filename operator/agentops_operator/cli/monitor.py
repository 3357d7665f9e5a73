"""`kubectl agentops monitor`: one-shot health checks for cron.

    */5 * * * * kubectl agentops -n team-a monitor --stale-after 4h --alert-to /var/log/agentops-alerts.jsonl

Checks (all unless some are chosen): `--check-stale` tasks the operator marks `Stale` (the
namespace policy's thresholds: the same result as the condition, Event and metric) and open tasks
whose phase has not changed for `--stale-after`; `--check-quota` Quotas over their warning
threshold or exhausted; `--check-gates` moves blocked by a failed gate; `--check-deploys` failed
Done->Deployed gates; `--check-agents` Agents Degraded or not Ready for longer than `--agent-grace`.

Exit codes: 0 nothing fired, 2 at least one alert fired, 1 the check itself failed (RBAC,
kubeconfig). `--alert-to FILE` appends one JSON line per alert; `-o json` prints them as a list.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .analytics import CHECKS, parse_duration, run_checks
from .common import CLIError, add_all_namespaces, add_output, scope
from .dashboard import snapshot, table

ALERT_EXIT = 2


def register(sub: Any) -> None:
    p = sub.add_parser("monitor", help="one-shot checks for cron; exit 2 when an alert fires",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_all_namespaces(p)
    for check in CHECKS:
        p.add_argument(f"--check-{check}", action="append_const", const=check, dest="checks")
    p.add_argument("--stale-after", default="24h", help="threshold of --check-stale (90s, 30m, 24h, 7d)")
    p.add_argument("--agent-grace", default="2m", help="how long an Agent may be not Ready before it alerts")
    p.add_argument("--alert-to", metavar="FILE", help="append each alert as one JSON line")
    add_output(p, "text", "json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        stale_after, grace = parse_duration(args.stale_after), parse_duration(args.agent_grace)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    checks = tuple(dict.fromkeys(args.checks or CHECKS))
    agents, tasks, quotas = snapshot(scope(args))
    now = datetime.now(UTC)
    alerts = run_checks(checks, agents, tasks, quotas, now, stale_after, grace)
    records = [a.wire(now) for a in alerts]
    if args.alert_to and records:
        with Path(args.alert_to).open("a") as f:
            for r in records:
                f.write(json.dumps(r, sort_keys=True) + "\n")
    if args.output == "json":
        print(json.dumps(records, indent=2))
    elif alerts:
        print(table(["SEVERITY", "CHECK", "KIND", "NAMESPACE", "NAME", "MESSAGE"],
                    [[a.severity, a.check, a.kind, a.namespace, a.name, a.message] for a in alerts],
                    "Alerts"))
    else:
        print(f"ok: {', '.join(checks)} — nothing fired ({len(agents)} agents, {len(tasks)} tasks, "
              f"{len(quotas)} quotas)")
    return ALERT_EXIT if alerts else 0
