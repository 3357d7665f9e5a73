"""Cost of one /metrics scrape from the cache: 10,000 tasks, 1,000 Agents, 100 Quotas in 20 namespaces.

No cluster: the state collector reads a filled `cache.Store` as it reads the operator's. CPU time
(process_time) per scrape, so a busy machine does not inflate it; with and without the agent label.
Writes bench/results/metrics.json.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from agentops_operator import metrics
from agentops_operator.cache import Store
from agentops_operator.conditions import set_condition

TASKS, AGENTS, QUOTAS, NAMESPACES, ROUNDS = 10_000, 1_000, 100, 20, 10
PHASES = ["Backlog", "Assigned", "InProgress", "Review", "Done", "Deployed"]


def filled() -> Store:
    s = Store()
    now = datetime.now(UTC)
    stale = set_condition([], "Stale", True, "PhaseTooLong", "m", 1, now)
    blocked = set_condition([], "TransitionBlocked", True, "GateFailed", "m", 1, now)
    for i in range(TASKS):
        conds = stale if i % 100 == 0 else blocked if i % 100 == 1 else []
        s.upsert("agenttasks", {
            "metadata": {"namespace": f"team-{i % NAMESPACES}", "name": f"t{i}", "uid": f"t{i}",
                         "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {}, "status": {"phase": PHASES[i % 6], "lastTransitionTime": "2026-01-01T00:00:00Z",
                                   "conditions": conds}})
    for i in range(AGENTS):
        s.upsert("agents", {"metadata": {"namespace": f"team-{i % NAMESPACES}", "name": f"a{i}", "uid": f"a{i}",
                                         "resourceVersion": "1"},
                            "spec": {"role": f"r{i % 5}"}, "status": {"phase": "Healthy", "canaryWeight": 10}})
    for i in range(QUOTAS):
        s.upsert("quotas", {"metadata": {"namespace": f"team-{i % NAMESPACES}", "name": f"q{i}", "uid": f"q{i}",
                                         "resourceVersion": "1"},
                            "spec": {"resource": "tokens", "limit": 100}, "status": {"used": 5}})
    return s


def main() -> None:
    store = filled()
    out: dict[str, float] = {}
    for per_agent in (True, False):
        reg = CollectorRegistry()
        reg.register(metrics.StateCollector(store, lambda p=per_agent: p, lambda: datetime.now(UTC)))
        body = generate_latest(reg)
        started = time.process_time()
        for _ in range(ROUNDS):
            body = generate_latest(reg)
        key = "agent_label" if per_agent else "no_agent_label"
        out[f"scrape_cpu_ms_{key}"] = round((time.process_time() - started) / ROUNDS * 1000, 1)
        out[f"series_{key}"] = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
        out[f"bytes_{key}"] = len(body)
    result = {"name": "metrics", "metrics": out,
              "notes": f"{TASKS} tasks, {AGENTS} Agents, {QUOTAS} Quotas, {NAMESPACES} namespaces; CPU ms per "
                       f"scrape (mean of {ROUNDS}), from the cache, no API call"}
    path = Path(__file__).resolve().parent / "results" / "metrics.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
