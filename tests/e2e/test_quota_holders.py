"""A reservation is its maker's: one agent cannot release, commit or squat another's hold.

agent-a reserves units under its own holder (quota_client / worker library); agent-b (same ClusterRole
agentops-agent, which may patch quotas/status) tries to free them for itself, spend them, or
reserve in agent-a's name. Admission policy: manifests/admission/quota-status.yaml
(`status.reservations[].by`); the ledger refuses a holder another identity holds (HolderTaken).
"""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException

from agentops_operator import quota_client

from .kubeutil import kubectl
from .test_quota_attacks import agent_user, as_api, make_quota, patch_status, refused, status

pytestmark = pytest.mark.e2e
FIELD = "status.reservations[].by"


@pytest.fixture
def agents(ns: str) -> tuple[str, str]:
    for name in ("a", "b"):
        kubectl("create", "rolebinding", f"agent-{name}", "--clusterrole=agentops-agent",
                f"--serviceaccount={ns}:agent-{name}", "-n", ns)
    return agent_user(ns, "a"), agent_user(ns, "b")


def test_an_agent_cannot_release_commit_or_take_another_agents_reservation(ns: str, operator,
                                                                            agents: tuple[str, str]) -> None:
    a_user, b_user = agents
    make_quota(ns, "publish", resource="publish", limit=3, window="daily", enforcement="Hard")
    a, b, admin = as_api(a_user), as_api(b_user), as_api(None)

    # agent-a holds 2 of 3 units; its reservation records who made it.
    assert quota_client.reserve(a, ns, "publish", "agent-a/run-1", 2, reason="a's publish").granted
    held = {r["holder"]: r for r in status(ns, "publish")["reservations"]}
    assert held["agent-a/run-1"]["by"] == a_user

    # The attack: agent-b releases agent-a's hold to free the units for itself...
    with pytest.raises(ApiException) as exc:
        quota_client.release(b, ns, "publish", "agent-a/run-1")
    assert exc.value.status in (403, 422) and FIELD in str(exc.value.body), exc.value.body
    assert f"agent-a/run-1 was made by {a_user}" in str(exc.value.body), exc.value.body
    # ...or commits it (spending agent-a's reservation), or drops it with a hand-written patch.
    with pytest.raises(ApiException) as exc:
        quota_client.commit(b, ns, "publish", "agent-a/run-1")
    assert FIELD in str(exc.value.body), exc.value.body
    refused(patch_status(ns, "publish", {"reservations": [], "reserved": 0, "remaining": 3}, b_user), FIELD)
    # Reserving in agent-a's name (so that agent-a appears to hold what b takes) or in no one's name.
    at = status(ns, "publish")["resetAt"]
    forged = [held["agent-a/run-1"], {"holder": "agent-b/x", "amount": 1, "at": at, "by": a_user}]
    refused(patch_status(ns, "publish", {"reservations": forged, "reserved": 3, "remaining": 0}, b_user), FIELD)
    unnamed = [held["agent-a/run-1"], {"holder": "agent-b/x", "amount": 1, "at": at}]
    refused(patch_status(ns, "publish", {"reservations": unnamed, "reserved": 3, "remaining": 0}, b_user), FIELD)
    # Squatting agent-a's holder name is no grant either.
    squat = quota_client.reserve(b, ns, "publish", "agent-a/run-1", 2)
    assert not squat.granted and "HolderTaken" in squat.message, squat.message

    st = status(ns, "publish")
    assert [(r["holder"], r["amount"], r["by"]) for r in st["reservations"]] == [("agent-a/run-1", 2, a_user)]
    assert (st["used"], st["reserved"], st["remaining"]) == (0, 2, 1)

    # What stays allowed: b's own hold; a commits its own (once); the operator/admin may release any.
    assert quota_client.reserve(b, ns, "publish", "agent-b/run-1", 1).granted
    quota_client.commit(a, ns, "publish", "agent-a/run-1")
    assert status(ns, "publish")["used"] == 2
    quota_client.release(admin, ns, "publish", "agent-b/run-1")
    st = status(ns, "publish")
    assert (st["used"], st["reserved"], st.get("reservations") or []) == (2, 0, [])
