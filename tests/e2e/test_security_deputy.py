"""Attacks on the operator as a confused deputy: getting it to run what the attacker may not run.

Users are bound to the shipped ClusterRoles (and to narrow Roles) in the test namespace; every
attack must be refused at admission with a message naming the field.
"""

from __future__ import annotations

import json

from .kubeutil import apply, kget, kubectl
from .secutil import agent_body, bind, create, patch, refused, role, settle, task_body

JOB_GATE = {"transition": "InProgress->Review", "gates": [
    {"name": "pwn", "type": "Job", "job": {"image": "evil.example/steal:1", "command": ["sh", "-c", "cat /var/run/*"],
                                           "serviceAccountName": "ci-deployer"}}]}
MALLORY, JOBBER, DEPLOYER, ALICE = "mallory", "jobber", "deployer", "alice"


def test_editor_cannot_run_a_job_gate_or_deploy_command_she_could_not_run(ns: str, operator) -> None:
    kubectl("create", "serviceaccount", "ci-deployer", "-n", ns)
    bind(ns, MALLORY, "agentops-editor")
    bind(ns, ALICE, "agentops-editor", "edit")
    bind(ns, JOBBER, "agentops-editor")
    role(ns, JOBBER, "run-jobs", "create", "jobs.batch")
    settle(ns, JOBBER, "create", "jobs.batch")
    settle(ns, MALLORY, "create", "agenttasks.agentops.dev")
    # mallory (agentops-editor only) adds a Job gate running her image as ci-deployer.
    refused(create(ns, task_body("steal", gates=[JOB_GATE]), MALLORY),
            "spec.gates: Job gates run as Jobs", "mallory may not create jobs")
    # ... or a deploy command, run by the default deploy gate.
    refused(create(ns, task_body("steal2", deploy={"version": "1", "command": ["sh", "-c", "id"]}), MALLORY),
            "spec.deploy.command", "may not create jobs")
    # jobber may create Jobs, but not act as ci-deployer (its token would be mounted).
    refused(create(ns, task_body("steal3", gates=[JOB_GATE]), JOBBER),
            "serviceAccountName", "may not impersonate")
    no_sa = json.loads(json.dumps(JOB_GATE))
    del no_sa["gates"][0]["job"]["serviceAccountName"]
    assert create(ns, task_body("ok-jobber", gates=[no_sa]), JOBBER)[0]
    # alice (built-in edit: Jobs, impersonating ServiceAccounts) may set it.
    assert create(ns, task_body("ok-alice", gates=[JOB_GATE]), ALICE)[0]
    # mallory may still edit what is not a Job: unrelated fields of alice's task pass ...
    assert patch(ns, "agenttask", "ok-alice", {"spec": {"description": "typo fixed"}}, MALLORY)[0]
    # ... but not swap the image of the gate alice set.
    swapped = json.loads(json.dumps(JOB_GATE))
    swapped["gates"][0]["job"]["image"] = "evil.example/other:2"
    refused(patch(ns, "agenttask", "ok-alice", {"spec": {"gates": [swapped]}}, MALLORY), "spec.gates", "mallory")
    assert kget("agenttask", "ok-alice", ns)["spec"]["gates"][0]["gates"][0]["job"]["image"] == "evil.example/steal:1"


def test_editor_cannot_swap_an_agent_image_or_pull_secrets_into_it(ns: str, operator) -> None:
    kubectl("create", "secret", "generic", "db-password", "--from-literal=password=hunter2", "-n", ns)
    bind(ns, MALLORY, "agentops-editor")
    bind(ns, DEPLOYER, "agentops-editor")
    role(ns, DEPLOYER, "run-deployments", "create", "deployments.apps")
    settle(ns, DEPLOYER, "create", "deployments.apps")
    settle(ns, MALLORY, "create", "agents.agentops.dev")
    secret_env = [{"name": "DB", "secretName": "db-password", "key": "password"}]
    refused(create(ns, agent_body("spy", secretEnv=secret_env), MALLORY), "spec.image", "may not create deployments")
    # deployer may run Deployments, but may not read db-password: it cannot be put in her pod either.
    refused(create(ns, agent_body("spy", secretEnv=secret_env), DEPLOYER),
            "spec.secretEnv", "db-password", "may not read")
    refused(create(ns, agent_body("spy", serviceAccount={"automountToken": True}), DEPLOYER),
            "spec.serviceAccount.automountToken", "may not impersonate")
    refused(create(ns, agent_body("spy", serviceAccount={"annotations": {"iam.example/role": "admin"}}), DEPLOYER),
            "spec.serviceAccount.annotations")
    job_analysis = {"type": "canary", "canary": {"steps": [{"analysis": {"metrics": [
        {"name": "x", "job": {"image": "evil.example/x:1"}}]}}]}}
    refused(create(ns, agent_body("spy", strategy=job_analysis), DEPLOYER), "spec.strategy", "may not create jobs")
    assert create(ns, agent_body("plain"), DEPLOYER)[0]
    # An admin set up an Agent with the Secret; mallory may edit its description, not its pod.
    apply(json.dumps({**agent_body("db-agent", secretEnv=secret_env), "metadata": {"name": "db-agent"}}), ns)
    assert patch(ns, "agent", "db-agent", {"spec": {"description": "owned by team a"}}, MALLORY)[0]
    refused(patch(ns, "agent", "db-agent", {"spec": {"image": "evil.example/spy:1"}}, MALLORY),
            "spec.image", "mallory")
    refused(patch(ns, "agent", "db-agent", {"spec": {"command": ["sh", "-c", "env"]}}, DEPLOYER),
            "spec.secretEnv", "db-password")  # changing what runs with the Secret needs reading it
    assert kget("agent", "db-agent", ns)["spec"]["image"] == "registry.example/agents/coder:1"


def test_gate_policy_configmaps_need_job_rights(ns: str, operator) -> None:
    cm_editor = "cm-editor"
    role(ns, cm_editor, "edit-configmaps", "create,update,patch,delete,get", "configmaps")
    settle(ns, cm_editor, "create", "configmaps")
    policy = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "gates", "labels": {"agentops.dev/gate-policy": "true"}},
              "data": {"policy.yaml": json.dumps([JOB_GATE])}}
    refused(create(ns, policy, cm_editor), "gate-policy ConfigMap", "may not create jobs")
    # Unrelated ConfigMaps are none of the policy's business.
    assert create(ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "notes"},
                       "data": {"a": "b"}}, cm_editor)[0]
    # Labelling an existing ConfigMap turns it into a policy: refused too.
    refused(patch(ns, "configmap", "notes", {"metadata": {"labels": {"agentops.dev/gate-policy": "true"}}},
                  cm_editor), "gate-policy ConfigMap")
    # An admin's policy cannot be removed (dropping its required gates) by cm-editor either.
    apply(json.dumps(policy), ns)
    proc = kubectl("delete", "configmap", "gates", "-n", ns, as_user=cm_editor, check=False)
    assert proc.returncode != 0 and "gate-policy ConfigMap" in proc.stderr
