"""Quota attacks, each written as the attacker would try it against the shipped manifests.

An agent (ServiceAccount agent-x with ClusterRole agentops-agent, which may patch quotas/status to
use its budget) tries to reset or bend its budget; a namespace admin tries to exempt an agent; a
task that costs on Assigned tries to be assigned for free. Admission policy:
manifests/admission/quota-status.yaml (and the chart's copy, compared here).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from agentops_operator import quota_client
from agentops_operator.quotaledger import parse_time

from .kubeutil import ROOT, apply, kget, kubectl, wait_for
from .taskutil import make_team, phase_is

pytestmark = pytest.mark.e2e
POLICY = ROOT / "manifests" / "admission" / "quota-status.yaml"


def agent_user(ns: str, name: str = "x") -> str:
    return f"system:serviceaccount:{ns}:agent-{name}"


def as_api(user: str | None) -> client.CustomObjectsApi:
    """A client of its own; impersonating `user` (the admin kubeconfig may impersonate)."""
    api_client = config.new_client_from_config()
    if user:
        api_client.set_default_header("Impersonate-User", user)
    return client.CustomObjectsApi(api_client)


def make_quota(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    apply(json.dumps({"apiVersion": "agentops.dev/v1alpha1", "kind": "Quota",
                      "metadata": {"name": name, "namespace": ns}, "spec": spec}))
    return wait_for(lambda: (s := status(ns, name)).get("resetAt") and s.get("conditions") and s, timeout=30,
                    what=f"quota {name} initialised by the operator")


def status(ns: str, name: str) -> dict[str, Any]:
    return kget("quotas.agentops.dev", name, ns).get("status") or {}


def patch_status(ns: str, name: str, body: dict[str, Any], user: str) -> subprocess.CompletedProcess[str]:
    return kubectl("patch", "quotas.agentops.dev", name, "-n", ns, "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": body}), as_user=user, check=False)


def refused(proc: subprocess.CompletedProcess[str], field: str) -> None:
    assert proc.returncode != 0, f"the attack succeeded: {proc.stdout}"
    assert "agentops-quota-status" in proc.stderr and field in proc.stderr, proc.stderr


@pytest.fixture
def agent_x(ns: str) -> str:
    kubectl("create", "rolebinding", "agent-x", "--clusterrole=agentops-agent",
            f"--serviceaccount={ns}:agent-x", "-n", ns)
    return agent_user(ns)


def test_an_agent_cannot_reset_its_budget(ns: str, operator, agent_x: str) -> None:
    make_quota(ns, "publish", resource="publish", limit=5, window="daily", enforcement="Hard")
    agent = as_api(agent_x)
    taken = sum(1 for _ in range(7) if quota_client.consume(agent, ns, "publish", 1, by="agent-x").granted)
    assert taken == 5 and status(ns, "publish")["used"] == 5

    # The attack, verbatim: used back to 0 through the status subresource.
    refused(patch_status(ns, "publish", {"used": 0}, agent_x), "status.used: may only grow")
    # Smarter: a fake window rollover (what the operator writes at resetAt), with a consistent ledger.
    st = status(ns, "publish")
    tomorrow = (parse_time(st["resetAt"]) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    refused(patch_status(ns, "publish", {"used": 0, "remaining": 5, "windowStart": st["resetAt"],
                                         "resetAt": tomorrow}, agent_x), "only the operator starts a window")
    refused(patch_status(ns, "publish", {"resetAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}, agent_x),
            "only the operator starts a window")
    # Past the Hard limit directly, or by hiding what is held.
    refused(patch_status(ns, "publish", {"used": 6, "remaining": 0}, agent_x), "exceed the Hard limit of 5")
    # The budget is still spent: the agent gets nothing more (10 attempts, none granted).
    assert not any(quota_client.consume(agent, ns, "publish", 1).granted for _ in range(10))
    assert status(ns, "publish")["used"] == 5


def test_an_agent_cannot_free_or_fake_a_tasks_charge(ns: str, operator, agent_x: str) -> None:
    make_quota(ns, "publish", resource="publish", limit=4, window="daily", enforcement="Hard")
    admin, agent = as_api(None), as_api(agent_x)
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: t, namespace: {ns}}}
spec: {{title: t}}
""")
    uid = kget("agenttask", "t", ns)["metadata"]["uid"]  # a live task, so the operator keeps its hold
    task_hold = f"AgentTask/t/{uid}/Backlog->Assigned/0"
    assert quota_client.reserve(admin, ns, "publish", task_hold, 2, reason="t: Backlog->Assigned").granted
    # Releasing the task's hold would let its move commit nothing (a free publish).
    st = status(ns, "publish")
    refused(patch_status(ns, "publish", {"reservations": [], "reserved": 0, "remaining": 4 - st["used"]}, agent_x),
            "status.reservations")
    # Pretending the task's next move was already committed makes the operator skip its charge.
    fake = {"holder": f"AgentTask/t/{uid}/Backlog->Cancelled/0", "amount": 1, "at": st["resetAt"]}
    refused(patch_status(ns, "publish", {"committed": [fake]}, agent_x), "status.committed")
    # Hiding held units to squeeze past the limit.
    refused(patch_status(ns, "publish", {"reserved": 0, "remaining": 4}, agent_x), "status.reserved")
    # Its own holds work as documented: reserve, commit once (a retry charges nothing), release.
    assert quota_client.reserve(agent, ns, "publish", "agent-x/run-1", 1).granted
    quota_client.commit(agent, ns, "publish", "agent-x/run-1")
    assert quota_client.reserve(agent, ns, "publish", "agent-x/run-1", 1).granted  # a retry: already committed
    quota_client.commit(agent, ns, "publish", "agent-x/run-1")
    assert quota_client.reserve(agent, ns, "publish", "agent-x/run-2", 1).granted
    quota_client.release(agent, ns, "publish", "agent-x/run-2")
    st = status(ns, "publish")
    assert (st["used"], st["reserved"]) == (1, 2)
    assert [r["holder"] for r in st["reservations"]] == [task_hold]
    assert not quota_client.consume(agent, ns, "publish", 2).granted  # 1 used + 2 held + 2 > 4
    # The forged-commit attempt left nothing behind: the task's real charge still applies.
    quota_client.commit(admin, ns, "publish", task_hold)
    assert status(ns, "publish")["used"] == 3


