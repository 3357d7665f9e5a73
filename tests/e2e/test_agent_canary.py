"""Agent canary delivery on the real cluster: steps, Job and HTTP analysis, verbs, rollback."""

from __future__ import annotations

import json

import pytest

from .agentutil import (
    analysis,
    cli,
    condition,
    create_agent,
    deployments,
    get_agent,
    job_metric,
    patch_spec,
    pod_uids,
    record_timing,
    replicas_by_revision,
    roll_out_never_ready,
    serve,
    time_failure_to_rollback,
    wait_agent,
    wait_events,
)
from .kubeutil import kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.kwok]


def canary(*steps: dict, deadline: int = 30) -> dict:
    return {"type": "canary", "progressDeadlineSeconds": deadline, "canary": {"steps": list(steps)}}


def test_canary_happy_path_steps_then_promote(ns: str, operator) -> None:
    steps = [{"setWeight": 34}, {"pause": {"durationSeconds": 2}}, {"analysis": analysis(job_metric())},
             {"setWeight": 67}, {"pause": {}}]
    first = create_agent(ns, "coder", canary(*steps), replicas=3, capabilities=["python", "review"])
    old = first["status"]["stableRevision"]
    # Discovery: capability labels on the Agent, endpoint, scale selector, owned children.
    assert "coder" in kubectl("get", "agents", "-n", ns, "-l", "capability.agentops.dev/python").stdout
    assert first["status"]["endpoint"] == f"coder.{ns}.svc.cluster.local"
    assert first["status"]["selector"] == "agentops.dev/agent=coder"
    dep = deployments(ns, "coder")[f"coder-{old}"]
    assert dep.metadata.owner_references[0].kind == "Agent"
    pod = dep.spec.template.spec
    assert pod.security_context.run_as_non_root and pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert pod.automount_service_account_token is False and pod.service_account_name == "agent-coder"
    assert pod.containers[0].security_context.capabilities.drop == ["ALL"]

    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:1.1"})
    paused = wait_agent(ns, "coder", lambda a: a["status"].get("currentStep") == "pause"
                        and a["status"].get("phase") == "Paused", what="paused at the last step")
    new = paused["status"]["desiredRevision"]
    assert new != old and paused["status"]["canaryWeight"] == 67
    assert replicas_by_revision(ns, "coder") == {old: 1, new: 3}  # ceil(3 * 67%) canaries; stable keeps one
    assert paused["status"]["lastAnalysis"]["phase"] == "Successful"
    assert kubectl("get", "service", "coder-canary", "-n", ns, "-o", "jsonpath={.spec.selector}").stdout \
        == json.dumps({"agentops.dev/agent": "coder", "agentops.dev/revision": new}, separators=(",", ":"))

    out = cli(ns, "agent", "promote", "coder")
    assert "promoted" in out.stdout
    done = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Healthy"
                      and a["status"].get("stableRevision") == new, what="healthy on the new revision")
    assert done["status"]["desiredRevision"] == new and done["status"]["readyReplicas"] == 3
    wait_agent(ns, "coder", lambda a: replicas_by_revision(ns, "coder") == {new: 3}, what="old revision removed")
    wait_events(ns, "coder", "RolloutStarted", "AnalysisSuccessful", "RolloutCompleted")
    # Revision history as ControllerRevisions.
    fmt = "jsonpath={range .items[*]}{.revision} {.metadata.labels.agentops\\.dev/revision}\n{end}"
    crs = kubectl("get", "controllerrevisions", "-n", ns, "-l", "agentops.dev/agent=coder", "-o", fmt).stdout
    assert {f"1 {old}", f"2 {new}"} <= set(crs.splitlines())


def test_canary_failed_job_analysis_aborts_and_keeps_stable(ns: str, operator) -> None:
    steps = [{"setWeight": 50}, {"analysis": analysis(job_metric(fail=True, message="error rate 12% > 5%"))},
             {"setWeight": 100}]
    first = create_agent(ns, "coder", canary(*steps), replicas=2)
    old = first["status"]["stableRevision"]
    stable_pods = pod_uids(ns, "coder", old)
    stable_dep = deployments(ns, "coder")[f"coder-{old}"]
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:bad"})
    wait_agent(ns, "coder", lambda a: a["status"].get("currentStep", "").startswith("analysis"),
               what="analysis step")
    new = get_agent(ns, "coder")["status"]["desiredRevision"]

    def rolled_back() -> bool:
        return replicas_by_revision(ns, "coder").get(new) == 0

    seconds = time_failure_to_rollback(ns, "coder", rolled_back)
    record_timing("canary: failed Job analysis -> canary at 0", seconds)
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Degraded", what="Degraded")
    assert a["status"]["reason"] == "AnalysisFailed"
    assert "error rate 12% > 5%" in a["status"]["message"]  # why the analysis failed, surfaced
    assert a["status"]["stableRevision"] == old and a["status"]["desiredRevision"] == new
    rb = condition(a, "RolledBack")
    assert rb["status"] == "True" and rb["reason"] == "AnalysisFailed"
    assert rb["observedGeneration"] == a["metadata"]["generation"]
    assert a["spec"]["image"].endswith(":bad")  # the operator never edits the spec
    assert replicas_by_revision(ns, "coder") == {old: 2, new: 0}
    # Stable untouched: the same Deployment and template throughout; at 50% it lent one replica to
    # the canary (weight is a replica ratio) and got it back, the other pod never restarted.
    dep = deployments(ns, "coder")[f"coder-{old}"]
    assert dep.metadata.uid == stable_dep.metadata.uid
    assert dep.spec.template == stable_dep.spec.template
    assert len(pod_uids(ns, "coder", old) & stable_pods) >= 1
    wait_events(ns, "coder", "RolledBack")


