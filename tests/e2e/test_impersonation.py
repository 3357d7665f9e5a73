"""`kubectl agentops --as U --as-group A --as-group B` acts with every group, as kubectl does.

The API server reads each ``Impersonate-Group`` header line as one group; an operator client that
sent only the first (or joined them with commas) would act with fewer groups than asked for.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .kubeutil import ROOT, apply, kget, kubectl

WHO_AM_I = (
    "import json, sys; from kubernetes import client; from agentops_operator import kube;"
    "kube.impersonate(sys.argv[1], sys.argv[2:]);"
    "r = client.AuthenticationV1Api(kube.api_client()).create_self_subject_review("
    "client.V1SelfSubjectReview(api_version='authentication.k8s.io/v1', kind='SelfSubjectReview'));"
    "print(json.dumps({'user': r.status.user_info.username, 'groups': r.status.user_info.groups}))"
)


def _cli(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentops_operator.cli", "-n", ns, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_impersonation_sends_every_group() -> None:
    out = subprocess.run([sys.executable, "-c", WHO_AM_I, "dana", "board-a", "board-b", "board,c"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=True).stdout
    me = json.loads(out)
    assert me["user"] == "dana"
    # Every group arrives, each as itself (a comma inside a group name is not a separator).
    assert {"board-a", "board-b", "board,c"} <= set(me["groups"])


def test_cli_approves_with_two_impersonated_groups(ns: str) -> None:
    # Only board-a may approve at all; the admission policy lets an approval name only groups the
    # requester is in, so naming board-b as well succeeds only if both groups reached the API server.
    kubectl("create", "rolebinding", "board-a-approves", "--clusterrole=agentops-approver", "--group=board-a",
            "-n", ns)
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: t1, namespace: {ns}}}
spec: {{title: t1}}
""")
    refused = _cli(ns, "--as", "dana", "--as-group", "board-a", "task", "approve", "t1",
                   "--group", "board-a", "--group", "board-b", "--reason", "one group only")
    assert refused.returncode != 0 and "groups the requesting user belongs to" in refused.stderr

    done = _cli(ns, "--as", "dana", "--as-group", "board-a", "--as-group", "board-b", "task", "approve", "t1",
                "--group", "board-a", "--group", "board-b", "--reason", "both boards")
    assert done.returncode == 0, done.stderr
    approval = kget("agenttask", "t1", ns)["spec"]["approvals"][-1]
    assert approval["approver"] == "dana" and approval["groups"] == ["board-a", "board-b"]