def test_only_the_operator_identity_is_exempt(ns: str, operator, agent_x: str) -> None:
    make_quota(ns, "publish", resource="publish", limit=5, window="daily")
    assert quota_client.consume(as_api(agent_x), ns, "publish", 3).granted
    # The operator's ClusterRole and its binding to agentops-system/agentops-operator, as shipped.
    shipped = yaml.safe_load_all((ROOT / "manifests" / "operator" / "rbac.yaml").read_text())
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(
        d for d in shipped if d and d["kind"] in ("ClusterRole", "ClusterRoleBinding")))
    # A namespace admin cannot exempt an agent: granting the `reset` verb needs holding it (RBAC escalation).
    kubectl("create", "rolebinding", "boss-admin", "--clusterrole=admin", "--user=boss", "-n", ns)
    role = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reset-quotas, namespace: {ns}}}
rules: [{{apiGroups: [agentops.dev], resources: [quotas/status], verbs: [reset, patch]}}]
"""
    proc = apply(role, as_user="boss", check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stdout + proc.stderr
    proc = kubectl("create", "rolebinding", "x-operator", "--clusterrole=agentops-operator",
                   f"--serviceaccount={ns}:agent-x", "-n", ns, as_user="boss", check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stderr
    refused(patch_status(ns, "publish", {"used": 0}, agent_x), "status.used: may only grow")

    # The operator's ServiceAccount (its ClusterRole from manifests/operator/rbac.yaml) is exempt...
    op_sa = "system:serviceaccount:agentops-system:agentops-operator"
    proc = patch_status(ns, "publish", {"used": 0, "remaining": 5}, op_sa)
    assert proc.returncode == 0, proc.stderr
    # ...and so is a cluster admin (the e2e operator runs with the admin kubeconfig).
    assert status(ns, "publish")["used"] == 0
    proc = kubectl("patch", "quotas.agentops.dev", "publish", "-n", ns, "--subresource=status", "--type=merge",
                   "-p", '{"status": {"used": 1, "remaining": 4}}', check=False)
    assert proc.returncode == 0, proc.stderr
    assert status(ns, "publish")["used"] == 1


def test_an_agent_after_reset_at_waits_for_the_operators_reset(ns: str, operator, agent_x: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A client may not start windows: before the operator's reset it waits, then is served in the new one."""
    make_quota(ns, "burst", resource="api", limit=2, window="6s")
    agent = as_api(agent_x)
    first = quota_client.consume(agent, ns, "burst", 2)
    assert first.granted and first.reset_at is not None
    monkeypatch.setattr(quota_client, "WINDOW_WAIT", 1.0)
    operator.stop()
    try:
        wait_for(lambda: datetime.now(UTC) > first.reset_at + timedelta(seconds=0.5), timeout=15, interval=0.2)
        late = quota_client.consume(agent, ns, "burst", 1)
        assert not late.granted and late.message.startswith("WindowPending"), late.message
        assert status(ns, "burst")["used"] == 2  # nothing written, window untouched
    finally:
        operator.start()
    monkeypatch.setattr(quota_client, "WINDOW_WAIT", 15.0)
    g = quota_client.consume(agent, ns, "burst", 2)
    assert g.granted, g.message
    assert parse_time(status(ns, "burst")["windowStart"]) >= first.reset_at
    assert status(ns, "burst")["lastReset"]["by"] == "operator"


