"""Agent manifests, names, the command codec and the rollout state as status (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agentops_operator import agent_workload as wl
from agentops_operator import crdgen, names
from agentops_operator import rollout as ro
from agentops_operator.models.agent import AgentSpec, Strategy

OBJ = {
    "apiVersion": "agentops.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "coder", "namespace": "team-a", "uid": "u-1", "labels": {}},
}
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def spec(**kw: object) -> AgentSpec:
    return AgentSpec.model_validate({"role": "developer", "image": "reg/agent:1", **kw})


# ---- pod template / security -----------------------------------------------------------------


def test_pod_template_is_restricted_and_references_secrets_without_values() -> None:
    s = spec(secretEnv=[{"name": "API_KEY", "secretName": "llm", "key": "token"}],
             env=[{"name": "LOG", "value": "debug"}], podAnnotations={"a": "b"}, podLabels={"team": "x"})
    t = wl.revision_template("coder", s)
    pod = t["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == names.agent_service_account("coder")
    c = pod["containers"][0]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    api_key = next(e for e in c["env"] if e["name"] == "API_KEY")
    assert api_key == {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm", "key": "token",
                                                                         "optional": False}}}
    assert {"name": "LOG", "value": "debug"} in c["env"]
    assert t["metadata"]["annotations"] == {"a": "b"}
    assert t["metadata"]["labels"]["team"] == "x"


def test_pods_know_their_revision_from_the_environment() -> None:
    """The worker library stamps tasks with it; it is set per Deployment, outside the hashed template."""
    s = spec(env=[{"name": names.REVISION_ENV, "value": "forged"}])
    t = wl.revision_template("coder", s)
    rev = wl.desired_revision("coder", s, {})[0]
    dep = wl.deployment({"metadata": {"name": "coder", "namespace": "ns", "uid": "u"}}, rev, t, 1,
                        wl.ro.Role.STABLE, 60)
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == names.REVISION_ENV] == [{"name": names.REVISION_ENV, "value": rev}]
    # The template the revision hash covers is untouched (no circularity, same hash again).
    assert wl.desired_revision("coder", s, {})[0] == rev
    assert {"name": names.REVISION_ENV, "value": "forged"} in t["spec"]["containers"][0]["env"]


def test_user_pod_labels_cannot_steal_operator_labels() -> None:
    t = wl.revision_template("coder", spec(podLabels={names.LABEL_AGENT: "other"}))
    assert t["metadata"]["labels"][names.LABEL_AGENT] == "coder"


def test_automount_only_when_asked() -> None:
    t = wl.revision_template("coder", spec(serviceAccount={"automountToken": True}))
    assert t["spec"]["automountServiceAccountToken"] is True
    sa = wl.service_account(OBJ, spec(serviceAccount={"automountToken": True}))
    assert sa["automountServiceAccountToken"] is True and sa["metadata"]["name"] == "agent-coder"


def test_probes_and_resources_render() -> None:
    s = spec(readinessProbe={"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 2},
             livenessProbe={"exec": {"command": ["true"]}}, resources={"requests": {"cpu": "100m"}})
    c = wl.revision_template("coder", s)["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8080}
    assert c["readinessProbe"]["periodSeconds"] == 2
    assert c["livenessProbe"]["exec"] == {"command": ["true"]}
    assert c["resources"] == {"requests": {"cpu": "100m"}}


# ---- revisions -------------------------------------------------------------------------------


def test_revision_depends_on_pod_inputs_and_config_not_on_replicas_or_strategy() -> None:
    base, _ = wl.desired_revision("coder", spec(), {"k": "v"})
    assert wl.desired_revision("coder", spec(replicas=7), {"k": "v"})[0] == base
    assert wl.desired_revision("coder", spec(strategy={"type": "canary"}), {"k": "v"})[0] == base
    assert wl.desired_revision("coder", spec(description="new words"), {"k": "v"})[0] == base
    assert wl.desired_revision("coder", spec(image="reg/agent:2"), {"k": "v"})[0] != base
    assert wl.desired_revision("coder", spec(), {"k": "w"})[0] != base
    assert wl.desired_revision("coder", spec(podAnnotations={"x": "1"}), {"k": "v"})[0] != base


def test_deployment_names_selectors_and_config_map_per_revision() -> None:
    t = wl.revision_template("coder", spec())
    d = wl.deployment(OBJ, "rev1", t, 3, ro.Role.CANARY, 60)
    assert d["metadata"]["name"] == "coder-rev1"
    assert d["spec"]["selector"] == {"matchLabels": {names.LABEL_DEPLOYMENT: "coder-rev1"}}
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels[names.LABEL_REVISION] == "rev1" and labels[names.LABEL_DEPLOYMENT] == "coder-rev1"
    assert d["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "coder-config-rev1"
    assert d["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert d["spec"]["progressDeadlineSeconds"] == 60
    # The shared template was not mutated.
    assert t["spec"]["volumes"][0]["configMap"]["name"] == ""
    rolling = wl.deployment(OBJ, "rev1", t, 3, ro.Role.ROLLING, 60)
    assert rolling["metadata"]["name"] == "coder"
    assert rolling["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": 0}


def test_rolling_both_zero_is_made_valid() -> None:
    from agentops_operator.models.agent import RollingStrategy

    t = wl.revision_template("coder", spec())
    d = wl.deployment(OBJ, "r", t, 1, ro.Role.ROLLING, 10, RollingStrategy(max_surge="0", max_unavailable="0%"))
    assert d["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 1


def test_config_map_and_controller_revision() -> None:
    cm = wl.config_map(OBJ, "rev1", {"model.name": "m"})
    assert cm["immutable"] is True and cm["data"] == {"model.name": "m"}
    assert cm["metadata"]["name"] == "coder-config-rev1"
    cr = wl.controller_revision(OBJ, "rev1", 4, {"spec": {}}, {"a": "b"})
    assert cr["revision"] == 4 and cr["data"] == {"template": {"spec": {}}, "config": {"a": "b"}}
    assert cr["metadata"]["labels"][names.LABEL_REVISION] == "rev1"


def test_services() -> None:
    svc = wl.service(OBJ, "", None)
    assert svc["metadata"]["name"] == "coder" and svc["spec"]["selector"] == {names.LABEL_AGENT: "coder"}
    preview = wl.service(OBJ, "preview", "r2")
    assert preview["metadata"]["name"] == "coder-preview"
    assert preview["spec"]["selector"] == {names.LABEL_AGENT: "coder", names.LABEL_REVISION: "r2"}
    assert names.service_dns("coder", "team-a", "canary") == "coder-canary.team-a.svc.cluster.local"


def test_applied_hash_skips_unchanged_and_catches_manual_scaling() -> None:
    t = wl.revision_template("coder", spec())
    d1 = wl.with_applied_hash(wl.deployment(OBJ, "r", t, 2, ro.Role.STABLE, 10))
    d2 = wl.with_applied_hash(wl.deployment(OBJ, "r", t, 2, ro.Role.STABLE, 10))
    assert not wl.needs_apply(d2, d1)
    assert wl.needs_apply(d2, None)
    assert wl.needs_apply(wl.with_applied_hash(wl.deployment(OBJ, "r", t, 3, ro.Role.STABLE, 10)), d1)
    scaled = json.loads(json.dumps(d1))
    scaled["spec"]["replicas"] = 9
    assert wl.needs_apply(d2, scaled)


# ---- labels and config -----------------------------------------------------------------------


def test_agent_labels_add_capabilities_and_remove_stale_ones() -> None:
    current = {"capability.agentops.dev/java": "true", "team": "a", names.LABEL_ROLE: "developer"}
    patch = wl.agent_labels(spec(capabilities=["python"]), current)
    assert patch == {"capability.agentops.dev/python": "true", "capability.agentops.dev/java": None}
    done = {**current, "capability.agentops.dev/python": "true"}
    del done["capability.agentops.dev/java"]
    assert wl.agent_labels(spec(capabilities=["python"]), done) == {}


def test_instance_config_flattens_model_and_runtime_and_config_wins() -> None:
    s = spec(model={"provider": "vllm", "name": "m1", "parameters": {"temperature": "0.1"}},
             runtime={"maxSteps": "20"}, config={"model.name": "m2"})
    assert wl.instance_config(s) == {"model.provider": "vllm", "model.name": "m2", "model.temperature": "0.1",
                                     "runtime.maxSteps": "20"}


def test_invalid_config_keys() -> None:
    assert wl.invalid_config_keys({"ok.key-1_x": "v", "bad key": "v", "x": 3}) == ["bad key", "x"]


# ---- strategy conversion ---------------------------------------------------------------------


def test_strategy_conversion_and_analysis_lookup() -> None:
    job = {"name": "smoke", "job": {}}
    s = Strategy.model_validate({
        "type": "canary", "progressDeadlineSeconds": 30,
        "canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"pause": {"durationSeconds": 5}},
                             {"analysis": {"metrics": [{**job, "count": 2, "intervalSeconds": 3}]}}]},
    })
    rs = wl.strategy_spec(s)
    assert rs.type is ro.StrategyType.CANARY and rs.progress_deadline_seconds == 30
    assert rs.canary.steps[:3] == (ro.SetWeightStep(20), ro.PauseStep(None), ro.PauseStep(5.0))
    step = rs.canary.steps[3]
    assert isinstance(step, ro.AnalysisStep) and step.analysis.metrics[0].count == 2
    found = wl.analysis_for_run(s, "abc/step-3/0")
    assert found is not None and found.metrics[0].name == "smoke"
    assert wl.analysis_for_run(s, "abc/step-1/0") is None
    bg = Strategy.model_validate({"type": "blueGreen", "blueGreen": {
        "prePromotionAnalysis": {"metrics": [{**job, "name": "pre"}]},
        "postPromotionAnalysis": {"metrics": [{**job, "name": "post"}]}}})
    assert wl.analysis_for_run(bg, "r/pre/1").metrics[0].name == "pre"  # type: ignore[union-attr]
    assert wl.analysis_for_run(bg, "r/post/1").metrics[0].name == "post"  # type: ignore[union-attr]


def test_model_rejects_ambiguous_steps_via_cel_rule_text() -> None:
    from agentops_operator.models import agent

    crd = json.dumps(crdgen.render(agent.CRD))
    assert "canary step: set exactly one of setWeight, pause, analysis" in crd
    assert "metric provider: set exactly one of job, http, prometheus" in crd
    with pytest.raises(ValidationError):
        AgentSpec.model_validate({"role": "x", "image": "i", "strategy": {"canary": {"steps": [{"setWeight": 101}]}}})


# ---- commands --------------------------------------------------------------------------------


def test_commands_round_trip_and_acknowledgement() -> None:
    ann = {
        "agentops.dev/promote": ro.encode_command("n1", full=True),
        "agentops.dev/undo": ro.encode_command("n2", to_revision=3),
        "agentops.dev/abort": "plain-id",
        "unrelated": "x",
    }
    cmds = ro.pending_commands(ann, [])
    assert ro.Command(ro.Verb.PROMOTE, "n1", full=True) in cmds
    assert ro.Command(ro.Verb.UNDO, "n2", to_revision=3) in cmds
    assert ro.Command(ro.Verb.ABORT, "plain-id") in cmds
    acks = ro.merge_acks([], [ro.CommandAck(verb=ro.Verb.PROMOTE, id="n1", applied=True, message="ok", at=T0)])
    wire = ro.RolloutState(acknowledged_commands=acks).status()["acknowledgedCommands"]
    assert wire == [{"verb": "promote", "id": "n1", "applied": True, "message": "ok", "at": "2025-03-01T12:00:00Z"}]
    acks = ro.RolloutState.model_validate({"acknowledgedCommands": wire}).acknowledged_commands
    left = ro.pending_commands(ann, acks)
    assert {c.verb for c in left} == {ro.Verb.UNDO, ro.Verb.ABORT}
    # A new id for the same verb is a new command.
    ann["agentops.dev/promote"] = ro.encode_command("n3")
    assert ro.Command(ro.Verb.PROMOTE, "n3") in ro.pending_commands(ann, acks)


def test_broken_command_json_is_a_plain_id() -> None:
    assert ro.parse_command(ro.Verb.PROMOTE, "{not json") == ro.Command(ro.Verb.PROMOTE, "{not json")


# ---- status round trip -----------------------------------------------------------------------

times = st.one_of(st.none(), st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))
                  .map(lambda d: d.replace(tzinfo=UTC)))


def _state(step: int, attempt: int, t1: datetime | None, t2: datetime | None, rejected: str | None,
           passed: list[str]) -> ro.RolloutState:
    run = ro.AnalysisRunState(run_id="r/step-1/0", started_at=T0).with_measurement(
        "m", ro.Measurement(ro.MeasurementPhase.FAILED, T0 + timedelta(seconds=3), "0.4", "low"))
    last = run.model_copy(update={"phase": ro.AnalysisPhase.FAILED, "message": "bad"})
    ack = ro.CommandAck(verb=ro.Verb.ABORT, id="a1", applied=True, message="aborted", at=T0)
    return ro.RolloutState(stable_revision="s", analysis=run, last_analysis=last,
                           acknowledged_commands=(ack,)).evolve(
        current_revision="c", step_index=step, step_started_at=t1, attempt=attempt, rejected_revision=rejected,
        reason="AnalysisFailed" if rejected else None, message="m", switched_at=t2, passed=tuple(passed))


@given(
    step=st.integers(0, 20), attempt=st.integers(0, 5), t1=times, t2=times,
    rejected=st.one_of(st.none(), st.text("abc", min_size=1, max_size=5)),
    passed=st.lists(st.text("abc/", min_size=1, max_size=8), max_size=4),
)
def test_rollout_state_survives_status_round_trip(step: int, attempt: int, t1: datetime | None,
                                                  t2: datetime | None, rejected: str | None,
                                                  passed: list[str]) -> None:
    state = _state(step, attempt, t1, t2, rejected, passed)
    status = json.loads(json.dumps(state.status()))  # what the API server hands back
    assert ro.RolloutState.model_validate(status) == state


def test_evolve_routes_fields_and_refuses_a_misspelt_one() -> None:
    state = ro.RolloutState().evolve(stable_revision="s", step_index=2)
    assert state.stable_revision == "s" and state.rollout.step_index == 2
    with pytest.raises(TypeError, match="step_indx"):
        state.evolve(step_indx=3)


def test_status_has_explicit_nulls_for_merge_patch() -> None:
    b = ro.RolloutState().status()
    assert "rejectedRevision" in b["rollout"] and b["rollout"]["rejectedRevision"] is None
    assert "analysis" in b and b["analysis"] is None


def test_rollout_status_writes_only_fields_the_crd_knows() -> None:
    from agentops_operator.models import agent

    schema = crdgen.render(agent.CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    state = _state(3, 1, T0, T0, "new", ["new/pre/0"])
    assert crdgen.unknown_keys(state.status(), schema) == []
    # The check bites: a misspelt key is reported.
    assert crdgen.unknown_keys({"rollout": {"stepIndx": 1}}, schema) == ["status.rollout.stepIndx"]


# ---- observations and queue ------------------------------------------------------------------


def _dep(name: str, rev: str, replicas: int, avail: int) -> dict:
    return {"metadata": {"name": name, "generation": 2},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {names.LABEL_REVISION: rev}}}},
            "status": {"observedGeneration": 2, "replicas": replicas, "updatedReplicas": replicas,
                       "readyReplicas": avail, "availableReplicas": avail}}


def test_observations_prefer_the_current_strategys_naming() -> None:
    deps = [_dep("coder", "r1", 3, 3), _dep("coder-r1", "r1", 3, 0)]
    assert wl.observations(deps, "coder", ro.StrategyType.CANARY)["r1"].available_replicas == 0
    assert wl.observations(deps, "coder", ro.StrategyType.ROLLING)["r1"].available_replicas == 3
    o = wl.observe_deployment(_dep("coder-r1", "r1", 3, 3))
    assert o is not None and o.settled(3) and not o.settled(4)


def test_open_tasks_for_agent_and_role() -> None:
    tasks = [
        {"spec": {"role": "developer"}, "status": {"phase": "Backlog"}},
        {"spec": {}, "status": {"phase": "InProgress", "assignee": "coder"}},
        {"spec": {}, "status": {"phase": "Done", "assignee": "coder"}},
        {"spec": {"role": "qa"}, "status": {}},
        {"spec": {"assignee": "coder"}, "status": {}},
        {"spec": {"assignee": "other", "role": "developer"}, "status": {}},
        {"spec": {"pipeline": [{"name": "dev", "phases": ["Assigned"], "role": "developer"}]}, "status": {}},
    ]
    assert wl.open_tasks_for("coder", "developer", tasks) == 4
