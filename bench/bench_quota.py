"""Quota consumption under contention: grants/second and resourceVersion conflict retries.

Scenario of the issue: 20 clients (threads, each with its own ApiClient) x 50 uses of 1 on a Hard
quota with limit 500, against the API server in KUBECONFIG. Also measured in the same run, for
ratios: one client alone (no contention), and the contended scenario with a short retry backoff
(2-50 ms instead of the default 100 ms-1 s window), which is what the default was chosen against.
No operator is needed: the admin client starts the window itself (only the operator's identity, or an
admin, may: admission policy agentops-quota-status). The agent scenarios run the same calls as an
agent ServiceAccount (impersonated, ClusterRole agentops-agent), so every write also passes the
admission policy; `agent-holders` reserves and commits distinct holders one after another with no
operator to forget them, so the remembered commits grow to 250 entries (the policy's worst case is
quadratic in them). Writes bench/results/quota.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config

from agentops_operator import GROUP, VERSION, quota_client
from agentops_operator import quotaledger as ql

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "quota.json"


def new_api(user: str | None = None) -> client.CustomObjectsApi:
    api_client = config.new_client_from_config()
    if user:
        api_client.set_default_header("Impersonate-User", user)
    return client.CustomObjectsApi(api_client)


def create_quota(api: client.CustomObjectsApi, ns: str, name: str, limit: int) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Quota",
        "metadata": {"name": name},
        "spec": {"resource": "api-calls", "limit": limit, "window": "24h", "enforcement": "Hard"},
    }
    api.create_namespaced_custom_object(GROUP, VERSION, ns, "quotas", body)


def scenario(ns: str, name: str, clients: int, uses: int, limit: int, user: str | None = None,
             holders: bool = False) -> dict[str, Any]:
    admin = new_api()
    create_quota(admin, ns, name, limit)
    quota_client.run(admin, ns, name, ql.Settle("operator"))  # start the window as the operator would
    latencies: list[float] = []
    grants: list[quota_client.Grant] = []
    errors: list[BaseException] = []
    guard = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def work() -> None:
        api = new_api(user)
        mine: list[tuple[float, quota_client.Grant]] = []
        barrier.wait()
        try:
            for i in range(uses):
                t = time.perf_counter()
                if holders:
                    g = quota_client.reserve(api, ns, name, f"h{threading.get_ident()}-{i}", 1)
                    if g.granted:
                        quota_client.commit(api, ns, name, f"h{threading.get_ident()}-{i}")
                else:
                    g = quota_client.consume(api, ns, name, 1)
                mine.append((time.perf_counter() - t, g))
        except BaseException as exc:
            errors.append(exc)
        with guard:
            latencies.extend(d for d, _ in mine)
            grants.extend(g for _, g in mine)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]!r}")
    used = admin.get_namespaced_custom_object(GROUP, VERSION, ns, "quotas", name)["status"]["used"]
    granted = sum(g.granted for g in grants)
    conflicts = sum(g.conflicts for g in grants)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {
        "calls": len(grants),
        "granted": granted,
        "refused": len(grants) - granted,
        "used": used,
        "elapsed_s": round(elapsed, 3),
        "grants_per_s": round(granted / elapsed, 1),
        "calls_per_s": round(len(grants) / elapsed, 1),
        "conflict_retries": conflicts,
        "retries_per_grant": round(conflicts / max(granted, 1), 2),
        "latency_p50_ms": round(q[49] * 1000, 1),
        "latency_p99_ms": round(q[98] * 1000, 1),
        "latency_max_ms": round(max(latencies) * 1000, 1),
    }


def main() -> int:
    if not os.environ.get("KUBECONFIG"):
        print("KUBECONFIG is not set (run through `make bench`)", file=sys.stderr)
        return 2
    core = client.CoreV1Api(config.new_client_from_config())
    ns = f"bench-quota-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    agent = f"system:serviceaccount:{ns}:agent-bench"
    client.RbacAuthorizationV1Api(config.new_client_from_config()).create_namespaced_role_binding(ns, {
        "metadata": {"name": "agent-bench"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "agentops-agent"},
        "subjects": [{"kind": "ServiceAccount", "name": "agent-bench", "namespace": ns}],
    })
    try:
        serial = scenario(ns, "serial", clients=1, uses=300, limit=10_000)
        serial_agent = scenario(ns, "serial-agent", clients=1, uses=300, limit=10_000, user=agent)
        agent_holders = scenario(ns, "agent-holders", clients=1, uses=250, limit=10_000, user=agent, holders=True)
        contended = scenario(ns, "contended", clients=20, uses=50, limit=500)
        contended_agent = scenario(ns, "contended-agent", clients=20, uses=50, limit=500, user=agent)
        base, cap = quota_client.BACKOFF_BASE, quota_client.BACKOFF_CAP
        quota_client.BACKOFF_BASE, quota_client.BACKOFF_CAP = 0.002, 0.05
        try:
            short = scenario(ns, "contended-short-backoff", clients=20, uses=50, limit=500)
        finally:
            quota_client.BACKOFF_BASE, quota_client.BACKOFF_CAP = base, cap
    finally:
        core.delete_namespace(ns)
    correct = all(s["granted"] == 500 and s["refused"] == 500 and s["used"] == 500
                  for s in (contended, short, contended_agent))
    correct = correct and serial_agent["used"] == 300 and agent_holders["used"] == 250
    metrics: dict[str, Any] = {
        "contended_granted": contended["granted"],
        "contended_refused": contended["refused"],
        "contended_used": contended["used"],
        "contended_elapsed_s": contended["elapsed_s"],
        "contended_grants_per_s": contended["grants_per_s"],
        "contended_conflict_retries": contended["conflict_retries"],
        "contended_retries_per_grant": contended["retries_per_grant"],
        "contended_latency_p50_ms": contended["latency_p50_ms"],
        "contended_latency_p99_ms": contended["latency_p99_ms"],
        "serial_grants_per_s": serial["grants_per_s"],
        "serial_latency_p50_ms": serial["latency_p50_ms"],
        "short_backoff_elapsed_s": short["elapsed_s"],
        "short_backoff_conflict_retries": short["conflict_retries"],
        "contended_vs_serial_throughput": round(contended["grants_per_s"] / serial["grants_per_s"], 3),
        "short_vs_default_backoff_retries": round(short["conflict_retries"] / max(contended["conflict_retries"], 1), 2),
        "agent_serial_grants_per_s": serial_agent["grants_per_s"],
        "agent_serial_latency_p50_ms": serial_agent["latency_p50_ms"],
        "agent_vs_admin_serial_throughput": round(serial_agent["grants_per_s"] / serial["grants_per_s"], 3),
        "agent_contended_elapsed_s": contended_agent["elapsed_s"],
        "agent_holders_reserve_commit_per_s": agent_holders["grants_per_s"],
        "agent_holders_latency_p99_ms": agent_holders["latency_p99_ms"],
    }
    out = {
        "name": "quota",
        "metrics": metrics,
        "scenarios": {"serial": serial, "contended": contended, "contended_short_backoff": short,
                      "serial_agent": serial_agent, "contended_agent": contended_agent,
                      "agent_holders": agent_holders},
        "settings": {"backoff_base_s": base, "backoff_cap_s": cap, "max_conflicts": quota_client.MAX_CONFLICTS},
        "notes": (
            "20 clients x 50 consume(1) on a Hard quota of 500, each client its own ApiClient; every grant is a "
            "GET + status merge patch with the read resourceVersion, retried on 409. Same machine, same run."
        ),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(RESULTS)
    print(json.dumps(out["scenarios"], indent=2))
    if not correct:
        print("WRONG: expected exactly 500 granted, 500 refused, used 500", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