def test_a_task_costing_on_assigned_is_charged_or_not_assigned(ns: str, operator) -> None:
    make_team(ns)
    make_quota(ns, "seats", resource="seats", limit=4, window="daily", enforcement="Hard")
    wait_for(lambda: kubectl("get", "agents.agentops.dev", "dev-1", "-n", ns, "-o",
                             "jsonpath={.status.readyReplicas}").stdout not in ("", "0"), timeout=60,
             what="agent dev-1 ready")
    for name, amount in (("cheap", 3), ("greedy", 2)):
        apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: {name}, namespace: {ns}}}
spec:
  title: {name}
  assignee: dev-1
  costs: [{{resource: seats, amount: {amount}, phase: Assigned}}]
""")
        if name == "cheap":
            phase_is(ns, name, "Assigned")
    st = status(ns, "seats")
    assert (st["used"], st.get("reserved", 0)) == (3, 0)

    def waiting() -> dict[str, Any] | None:
        t = kget("agenttask", "greedy", ns)
        c = next((c for c in t.get("status", {}).get("conditions", []) if c["type"] == "Assigned"), None)
        return t if c and c["status"] == "False" and c["reason"] == "QuotaExceeded" else None

    t = wait_for(waiting, timeout=30, what="greedy refused at assignment")
    assert t["status"]["phase"] == "Backlog" and not t["status"].get("assignee")
    assert "quota seats" in next(c for c in t["status"]["conditions"] if c["type"] == "Assigned")["message"]
    assert status(ns, "seats")["used"] == 3 and not status(ns, "seats").get("reservations")
    # More budget (an editor raises the limit): the waiting task is assigned and charged once.
    kubectl("patch", "quotas.agentops.dev", "seats", "-n", ns, "--type=merge", "-p", '{"spec":{"limit":5}}')
    phase_is(ns, "greedy", "Assigned", timeout=30)
    assert status(ns, "seats")["used"] == 5


def test_the_chart_ships_the_same_policy() -> None:
    exe = shutil.which("helm") or str(ROOT / ".cluster" / "bin" / "helm")
    out = subprocess.run([exe, "template", "r", str(ROOT / "helm" / "agentops"), "--namespace", "agentops",
                          "--kube-version", "v1.30.0"], capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    vaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
    want = next(d for d in yaml.safe_load_all(POLICY.read_text()) if d["kind"] == "ValidatingAdmissionPolicy")
    assert vaps["r-agentops-quota-status"]["spec"] == want["spec"]
    bindings = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"}
    assert bindings["r-agentops-quota-status"]["spec"] == {"policyName": "r-agentops-quota-status",
                                                           "validationActions": ["Deny"]}
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    operator_role = roles["r-agentops-operator"]
    assert {"apiGroups": ["agentops.dev"], "resources": ["quotas/status"], "verbs": ["reset"]} in operator_role["rules"]
