"""Tasks consume Quota: reserved when the gated move starts, committed on success, released otherwise."""

from __future__ import annotations

import pytest

from .kubeutil import apply, kget, wait_for
from .taskutil import EDITOR, blocked, cli, phase_is, task

NO_GATES_UNTIL_DONE = """  gates:
  - {transition: InProgress->Review, gates: []}
  - {transition: Review->Done, gates: []}
  - transition: Done->Deployed
    gates:
    - name: deploy
      type: Job
      requires: [deployRef]
      job: {podAnnotations: {%s}}
  costs:
  - {resource: publish, amount: 1, phase: Deployed}
"""

pytestmark = pytest.mark.kwok  # delayed, failing and fake-image pods


def to_done(ns: str, name: str, annotations: str) -> None:
    task(ns, name, NO_GATES_UNTIL_DONE % annotations)
    phase_is(ns, name, "Assigned")
    for step in ("InProgress", "Review", "Done"):
        cli(ns, "task", "move", name, step, "--output", "pr/1", as_user=EDITOR)
        phase_is(ns, name, step)


def quota(ns: str) -> dict:
    return kget("quotas.agentops.dev", "publish", ns)["status"]


def test_reserve_commit_release_and_resume_after_reset(team: str, operator) -> None:
    ns = team
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: publish, namespace: {ns}}}
spec: {{resource: publish, limit: 1, window: 40s, enforcement: Hard}}
""")
    wait_for(lambda: kget("quotas.agentops.dev", "publish", ns).get("status", {}).get("resetAt"), what="quota")
    to_done(ns, "a", '"agentops.dev/kwok-delay": "4s"')
    to_done(ns, "b", "")
    cli(ns, "task", "move", "a", "Deployed", "--deploy-version", "1.0", as_user=EDITOR)
    # a's deploy gate runs for 4 s holding the only unit: b cannot squeeze through.
    wait_for(lambda: quota(ns).get("reserved") == 1, timeout=30, what="a's reservation")
    cli(ns, "task", "move", "b", "Deployed", "--deploy-version", "1.0", as_user=EDITOR)
    cond = blocked(ns, "b", "QuotaExceeded")
    assert "resets at" in cond["message"] or "reset" in cond["message"]
    phase_is(ns, "a", "Deployed", timeout=60)
    st = quota(ns)
    assert st["used"] == 1 and st.get("reserved", 0) == 0
    # b was still requested: after the window resets it proceeds by itself.
    t = phase_is(ns, "b", "Deployed", timeout=90)
    assert t["status"]["history"][-1]["to"] == "Deployed"
    assert quota(ns)["used"] == 1  # b's unit, in the new window


def test_failed_gate_and_cancel_release_the_reservation(team: str, operator) -> None:
    ns = team
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: publish, namespace: {ns}}}
spec: {{resource: publish, limit: 5, window: daily}}
""")
    wait_for(lambda: kget("quotas.agentops.dev", "publish", ns).get("status", {}).get("resetAt"), what="quota")
    to_done(ns, "f", '"agentops.dev/kwok-fail": "true"')
    cli(ns, "task", "move", "f", "Deployed", "--deploy-version", "2.0", as_user=EDITOR)
    blocked(ns, "f", "GateFailed", timeout=60)
    wait_for(lambda: quota(ns).get("reserved", 0) == 0 and not quota(ns).get("reservations"), timeout=30,
             what="release after failure")
    assert quota(ns)["used"] == 0
    to_done(ns, "c", '"agentops.dev/kwok-delay": "30s"')
    cli(ns, "task", "move", "c", "Deployed", "--deploy-version", "2.0", as_user=EDITOR)
    wait_for(lambda: quota(ns).get("reserved") == 1, timeout=30, what="c's reservation")
    cli(ns, "task", "cancel", "c", as_user=EDITOR)
    phase_is(ns, "c", "Cancelled")
    wait_for(lambda: quota(ns).get("reserved", 0) == 0, timeout=30, what="release after cancel")
    assert quota(ns)["used"] == 0
