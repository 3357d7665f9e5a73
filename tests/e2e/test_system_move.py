"""Moves the operator makes itself (status.systemRequest): carried out like a user's move, recorded
with who and why, one per key, and the user's stale request is not reported as an illegal move."""

from __future__ import annotations

from agentops_operator import kube
from agentops_operator.handlers.systemmove import request_system_move

from .kubeutil import kget, kubectl, wait_for
from .taskutil import EDITOR, cli, events, phase_is, task

NO_GATES = """  gates:
  - {transition: "InProgress->Review", gates: []}
  - {transition: "Review->Done", gates: []}
  - {transition: "Done->Deployed", gates: []}
"""


def _deployed(ns: str, name: str) -> None:
    task(ns, name, NO_GATES)
    phase_is(ns, name, "Assigned")
    for phase in ("InProgress", "Review", "Done", "Deployed"):
        cli(ns, "task", "move", name, phase, as_user=EDITOR)
        phase_is(ns, name, phase)


def test_system_rollback_is_recorded_once_per_key(team: str, operator) -> None:
    ns = team
    kube.load_config()
    _deployed(ns, "s1")
    assert request_system_move(ns, "s1", "RolledBack", by="alertmanager", reason="HighErrorRate: 5xx > 5%",
                               key="fp-1") == "requested"
    t = phase_is(ns, "s1", "RolledBack")
    last = t["status"]["history"][-1]
    assert (last["from"], last["to"], last["by"], last["key"]) == ("Deployed", "RolledBack", "alertmanager", "fp-1")
    assert last["reason"] == "HighErrorRate: 5xx > 5%"
    assert "systemRequest" not in t["status"]
    # The same alert again, or any later one: nothing more happens.
    assert request_system_move(ns, "s1", "RolledBack", by="alertmanager", reason="again", key="fp-1") == "duplicate"
    assert request_system_move(ns, "s1", "RolledBack", by="alertmanager", reason="x", key="fp-2").startswith(
        "refused: cannot move from RolledBack")
    # spec.requestedPhase still says Deployed: that is history, not a blocked move.
    assert kget("agenttask", "s1", ns)["spec"]["requestedPhase"] == "Deployed"
    wait_for(lambda: kget("agenttask", "s1", ns)["status"].get("observedGeneration") is not None, timeout=10)
    conds = {c["type"]: c for c in kget("agenttask", "s1", ns)["status"]["conditions"]}
    assert conds.get("TransitionBlocked", {}).get("status") != "True", conds
    reasons = wait_for(lambda: (r := [e["message"] for e in events(ns, "s1") if e["reason"] == "Transitioned"])
                       and any("RolledBack" in m for m in r) and r, timeout=15, what="the Transitioned event")
    assert sum("Deployed -> RolledBack by alertmanager" in m and "HighErrorRate" in m for m in reasons) == 1


def test_system_move_illegal_or_missing_is_refused_and_writes_nothing(team: str, operator) -> None:
    ns = team
    kube.load_config()
    task(ns, "s2", NO_GATES)
    t = phase_is(ns, "s2", "Assigned")
    rv = t["metadata"]["resourceVersion"]
    assert request_system_move(ns, "s2", "RolledBack", by="alertmanager", reason="r", key="k").startswith(
        "refused: cannot move from Assigned")
    assert request_system_move(ns, "nope", "RolledBack", by="alertmanager", reason="r", key="k") == \
        "refused: task not found"
    assert kget("agenttask", "s2", ns)["metadata"]["resourceVersion"] == rv
    # A request written straight into status that the phase does not allow is dropped with a Warning.
    kubectl("patch", "agenttask", "s2", "-n", ns, "--subresource=status", "--type=merge", "-p",
            '{"status":{"systemRequest":{"phase":"Deployed","by":"x","key":"k2","reason":"r"}}}')
    wait_for(lambda: "systemRequest" not in kget("agenttask", "s2", ns)["status"], timeout=15,
             what="the refused request to be cleared")
    assert any(e["reason"] == "SystemMoveRefused" for e in events(ns, "s2"))
    assert kget("agenttask", "s2", ns)["status"]["phase"] == "Assigned"