def test_canary_never_ready_hits_progress_deadline_and_rolls_back(ns: str, operator) -> None:
    a, old = roll_out_never_ready(ns, canary({"setWeight": 50}, {"pause": {}}, deadline=6), "canary", replicas=2)
    assert a["status"]["reason"] == "ProgressDeadlineExceeded"
    new = a["status"]["desiredRevision"]
    assert replicas_by_revision(ns, "coder") == {old: 2, new: 0}
    assert condition(a, "Ready")["status"] == "True"  # the stable revision kept serving


def test_canary_verbs_abort_retry_promote_full_undo(ns: str, operator) -> None:
    first = create_agent(ns, "coder", canary({"setWeight": 50}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}))
    v1 = first["status"]["stableRevision"]
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:2"})
    wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Paused", what="first pause")
    v2 = get_agent(ns, "coder")["status"]["desiredRevision"]

    assert "aborted" in cli(ns, "agent", "abort", "coder").stdout
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Degraded", what="aborted")
    assert a["status"]["reason"] == "AbortedByUser" and replicas_by_revision(ns, "coder")[v2] == 0

    assert "retrying" in cli(ns, "agent", "retry", "coder").stdout
    wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Paused", what="paused again after retry")
    assert "fully" in cli(ns, "agent", "promote", "coder", "--full").stdout
    wait_agent(ns, "coder", lambda a: a["status"].get("stableRevision") == v2
               and a["status"].get("phase") == "Healthy", what="promoted fully")

    # A verb with nothing to act on is refused (exit 1) with the reason.
    refused = cli(ns, "agent", "abort", "coder", check=False)
    assert refused.returncode == 1 and "no rollout in progress" in refused.stdout

    assert "undo to revision" in cli(ns, "agent", "undo", "coder").stdout
    a = wait_agent(ns, "coder", lambda a: a["status"].get("stableRevision") == v1
                   and a["status"].get("phase") == "Healthy", what="undone to v1")
    assert a["status"]["desiredRevision"] == v2  # spec unchanged: the drift is visible
    assert condition(a, "RolledBack")["reason"] == "UndoneByUser"
    status = cli(ns, "agent", "status", "coder").stdout
    assert "drift" in status and f"stable={v1} (#1)" in status

    # Undo to the revision the spec asks for rolls it out again, through the steps.
    assert "rolling it out" in cli(ns, "agent", "undo", "coder", "--to-revision", "2").stdout
    wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Paused", what="undo to #2 pauses at step 2")
    cli(ns, "agent", "promote", "coder", "--full")
    a = wait_agent(ns, "coder", lambda a: a["status"].get("stableRevision") == v2
                   and a["status"].get("phase") == "Healthy", what="back on revision 2")
    assert condition(a, "RolledBack")["status"] == "False"
    acks = {k["verb"]: k for k in get_agent(ns, "coder")["status"]["acknowledgedCommands"]}
    assert set(acks) == {"promote", "abort", "retry", "undo"}


def test_canary_http_analysis_against_local_server(ns: str, operator) -> None:
    healthy = {"value": True}
    seen: list[str] = []

    def health() -> tuple[int, str, str]:
        return 200, "application/json", json.dumps({"checks": {"ok": healthy["value"]}, "revision": "x"})

    with serve({"/health": health}) as port:
        metric = {"name": "health", "count": 2, "intervalSeconds": 1, "successCondition": "result == true",
                  "http": {"url": f"http://127.0.0.1:{port}/health?canary={{{{canaryService}}}}",
                           "jsonPath": "$.checks.ok"}}
        steps = [{"setWeight": 50}, {"analysis": analysis(metric)}]
        first = create_agent(ns, "coder", canary(*steps), replicas=2)
        old = first["status"]["stableRevision"]
        patch_spec(ns, "coder", {"image": "registry.example/agents/coder:http-ok"})
        a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Healthy"
                       and a["status"]["stableRevision"] != old, what="HTTP analysis passes")
        last = a["status"]["lastAnalysis"]
        assert last["phase"] == "Successful" and last["metrics"][0]["successful"] == 2
        seen.append(a["status"]["stableRevision"])

        healthy["value"] = False
        patch_spec(ns, "coder", {"image": "registry.example/agents/coder:http-bad"})
        a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Degraded", what="HTTP analysis fails")
        assert a["status"]["reason"] == "AnalysisFailed" and a["status"]["stableRevision"] == seen[0]
        m = a["status"]["lastAnalysis"]["metrics"][0]
        assert m["failed"] == 1 and m["measurements"][-1]["value"] == "false"
