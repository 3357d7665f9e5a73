"""GitOps beside the chart: Argo CD's health checks (manifests/argocd) on objects the operator really
reconciled, and `kubectl agentops quota set` refusing to write a spec that GitOps owns.

With AGENTOPS_CAPTURE_ARGOCD_SAMPLES=1 the health test also writes the objects it judged to
tests/unit/argocd_samples/, the samples the unit tests (tests/unit/test_argocd_health.py) run on.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from agentops_operator import quota_client

from ..unit.argocd_lua import INTERPRETERS, health
from .agentutil import NOT_READY, create_agent, get_agent, patch_spec, wait_agent
from .kubeutil import ROOT, apply, kget, kubectl, wait_for
from .taskutil import EDITOR, blocked, cli, phase_is, task

SAMPLES = ROOT / "tests" / "unit" / "argocd_samples"
QUOTAS = "quotas.agentops.dev"


def quota_cli(ns: str, *args: str) -> Any:
    return cli(ns, "quota", *args, check=False)


def sample(obj: dict[str, Any]) -> dict[str, Any]:
    """What a health check reads, without the volatile or identifying metadata."""
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {"name": meta["name"], "generation": meta["generation"]},
            "spec": obj.get("spec") or {}, "status": obj.get("status") or {}}


def move(ns: str, name: str, phase: str, **extra: str) -> None:
    """What `kubectl agentops task move` sends (a CLI process costs seconds on a busy machine)."""
    spec = {"requestedPhase": phase, "by": EDITOR, **extra}
    kubectl("patch", "agenttask", name, "-n", ns, "--type=merge", "-p", json.dumps({"spec": spec}), as_user=EDITOR)


def judge(kind: str, name: str, obj: dict[str, Any], want: str, source: str) -> str:
    results = {lua: health(kind, obj, lua) for lua in INTERPRETERS}
    assert len(set(results.values())) == 1, results  # Lua 5.1 (as gopher-lua) and 5.4 agree
    status, message = results[INTERPRETERS[0]]
    assert status == want, (kind, name, status, message, obj.get("status"))
    if os.environ.get("AGENTOPS_CAPTURE_ARGOCD_SAMPLES") == "1":
        path = SAMPLES / kind / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"source": source, "object": sample(obj)}, indent=2, sort_keys=True) + "\n")
    return message


def _quota(ns: str, name: str, **spec: Any) -> None:
    apply(json.dumps({"apiVersion": "agentops.dev/v1alpha1", "kind": "Quota",
                      "metadata": {"name": name, "namespace": ns}, "spec": spec}))


def _quota_ready(ns: str, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        q = kget(QUOTAS, name, ns)
        st = q.get("status") or {}
        if st.get("observedGeneration") == q["metadata"]["generation"] and any(
                c["type"] == "Ready" for c in st.get("conditions") or []):
            return q
        return None

    return wait_for(ready, timeout=30, what=f"quota {name} reconciled")


@pytest.mark.kwok  # gate Jobs and agent pods run through kwok's stages
def test_argocd_health_checks_on_live_objects(team: str, operator) -> None:
    ns = team
    src = "tests/e2e/test_helm_gitops.py::test_argocd_health_checks_on_live_objects"

    # Quotas: fine, exhausted (still Healthy, said in the message), invalid (Degraded).
    _quota(ns, "q-ok", resource="api", limit=5)
    _quota(ns, "q-exhausted", resource="publish", limit=1)
    _quota(ns, "q-invalid", resource="tokens", limit=5, timeZone="Mars/Olympus_Mons")
    judge("Quota", "ready", _quota_ready(ns, "q-ok"), "Healthy", src)
    _quota_ready(ns, "q-exhausted")
    assert quota_client.use("q-exhausted", 1, namespace=ns, by="test").granted
    exhausted = wait_for(lambda: (q := kget(QUOTAS, "q-exhausted", ns)) and any(
        c["type"] == "Exhausted" and c["status"] == "True" for c in q["status"].get("conditions") or []) and q,
        timeout=30, what="quota exhausted")
    assert judge("Quota", "exhausted", exhausted, "Healthy", src).startswith("Exhausted: used 1 of 1")
    assert "Mars" in judge("Quota", "invalid-time-zone", _quota_ready(ns, "q-invalid"), "Degraded", src)

    # AgentTasks: assigned (Progressing), awaiting approval (Suspended), gate failed (Degraded),
    # cancelled (Healthy).
    task(ns, "t-open")
    judge("AgentTask", "assigned", phase_is(ns, "t-open", "Assigned"), "Progressing", src)
    task(ns, "t-review")  # the default policy: a Job gate into Review, one approval into Done
    phase_is(ns, "t-review", "Assigned")
    move(ns, "t-review", "InProgress")
    phase_is(ns, "t-review", "InProgress")
    move(ns, "t-review", "Review", output="https://git.example/pr/1")
    phase_is(ns, "t-review", "Review", timeout=90)
    move(ns, "t-review", "Done")
    blocked(ns, "t-review", "AwaitingApproval")
    judge("AgentTask", "awaiting-approval", kget("agenttask", "t-review", ns), "Suspended", src)
    task(ns, "t-fail", """  gates:
  - transition: InProgress->Review
    gates:
    - name: tests
      type: Job
      job:
        podAnnotations: {agentops.dev/kwok-fail: "true", agentops.dev/kwok-fail-message: "3 tests failed"}
