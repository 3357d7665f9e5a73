"""Agent rolling delivery, config hierarchy and scaling on the real cluster."""

from __future__ import annotations

import json

import pytest

from .agentutil import (
    analysis,
    cli,
    condition,
    core,
    create_agent,
    deployments,
    get_agent,
    job_metric,
    patch_spec,
    record_timing,
    roll_out_never_ready,
    time_failure_to_rollback,
    wait_agent,
    wait_events,
)
from .kubeutil import apply, kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.kwok]


def rolling(deadline: int = 30, post: dict | None = None) -> dict:
    body: dict = {"type": "rolling", "progressDeadlineSeconds": deadline}
    if post:
        body["rolling"] = {"analysis": post}
    return body


def template_revision(ns: str) -> str:
    return deployments(ns, "coder")["coder"].spec.template.metadata.labels["agentops.dev/revision"]


def test_rolling_happy_path_and_kubectl_scale(ns: str, operator) -> None:
    first = create_agent(ns, "coder", rolling(post=analysis(job_metric())),
                         secretEnv=[{"name": "API_KEY", "secretName": "llm-credentials", "key": "token",
                                     "optional": True}])
    old = first["status"]["stableRevision"]
    assert set(deployments(ns, "coder")) == {"coder"}
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:2"})
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Healthy"
                   and a["status"].get("stableRevision") not in (None, old), what="rolled to new")
    assert template_revision(ns) == a["status"]["desiredRevision"]
    assert a["status"]["lastAnalysis"]["phase"] == "Successful"
    # Secret referenced by name only: no value anywhere in the Agent.
    env = deployments(ns, "coder")["coder"].spec.template.spec.containers[0].env
    assert any(e.name == "API_KEY" and e.value_from.secret_key_ref.name == "llm-credentials" for e in env)

    kubectl("scale", "agent", "coder", "-n", ns, "--replicas=4")
    a = wait_agent(ns, "coder", lambda a: a["status"].get("readyReplicas") == 4
                   and a["status"].get("phase") == "Healthy", what="scaled to 4")
    assert a["status"]["replicas"] == 4 and deployments(ns, "coder")["coder"].spec.replicas == 4
    path = f"/apis/agentops.dev/v1alpha1/namespaces/{ns}/agents/coder/scale"
    scale = json.loads(kubectl("get", "--raw", path).stdout)
    assert scale["status"] == {"replicas": 4, "selector": "agentops.dev/agent=coder"}
    assert a["status"]["stableRevision"] == a["status"]["desiredRevision"]  # scaling is not a new revision

    # Git reverts the image: the old revision comes back and is renumbered newest (as StatefulSets do).
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:1.0"})
    wait_agent(ns, "coder", lambda a: a["status"].get("stableRevision") == old
               and a["status"].get("phase") == "Healthy", what="back on the first revision")
    fmt = "jsonpath={range .items[*]}{.metadata.labels.agentops\\.dev/revision}={.revision} {end}"
    numbers = dict(kv.split("=") for kv in kubectl("get", "controllerrevisions", "-n", ns, "-o", fmt).stdout.split())
    assert numbers[old] == "3" and len(numbers) == 2


def test_zero_replicas_is_healthy_without_pods_and_scales_up_and_back(ns: str, operator) -> None:
    # spec.replicas: 0 from the start: nothing to run is the goal reached (Healthy, no Deployment),
    # not a rollout stuck Progressing "0/0 available".
    a = create_agent(ns, "idle", rolling(), replicas=0)
    assert a["status"]["stableRevision"] == a["status"]["desiredRevision"]
    assert a["status"]["replicas"] == 0 and deployments(ns, "idle") == {}
    kubectl("scale", "agent", "idle", "-n", ns, "--replicas=1")
    wait_agent(ns, "idle", lambda a: a["status"].get("availableReplicas") == 1
               and a["status"].get("phase") == "Healthy", what="scaled to 1")
    kubectl("scale", "agent", "idle", "-n", ns, "--replicas=0")
    a = wait_agent(ns, "idle", lambda a: a["status"].get("phase") == "Healthy" and a["status"].get("replicas") == 0
                   and all(d.spec.replicas == 0 for d in deployments(ns, "idle").values()), what="back to 0")
    assert "0/0 available" in a["status"]["message"]


def test_rolling_failed_post_update_analysis_rolls_back(ns: str, operator) -> None:
    first = create_agent(ns, "coder", rolling(post=analysis(job_metric(fail=True, message="smoke test failed"))))
    old = first["status"]["stableRevision"]
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:bad"})
    wait_agent(ns, "coder", lambda a: a["status"].get("currentStep") == "analysis", what="post-update analysis")
    seconds = time_failure_to_rollback(ns, "coder", lambda: template_revision(ns) == old)
    record_timing("rolling: failed post-update Job analysis -> Deployment back on the stable template", seconds)
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Degraded", what="Degraded")
    assert a["status"]["reason"] == "AnalysisFailed" and "smoke test failed" in a["status"]["message"]
    assert a["status"]["stableRevision"] == old and a["status"]["desiredRevision"] != old
    rb = condition(a, "RolledBack")
    assert rb["status"] == "True" and rb["reason"] == "AnalysisFailed"
    wait_events(ns, "coder", "RolledBack")
    wait_agent(ns, "coder", lambda a: a["status"].get("readyReplicas") == 2, what="stable pods serve")

    # retry runs the same revision again; it fails again, the same way.
    cli(ns, "agent", "retry", "coder")
    wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Degraded"
               and a["status"]["rollout"]["attempt"] == 1, what="retry fails again")


