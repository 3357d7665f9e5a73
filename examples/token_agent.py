#!/usr/bin/env python3
"""An example agent that reports its LLM usage with OpenTelemetry and lives within a token budget.

It records `gen_ai.client.token.usage` (GenAI semantic conventions) on a MeterProvider from the worker
library's `token_budget()`, whose exporter charges the usage to the namespace's `tokens` and
`tokens/<model>` Quotas as this agent's ServiceAccount. Before each (pretend) LLM call it asks
`budget.require()`, which raises TokenBudgetExceeded once a Hard token quota is spent.

    pip install 'agentops-operator[otel]'
    python examples/token_agent.py --agent dev-1 --namespace team-a --kubeconfig dev-1.kubeconfig \\
        --call 600:200 --call 150:50 --call 10:10

Each --call is INPUT:OUTPUT tokens of one LLM call (a real agent takes them from the provider's
response). It prints one JSON line per call; exit 0, or 3 when the budget stopped it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from agentops_operator.tokenexport import TokenBudgetExceeded
from agentops_operator.worker import Worker, connect


def say(**fields: Any) -> None:
    print(json.dumps({"at": time.time(), **fields}), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--kubeconfig")
    p.add_argument("--model", default="gpt-4o-mini")
    p.add_argument("--provider", default="openai")
    p.add_argument("--call", action="append", default=[], metavar="INPUT:OUTPUT")
    p.add_argument("--reexport", action="store_true",
                   help="after each flush export the same collection again (a retried export: charges nothing)")
    p.add_argument("--force", action="store_true", help="make every call even when the budget says no")
    args = p.parse_args()

    w = Worker(args.agent, args.namespace, api=connect(args.kubeconfig) if args.kubeconfig else connect())
    budget = w.token_budget(interval_seconds=3600)  # charged at each flush here; periodic in a long-lived agent
    meter = budget.meter_provider().get_meter("token-agent")
    usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}",
                                   description="Measures number of input and output tokens used")
    stopped = False
    for i, call in enumerate(args.call):
        n_in, _, n_out = call.partition(":")
        try:
            budget.require(int(n_in) + int(n_out or 0), model=args.model)
            allowed = True
        except TokenBudgetExceeded as exc:
            allowed, stopped = False, True
            say(agent=args.agent, call=i, action="refused-before", message=str(exc),
                resetAt=exc.reset_at.isoformat() if exc.reset_at else None)
            if not args.force:
                continue
        base = {"gen_ai.request.model": args.model, "gen_ai.provider.name": args.provider,
                "gen_ai.operation.name": "chat"}
        usage.record(int(n_in), {**base, "gen_ai.token.type": "input"})
        if n_out:
            usage.record(int(n_out), {**base, "gen_ai.token.type": "output"})
        refused_before = budget.refused_tokens
        t0 = time.monotonic()
        ok = budget.flush()
        flush_seconds = time.monotonic() - t0
        if args.reexport and budget.exporter.last_export is not None:
            budget.exporter.export(budget.exporter.last_export)
        refused = budget.refused_tokens - refused_before
        stopped = stopped or refused > 0
        say(agent=args.agent, call=i, action="charged" if ok and not refused else "refused" if refused else "error",
            allowed=allowed, charged=budget.charged_tokens, refused=budget.refused_tokens,
            flushSeconds=round(flush_seconds, 3),
            message=budget.exporter.refusal.message if refused and budget.exporter.refusal else "")
    budget.shutdown()
    return 3 if stopped else 0


if __name__ == "__main__":
    sys.exit(main())
