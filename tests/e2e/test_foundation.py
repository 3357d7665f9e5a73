"""The foundation as a user checks it: CRDs, admission, initial status, and a cluster that runs Jobs."""

from __future__ import annotations

import json

import pytest

from .kubeutil import apply, kget, kubectl, wait_for

CRDS = ("agents.agentops.dev", "agenttasks.agentops.dev", "quotas.agentops.dev")


def test_crds_established_with_names_and_category() -> None:
    for name in CRDS:
        crd = json.loads(kubectl("get", "crd", name, "-o", "json").stdout)
        conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conds.get("Established") == "True", name
        assert "agentops" in crd["spec"]["names"]["categories"]
        assert crd["spec"]["names"]["shortNames"]
    out = kubectl("api-resources", "--api-group=agentops.dev", "-o", "wide").stdout
    for kind in ("Agent", "AgentTask", "Quota"):
        assert kind in out


def test_kubectl_explain_reads_well() -> None:
    out = kubectl("explain", "agenttask.spec").stdout
    assert "requestedPhase" in out and "Phase the requester wants next" in out
    out = kubectl("explain", "quota.spec.window").stdout
    assert "rolling duration" in out


def test_status_initialised_on_all_three_kinds(ns: str, operator) -> None:
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: dev-1, namespace: {ns}}}
spec: {{role: developer, image: registry.example/agents/dev:1.0}}
---
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: t1, namespace: {ns}}}
spec: {{title: Write the parser, role: reviewer}}  # no reviewer agent: it stays in the Backlog
---
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: publish-daily, namespace: {ns}}}
spec: {{resource: publish, limit: 100, window: daily, timeZone: Europe/Paris}}
""")
    task = wait_for(lambda: (t := kget("agenttask", "t1", ns)).get("status", {}).get("phase") and t,
                    what="task status")
    assert task["status"]["phase"] == "Backlog"
    assert all(c["observedGeneration"] == task["metadata"]["generation"] for c in task["status"]["conditions"])
    quota = wait_for(lambda: (q := kget("quotas.agentops.dev", "publish-daily", ns)).get("status", {})
                     .get("resetAt") and q, what="quota status")
    assert quota["status"]["used"] == 0
    # Daily windows in Paris reset at local midnight: 23:00 or 22:00 UTC.
    assert quota["status"]["resetAt"].endswith(("T23:00:00Z", "T22:00:00Z"))
    agent = wait_for(lambda: (a := kget("agent", "dev-1", ns)).get("status", {}).get("conditions") and a,
                     what="agent status")
    ready = next(c for c in agent["status"]["conditions"] if c["type"] == "Ready")
    assert ready["observedGeneration"] == agent["metadata"]["generation"]
    assert ready["message"]
    listed = kubectl("get", "agentops", "-n", ns).stdout
    assert "dev-1" in listed and "t1" in listed and "publish-daily" in listed


def test_illegal_move_refused_by_cel_with_allowed_moves(ns: str) -> None:
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: t2, namespace: {ns}}}
spec: {{title: Illegal}}
""")
    proc = kubectl("patch", "agenttask", "t2", "-n", ns, "--type=merge",
                   "-p", '{"spec":{"requestedPhase":"Deployed"}}', check=False)
    assert proc.returncode != 0
    assert "illegal move from Backlog to Deployed" in proc.stderr
    assert "allowed from Backlog: Assigned, Cancelled" in proc.stderr
    assert kget("agenttask", "t2", ns)["spec"]["requestedPhase"] == "Backlog"
    # A new task cannot start beyond the first move either.
    proc = apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: t3, namespace: {ns}}}
spec: {{title: Too far, requestedPhase: Review}}
""", check=False)
    assert proc.returncode != 0 and "a new task starts in Backlog" in proc.stderr


def test_bad_input_names_the_field(ns: str) -> None:
    proc = apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: bad, namespace: {ns}}}
spec: {{resource: publish, limit: -1, window: fortnightly}}
""", check=False)
    assert proc.returncode != 0
    assert "spec.limit" in proc.stderr and "spec.window" in proc.stderr


@pytest.mark.parametrize("fail", [False, pytest.param(True, marks=pytest.mark.kwok)])
def test_jobs_run_on_kwok(ns: str, fail: bool) -> None:
    annotations = '{"agentops.dev/kwok-fail": "true"}' if fail else "{}"
    apply(f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: probe, namespace: {ns}}}
spec:
  backoffLimit: 0
  template:
    metadata: {{annotations: {annotations}}}
    spec:
      restartPolicy: Never
      securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
      - name: main
        image: busybox:1.36
        command: ["true"]
        securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
""")

    def finished() -> str | None:
        job = kget("job", "probe", ns)
        for c in job.get("status", {}).get("conditions", []):
            if c["type"] in ("Complete", "Failed") and c["status"] == "True":
                return str(c["type"])
        return None

    assert wait_for(finished, timeout=90, what="job to finish") == ("Failed" if fail else "Complete")