def test_rolling_pods_never_ready_progress_deadline_rolls_back(ns: str, operator) -> None:
    a, old = roll_out_never_ready(ns, rolling(deadline=6), "rolling")
    assert a["status"]["reason"] == "ProgressDeadlineExceeded"
    assert template_revision(ns) == old
    wait_agent(ns, "coder", lambda a: a["status"].get("availableReplicas") == 2, what="stable back to full")


def test_environment_config_change_rolls_out_a_new_revision(ns: str, operator) -> None:
    env_cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "env-defaults", "namespace": ns, "labels": {"agentops.dev/config": "environment"}},
              "data": {"model.name": "small", "log.level": "info"}}
    apply(json.dumps(env_cm), ns)
    first = create_agent(ns, "coder", rolling(), config={"log.level": "debug"})
    old = first["status"]["stableRevision"]
    assert first["status"]["configSources"] == {"model.name": "environment", "log.level": "instance"}
    cm = core().read_namespaced_config_map(f"coder-config-{old}", ns)
    assert cm.data == {"model.name": "small", "log.level": "debug"} and cm.immutable

    env_cm["data"]["model.name"] = "large"
    apply(json.dumps(env_cm), ns)
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Healthy"
                   and a["status"].get("stableRevision") not in (None, old), what="config rollout")
    new = a["status"]["stableRevision"]
    assert core().read_namespaced_config_map(f"coder-config-{new}", ns).data["model.name"] == "large"
    assert get_agent(ns, "coder")["spec"]["config"] == {"log.level": "debug"}  # spec untouched


def test_global_config_is_the_lowest_level_and_rolls_out(ns: str, operator) -> None:
    from .conftest import OPERATOR_NS

    kubectl("create", "namespace", OPERATOR_NS, check=False)
    global_cm = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "agentops-global-config", "namespace": OPERATOR_NS,
                              "labels": {"agentops.dev/config": "global"}},
                 "data": {"model.name": "base", "region": "eu"}}
    apply(json.dumps(global_cm))
    try:
        env_cm = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "env", "namespace": ns, "labels": {"agentops.dev/config": "environment"}},
                  "data": {"model.name": "small"}}
        apply(json.dumps(env_cm), ns)
        first = create_agent(ns, "coder", rolling(), config={"log.level": "debug"})
        old = first["status"]["stableRevision"]
        assert first["status"]["configSources"] == {"model.name": "environment", "region": "global",
                                                    "log.level": "instance"}
        global_cm["data"]["region"] = "us"
        apply(json.dumps(global_cm))
        a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Healthy"
                       and a["status"].get("stableRevision") not in (None, old), timeout=30,
                       what="rollout after a global config change")
        data = core().read_namespaced_config_map(f"coder-config-{a['status']['stableRevision']}", ns).data
        assert data == {"model.name": "small", "region": "us", "log.level": "debug"}
    finally:
        kubectl("delete", "configmap", "agentops-global-config", "-n", OPERATOR_NS, check=False)


def test_queue_depth_autoscaling_follows_open_tasks(ns: str, operator) -> None:
    create_agent(ns, "coder", rolling(), replicas=1,
                 autoscaling={"queue": {"minReplicas": 1, "maxReplicas": 3, "tasksPerReplica": 2}})
    tasks = [{"apiVersion": "agentops.dev/v1alpha1", "kind": "AgentTask",
              "metadata": {"name": f"t{i}", "namespace": ns}, "spec": {"title": f"task {i}", "role": "developer"}}
             for i in range(5)]
    apply("\n---\n".join(json.dumps(t) for t in tasks), ns)
    # 5 open tasks for the role, 2 per replica → 3 replicas, capped at maxReplicas 3.
    a = wait_agent(ns, "coder", lambda a: a["status"].get("desiredReplicas") == 3
                   and a["status"].get("readyReplicas") == 3, timeout=60, what="scaled up on queue depth")
    assert a["status"]["queue"]["openTasks"] == 5
    assert a["spec"]["replicas"] == 1  # spec untouched; the queue decides while autoscaling is on
    kubectl("delete", "agenttasks", "--all", "-n", ns)
    wait_agent(ns, "coder", lambda a: a["status"].get("desiredReplicas") == 1
               and a["status"].get("readyReplicas") == 1, timeout=60, what="scaled back to minReplicas")
