"""AgentTask benchmarks: assignment planning cost, worst-case status size, move latency on the cluster.

1. plan_assignments (pure): time per task for 100 tasks x 10 agents and 2000 x 100 agents, and
   the ratio between them (how far from linear the planner is).
2. Worst-case status size: a task whose history, handoffs and approvals are all at their caps with
   maximal texts, recorded through the handler's own code; reported as a share of etcd's 1.5 MiB.
3. On the cluster in KUBECONFIG (an operator is started for a bench namespace): latency from
   request to recorded phase for moves without gates, p50 and p95, and the time to auto-assign
   100 tasks, and the operator's resident memory idle and with 120 tasks. Writes bench/results/task.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubernetes import client, config

from agentops_operator import GROUP, VERSION, taskflow, taskplan
from agentops_operator.cli.common import current_user
from agentops_operator.handlers import task as task_handler
from agentops_operator.models.task import AgentTaskSpec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "task.json"
ETCD_LIMIT = 1.5 * 1024 * 1024


def plan_cost(n_tasks: int, n_agents: int, repeat: int = 5) -> float:
    agents = [taskflow.AgentView(f"a{i:03d}", "dev", frozenset({"py"}), 10, True) for i in range(n_agents)]
    tasks = [taskflow.TaskView(f"t{i:05d}", i % 97, f"2026-01-01T00:{i % 60:02d}:00Z", "dev", frozenset({"py"}))
             for i in range(n_tasks)]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        taskflow.plan_assignments(tasks, agents)
        best = min(best, time.perf_counter() - t0)
    return best / n_tasks * 1e6  # microseconds per task


def worst_status_bytes() -> int:
    spec = AgentTaskSpec.model_validate({
        "title": "x" * 256, "notes": "n" * 32768, "output": "o" * 5000, "historyLimit": 100,
        "approvals": [{"id": f"id-{i}", "approver": "u" * 200, "decision": "Rejected", "reason": "r" * 4096,
                       "transition": "Review->Done"} for i in range(100)],
        "pipeline": [{"name": "dev", "phases": ["InProgress", "Rejected"], "agent": "a" * 60},
                     {"name": "qa", "phases": ["Review"], "agent": "b" * 60}],
    })
    obj = {"metadata": {"name": "t", "namespace": "ns", "uid": "u", "generation": 1, "resourceVersion": "1"},
           "spec": spec.model_dump(by_alias=True, mode="json"), "status": {}}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    pend = task_handler.Pending(obj, {"phase": "InProgress"}, now)
    taskplan.sync_approvals(pend, spec)
    gate = {"name": "g" * 30, "type": "Job", "transition": "InProgress->Review", "attempt": 99,
            "job": "j" * 63, "state": "Failed", "message": "m" * 5000, "generation": 1}
    for i in range(400):
        pend.now = now + timedelta(seconds=i)
        to = task_handler.Phase.REVIEW if i % 2 == 0 else task_handler.Phase.REJECTED
        taskplan.record(pend, spec, to, "system:serviceaccount:" + "n" * 63 + ":agent-" + "a" * 60,
                        [gate] * 3, history_limit=100, notes="x" * 32768, rejections=["r" * 4096] * 20)
    pend.status["gates"] = [gate] * 10
    return len(json.dumps(pend.status).encode())


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def cluster_latency() -> dict[str, float]:
    config.load_kube_config()
    api = client.CustomObjectsApi()
    core = client.CoreV1Api()
    ns = f"bench-task-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    log = open(ROOT / ".cluster" / "operator-bench.log", "wb")  # noqa: SIM115
    op = subprocess.Popen([sys.executable, "-m", "agentops_operator", "--namespace", ns, "--health-port", "18181",
                           "--metrics-port", "0"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, "agents", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Agent", "metadata": {"name": "dev"},
            "spec": {"role": "dev", "image": "x", "maxConcurrentTasks": 1000}})
        me = current_user()
        time.sleep(3)
        rss_idle = rss_mib(op.pid)

        def phase(name: str) -> str | None:
            return (api.get_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", name).get("status")
                    or {}).get("phase")

        def wait(name: str, want: str, timeout: float = 60) -> float:
            t0 = time.monotonic()
            while phase(name) != want:
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"{name} never reached {want}")
                time.sleep(0.02)
            return time.monotonic() - t0

        moves = []
        for i in range(20):
            name = f"m{i}"
            api.create_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentTask", "metadata": {"name": name},
                "spec": {"title": name, "assignee": "dev"}})
            wait(name, "Assigned")
            t0 = time.monotonic()
            api.patch_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", name,
                                               {"spec": {"requestedPhase": "InProgress", "by": me}})
            wait(name, "InProgress")
            moves.append(time.monotonic() - t0)
        t0 = time.monotonic()
        for i in range(100):
            api.create_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentTask", "metadata": {"name": f"b{i:03d}"},
                "spec": {"title": "b", "assignee": "dev", "priority": i}})
        created = time.monotonic() - t0
        # Named assignee: the namespace-wide planning pass runs, without depending on rollouts.
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline:
            items = api.list_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks")["items"]
            done = sum(1 for t in items if t["metadata"]["name"].startswith("b")
                       and (t.get("status") or {}).get("phase") == "Assigned")
            if done == 100:
                break
            time.sleep(0.1)
        assign_all = time.monotonic() - t0
        rss_loaded = rss_mib(op.pid)
        q = statistics.quantiles(moves, n=20)
        return {"operator_rss_mib_idle": rss_idle, "operator_rss_mib_120_tasks": rss_loaded,
                "operator_rss_ratio_loaded_vs_idle": round(rss_loaded / rss_idle, 2),
                "move_latency_p50_ms": round(statistics.median(moves) * 1000, 1),
                "move_latency_p95_ms": round(q[18] * 1000, 1),
                "assign_100_tasks_s": round(assign_all, 2) if done == 100 else float("nan"),
                "assigned_of_100": done, "create_100_tasks_s": round(created, 2)}
    finally:
        op.terminate()
        op.wait(timeout=30)
        core.delete_namespace(ns)


def main() -> int:
    small, large = plan_cost(100, 10), plan_cost(2000, 100)
    size = worst_status_bytes()
    metrics: dict[str, float | int] = {
        "plan_us_per_task_100x10": round(small, 2),
        "plan_us_per_task_2000x100": round(large, 2),
        "plan_cost_ratio_large_vs_small": round(large / small, 2),
        "worst_status_bytes": size,
        "worst_status_share_of_etcd_limit": round(size / ETCD_LIMIT, 3),
    }
    if os.environ.get("KUBECONFIG"):
        metrics.update(cluster_latency())
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"name": "task", "metrics": metrics,
                                   "notes": "ratios are within one run on one machine"}, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
