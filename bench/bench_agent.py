"""Agent rollouts: planner throughput and reconcile latency. Writes bench/results/agent.json.

1. plan() throughput on a canary mid-rollout (pure; the work every reconcile does) and the cost of
   planning a whole rollout (setWeight / pause / analysis / setWeight / promote) in simulation.
2. Reconcile latency against the API server in KUBECONFIG, calling the handler in-process (no
   operator needed): the first reconcile (creates ServiceAccount, ControllerRevision, ConfigMap,
   Deployment, Service) and steady-state reconciles of a Healthy Agent (reads only: the applied-hash
   annotations mean nothing is re-applied). Skipped, and said so, without a reachable cluster.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentops_operator import rollout as ro

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "agent.json"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _metric(count: int = 3) -> ro.AnalysisSpec:
    return ro.AnalysisSpec((ro.MetricSpec("errors", count=count, interval_seconds=5),
                            ro.MetricSpec("latency", count=count, interval_seconds=5)))


STRATEGY = ro.StrategySpec(
    type=ro.StrategyType.CANARY, progress_deadline_seconds=120,
    canary=ro.CanarySpec((ro.SetWeightStep(20), ro.PauseStep(30), ro.AnalysisStep(_metric()),
                          ro.SetWeightStep(50), ro.AnalysisStep(_metric()), ro.SetWeightStep(80), ro.PauseStep(30))),
)


def bench_plan(seconds: float = 2.0) -> dict[str, float]:
    run = ro.AnalysisRunState(run_id="new/step-2/0", started_at=T0)
    for i in range(2):
        for m in ("errors", "latency"):
            run = run.with_measurement(m, ro.Measurement(ro.MeasurementPhase.SUCCESSFUL, T0 + timedelta(seconds=5 * i)))
    state = ro.RolloutState(stable_revision="old", analysis=run).evolve(current_revision="new", step_index=2,
                                                                       step_started_at=T0)
    inputs = ro.PlanInputs(
        now=T0 + timedelta(seconds=7), strategy=STRATEGY, desired_revision="new", replicas=10, state=state,
        deployments={"old": ro.DeploymentObservation("old", 8, 8, 8, 8, 8),
                     "new": ro.DeploymentObservation("new", 2, 2, 2, 2, 2)},
    )
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            ro.plan(inputs)
        n += 200
    per_sec = n / (time.perf_counter() - start)
    return {"plan_per_second": per_sec, "plan_microseconds": 1e6 / per_sec}


def bench_simulated_rollout(rollouts: int = 200) -> dict[str, float]:
    """Plan whole rollouts against an instant Deployment controller and always-passing analysis."""
    calls, start = 0, time.perf_counter()
    for _ in range(rollouts):
        now = T0
        state = ro.RolloutState(stable_revision="old").evolve(current_revision="old")
        obs = {"old": ro.DeploymentObservation("old", 10, 10, 10, 10, 10)}
        while True:
            p = ro.plan(ro.PlanInputs(now, STRATEGY, "new", 10, state, obs))
            calls += 1
            if p.measure and p.state.analysis:
                run = p.state.analysis
                for m in p.measure:
                    run = run.with_measurement(m, ro.Measurement(ro.MeasurementPhase.SUCCESSFUL, now))
                p = ro.plan(ro.PlanInputs(now, STRATEGY, "new", 10, p.state.evolve(analysis=run), obs))
                calls += 1
            state = p.state
            obs = {d.revision: ro.DeploymentObservation(d.revision, d.replicas, d.replicas, d.replicas, d.replicas,
                                                        d.replicas) for d in p.deployments}
            if p.phase is ro.RolloutPhase.HEALTHY and state.stable_revision == "new":
                break
            now += timedelta(seconds=p.requeue_after or 1)
    elapsed = time.perf_counter() - start
    return {"rollout_plans": calls / rollouts, "rollout_plan_ms": 1000 * elapsed / rollouts}


def bench_reconcile(iterations: int = 30) -> dict[str, Any]:
    try:
        from kubernetes import client, config

        config.load_kube_config()
        core = client.CoreV1Api()
        core.list_namespace(limit=1)
    except Exception as exc:
        return {"skipped": f"no reachable cluster ({type(exc).__name__})"}
    from agentops_operator import kube
    from agentops_operator.handlers import agent as handler

    ns = f"bench-agent-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    custom = client.CustomObjectsApi()
    try:
        custom.create_namespaced_custom_object("agentops.dev", "v1alpha1", ns, "agents", {
            "apiVersion": "agentops.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "bench"},
            "spec": {"role": "developer", "image": "registry.example/agents/bench:1", "replicas": 2},
        })
        t = time.perf_counter()
        handler.reconcile(kube.get_custom("agents", ns, "bench") or {})
        first = time.perf_counter() - t
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # let kwok make the pods ready, reconciling as the operator would
            handler.reconcile(kube.get_custom("agents", ns, "bench") or {})
            if ((kube.get_custom("agents", ns, "bench") or {}).get("status") or {}).get("phase") == "Healthy":
                break
            time.sleep(0.5)
        steady = []
        for _ in range(iterations):
            obj = kube.get_custom("agents", ns, "bench") or {}
            t = time.perf_counter()
            handler.reconcile(obj)
            steady.append(time.perf_counter() - t)
        steady.sort()
        return {
            "reconcile_first_ms": 1000 * first,
            "reconcile_steady_p50_ms": 1000 * statistics.median(steady),
            "reconcile_steady_p95_ms": 1000 * steady[int(0.95 * (len(steady) - 1))],
        }
    finally:
        core.delete_namespace(ns)


def main() -> int:
    metrics: dict[str, Any] = {}
    metrics.update(bench_plan())
    metrics.update(bench_simulated_rollout())
    rec = bench_reconcile()
    notes = ("plan(): canary mid-analysis, 10 replicas, 7 steps. rollout_*: a full 7-step canary planned in "
             "simulation (pods ready at once, analyses passing). reconcile_*: the handler in-process against "
             "the API server in KUBECONFIG (kwok pods), steady = Healthy Agent, nothing to change.")
    if "skipped" in rec:
        notes += f" Reconcile latency skipped: {rec['skipped']}."
    else:
        metrics.update(rec)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"name": "agent", "metrics": metrics, "notes": notes}, indent=2) + "\n")
    for k, v in metrics.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
