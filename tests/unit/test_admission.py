"""The admission policies name model fields in CEL: keep them equal to the models.

A field added to AgentTaskSpec or AgentSpec must be classified here (and in the policy), or this
test fails: an unclassified field would silently be something agents may change, or a pod-template
change nobody's rights are checked for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from agentops_operator.models.agent import AgentSpec
from agentops_operator.models.task import AgentTaskSpec, DeployRef

ADMISSION = Path(__file__).resolve().parents[2] / "manifests" / "admission"


def wire_fields(model: Any) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def policy(file: str, name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((ADMISSION / file).read_text()) if d]
    return next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy" and d["metadata"]["name"] == name)


def variable(pol: dict[str, Any], name: str) -> str:
    return next(v["expression"] for v in pol["spec"]["variables"] if v["name"] == name)


def cel_strings(expr: str) -> set[str]:
    return set(re.findall(r"'([A-Za-z]+)'", expr))


def test_agent_field_lists_cover_the_task_spec_exactly() -> None:
    pol = policy("task-agents.yaml", "agentops-task-agents")
    work = cel_strings(variable(pol, "workChanged"))
    other = cel_strings(variable(pol, "otherChanged"))
    assert work == {"requestedPhase", "by", "output", "notes", "retry", "deploy"}
    assert not work & other
    # approvals are append-only and checked by task-identity (approve verb, own name, separation of duties)
    assert work | other | {"approvals"} == wire_fields(AgentTaskSpec)


# spec.deploy: what the operator runs or reads for the task needs that right of the caller; the rest is data.
DEPLOY_CHECKED = {"command": "check('create')", "agent": "resource('agents')"}
DEPLOY_DATA = {"version", "image", "config"}


def test_deploy_fields_are_classified_and_checked() -> None:
    assert wire_fields(DeployRef) == set(DEPLOY_CHECKED) | DEPLOY_DATA
    pol = policy("no-confused-deputy.yaml", "agentops-task-runs")
    assert "object.spec.deploy.command" in variable(pol, "deployCommandChanged")
    assert "object.spec.deploy.agent" in variable(pol, "deployAgent")
    rules = [v["expression"] for v in pol["spec"]["validations"]]
    agent_rule = next(r for r in rules if "deployAgentChanged" in r)
    # Reading the Agent is what the field hands on (the gate copies its rollout into the task): get, by name.
    assert "resource('agents')" in agent_rule and ".name(variables.deployAgent)" in agent_rule
    assert "check('get')" in agent_rule


AGENT_POD_FIELDS = {"image", "command", "args", "env", "secretEnv", "podLabels", "podAnnotations", "resources",
                    "readinessProbe", "livenessProbe", "serviceAccount", "port"}
# Not part of what runs: scheduling, rollout bookkeeping, constrained labels, or data mounted read-only.
AGENT_OTHER_FIELDS = {"role", "description", "version", "capabilities", "model", "runtime", "replicas", "config",
                      "maxConcurrentTasks", "strategy", "revisionHistoryLimit", "autoscaling", "heartbeat"}


def test_agent_pod_template_fields_are_all_checked() -> None:
    pol = policy("no-confused-deputy.yaml", "agentops-agent-runs")
    expr = variable(pol, "podChanged")
    checked = set(re.findall(r"object\.spec\.([A-Za-z]+)", expr))
    assert checked == AGENT_POD_FIELDS
    assert wire_fields(AgentSpec) == AGENT_POD_FIELDS | AGENT_OTHER_FIELDS
    assert not AGENT_POD_FIELDS & AGENT_OTHER_FIELDS
    # strategy is checked separately (analysis Job providers need create jobs)
    assert "strategy" in variable(pol, "strategyChanged")


def test_every_policy_has_a_deny_binding_and_fails_closed() -> None:
    for path in ADMISSION.glob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        policies = {d["metadata"]["name"] for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
        bindings = {d["spec"]["policyName"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"}
        assert policies and policies == set(bindings), path.name
        for d in docs:
            if d["kind"] == "ValidatingAdmissionPolicy":
                assert d["spec"]["failurePolicy"] == "Fail"
            else:
                assert d["spec"]["validationActions"] == ["Deny"]


def test_revision_stamps_are_set_only_by_the_agent_they_name() -> None:
    """The `tasks` canary analysis trusts the annotation revision.agentops.dev/<agent>: task-identity (all
    users) lets only agent-<agent> change it on a task assigned to <agent>; task-agents exempts it from the
    annotations agents may not touch. (The attack itself: tests/e2e/test_canary_tasks.py.)"""
    from agentops_operator.taskoutcomes import REVISION_ANNOTATION_PREFIX

    ident = policy("task-identity.yaml", "agentops-task-identity")
    assert "matchConditions" not in ident["spec"]  # applies to every user, people and agents alike
    stamps = variable(ident, "revisionStamps")
    assert stamps.count(f"'{REVISION_ANNOTATION_PREFIX}'") == 2  # added or changed, and removed
    rule = next(v["expression"] for v in ident["spec"]["validations"] if "variables.revisionStamps" in v["expression"])
    assert "oldObject != null" in rule  # never on creation
    assert f"k == '{REVISION_ANNOTATION_PREFIX}' + oldObject.status.assignee" in rule
    assert "':agent-' + oldObject.status.assignee" in rule
    agents = policy("task-agents.yaml", "agentops-task-agents")
    assert variable(agents, "metaChanged").count(f"!k.startsWith('{REVISION_ANNOTATION_PREFIX}')") == 3