""")
    phase_is(ns, "t-fail", "Assigned")
    move(ns, "t-fail", "InProgress")
    phase_is(ns, "t-fail", "InProgress")
    move(ns, "t-fail", "Review", output="pr/2")
    blocked(ns, "t-fail", "GateFailed", timeout=90)
    assert "3 tests failed" in judge("AgentTask", "gate-failed", kget("agenttask", "t-fail", ns), "Degraded", src)
    move(ns, "t-open", "Cancelled")
    judge("AgentTask", "cancelled", phase_is(ns, "t-open", "Cancelled"), "Healthy", src)

    # Agents: Healthy, Paused (Suspended), a rollout in progress, and Degraded after a missed deadline.
    judge("Agent", "healthy", create_agent(ns, "steady", {"type": "rolling"}, replicas=1), "Healthy", src)
    create_agent(ns, "canary", {"type": "canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
                 replicas=2)
    patch_spec(ns, "canary", {"image": "registry.example/agents/coder:2"})
    judge("Agent", "paused", wait_agent(ns, "canary", lambda a: a["status"].get("phase") == "Paused"),
          "Suspended", src)
    create_agent(ns, "slow", {"type": "rolling", "progressDeadlineSeconds": 600}, replicas=1)
    patch_spec(ns, "slow", {"image": "registry.example/agents/coder:hang", "podAnnotations": NOT_READY})
    judge("Agent", "progressing", wait_agent(
        ns, "slow", lambda a: a["status"].get("phase") == "Progressing"
        and a["status"].get("observedGeneration") == a["metadata"]["generation"]), "Progressing", src)
    # The same rollout with a deadline it has already missed: rolled back, Degraded.
    patch_spec(ns, "slow", {"strategy": {"type": "rolling", "progressDeadlineSeconds": 1}})
    degraded = wait_agent(ns, "slow", lambda a: a["status"].get("phase") == "Degraded", timeout=60)
    assert "ProgressDeadlineExceeded" in judge("Agent", "degraded", degraded, "Degraded", src)
    # A spec change the operator has not observed yet is Progressing, whatever the phase says.
    stale = get_agent(ns, "steady")
    stale["metadata"]["generation"] += 1
    assert health("Agent", stale)[0] == "Progressing"


def _spec_managers(ns: str, name: str) -> dict[str, set[str]]:
    """Field manager -> the spec fields it owns (kubectl hides managedFields unless asked)."""
    obj = json.loads(kubectl("get", QUOTAS, name, "-n", ns, "--show-managed-fields", "-o", "json").stdout)
    out: dict[str, set[str]] = {}
    for entry in obj["metadata"]["managedFields"]:
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if spec:
            out.setdefault(entry["manager"], set()).update(k.removeprefix("f:") for k in spec)
    return out


def test_quota_set_refuses_a_spec_gitops_owns_unless_forced(ns: str) -> None:
    manifest = json.dumps({"apiVersion": "agentops.dev/v1alpha1", "kind": "Quota",
                           "metadata": {"name": "deploys", "namespace": ns},
                           "spec": {"resource": "deploys", "limit": 5, "window": "daily"}})
    kubectl("apply", "--server-side", "--field-manager=argocd-controller", "-f", "-", input=manifest)

    r = quota_cli(ns, "set", "deploys", "--limit", "9")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # one clear line, no traceback
    assert "argocd-controller" in lines[0] and "spec.limit" in lines[0] and "--force" in lines[0], lines[0]
    assert kget(QUOTAS, "deploys", ns)["spec"]["limit"] == 5  # nothing written

    r = quota_cli(ns, "set", "deploys", "--limit", "9", "--force")
    assert r.returncode == 0, r.stderr
    assert "over spec fields managed by argocd-controller" in r.stdout
    assert kget(QUOTAS, "deploys", ns)["spec"]["limit"] == 9
    managers = _spec_managers(ns, "deploys")
    assert "limit" in managers["kubectl-agentops"] and "limit" not in managers["argocd-controller"]
    # The next sync puts Git's value back (Argo CD applies with force): GitOps stays the source of truth.
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=argocd-controller", "-f", "-",
            input=manifest)
    assert kget(QUOTAS, "deploys", ns)["spec"]["limit"] == 5

    # A Quota that `quota set` created is its own: changing it needs no --force.
    assert quota_cli(ns, "set", "mine", "--limit", "2").returncode == 0
    assert set(_spec_managers(ns, "mine")) == {"kubectl-agentops"}
    r = quota_cli(ns, "set", "mine", "--limit", "3")
    assert r.returncode == 0 and "over spec fields" not in r.stdout, r.stderr
    assert kget(QUOTAS, "mine", ns)["spec"]["limit"] == 3

