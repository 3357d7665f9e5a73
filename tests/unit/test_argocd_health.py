"""Argo CD health checks (manifests/argocd/*.lua) on status samples the operator really wrote.

The samples in tests/unit/argocd_samples/ were captured from the objects of
tests/e2e/test_helm_gitops.py::test_argocd_health_checks_on_live_objects
(AGENTOPS_CAPTURE_ARGOCD_SAMPLES=1), which also runs the same checks on the live objects.
Each case runs under Lua 5.1 (the language of Argo CD's gopher-lua) and Lua 5.4, in a sandbox that
offers only what Argo CD's does.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentops_operator import argocdgen

from . import argocd_lua as harness
from .argocd_lua import ARGOCD, INTERPRETERS, health, load_sample

SAMPLES = Path(__file__).parent / "argocd_samples"

# (kind, sample) -> (Argo CD health, a part of the message)
EXPECTED: dict[tuple[str, str], tuple[str, str]] = {
    ("Agent", "healthy"): ("Healthy", "Healthy"),
    ("Agent", "paused"): ("Suspended", "Paused"),
    ("Agent", "progressing"): ("Progressing", "Progressing"),
    ("Agent", "degraded"): ("Degraded", "ProgressDeadlineExceeded"),
    ("AgentTask", "assigned"): ("Progressing", "Task is Assigned"),
    ("AgentTask", "awaiting-approval"): ("Suspended", "AwaitingApproval"),
    ("AgentTask", "gate-failed"): ("Degraded", "GateFailed: gate tests"),
    ("AgentTask", "cancelled"): ("Healthy", "Task is Cancelled"),
    ("Quota", "ready"): ("Healthy", "used 0 of 5, resets at "),
    ("Quota", "exhausted"): ("Healthy", "Exhausted: used 1 of 1"),
    ("Quota", "invalid-time-zone"): ("Degraded", "InvalidSpec"),
}


def sample(kind: str, name: str) -> dict[str, Any]:
    return load_sample(SAMPLES / kind / f"{name}.json")


def test_every_sample_has_an_expectation_and_back() -> None:
    found = {(p.parent.name, p.stem) for p in SAMPLES.glob("*/*.json")}
    assert found == set(EXPECTED)
    for kind, name in found:
        data = json.loads((SAMPLES / kind / f"{name}.json").read_text())
        assert data["source"].startswith("tests/e2e/test_helm_gitops.py::"), (kind, name)
        assert data["object"]["kind"] == kind and data["object"]["status"], (kind, name)


@pytest.mark.parametrize("lua", INTERPRETERS)
@pytest.mark.parametrize(("kind", "name"), sorted(EXPECTED))
def test_health_of_captured_status(kind: str, name: str, lua: str) -> None:
    want_status, want_text = EXPECTED[(kind, name)]
    status, message = health(kind, sample(kind, name), lua)
    assert status == want_status, message
    assert want_text in message


@pytest.mark.parametrize("lua", INTERPRETERS)
@pytest.mark.parametrize("kind", ["Agent", "AgentTask", "Quota"])
def test_not_yet_reconciled_is_progressing(kind: str, lua: str) -> None:
    healthy = {"Agent": "healthy", "AgentTask": "cancelled", "Quota": "ready"}[kind]
    obj = sample(kind, healthy)
    assert health(kind, obj, lua)[0] == "Healthy"
    new = copy.deepcopy(obj)
    del new["status"]  # just created: the operator has not written status yet
    assert health(kind, new, lua) == ("Progressing", f"Waiting for the operator to report on the {kind}")
    edited = copy.deepcopy(obj)
    edited["metadata"]["generation"] += 1  # a spec change the operator has not observed
    assert health(kind, edited, lua) == ("Progressing", "Waiting for the operator to observe the latest spec")


def test_agent_phases_map_one_to_one() -> None:
    obj = sample("Agent", "healthy")
    for phase, want in {"Pending": "Progressing", "Progressing": "Progressing", "Healthy": "Healthy",
                        "Degraded": "Degraded", "Paused": "Suspended", "SomethingNew": "Unknown"}.items():
        o = copy.deepcopy(obj)
        o["status"]["phase"] = phase
        assert health("Agent", o)[0] == want, phase


def test_task_move_in_flight_is_progressing_and_a_done_task_is_healthy() -> None:
    cancelled = sample("AgentTask", "cancelled")
    for phase in ("Done", "Deployed", "RolledBack"):
        o = copy.deepcopy(cancelled)
        o["status"]["phase"] = phase
        o["spec"]["requestedPhase"] = phase
        assert health("AgentTask", o) == ("Healthy", f"Task is {phase}")
    o = copy.deepcopy(cancelled)
    o["status"]["phase"], o["spec"]["requestedPhase"] = "Done", "Deployed"  # deploy gates still running
    assert health("AgentTask", o) == ("Progressing", "Task is Done, moving to Deployed")
    o = copy.deepcopy(sample("AgentTask", "assigned"))
    o["status"]["conditions"] = [c for c in o["status"]["conditions"] if c["type"] != "Accepted"] + [
        {"type": "Accepted", "status": "False", "reason": "InvalidSpec", "message": "spec.priority: too big"}]
    assert health("AgentTask", o) == ("Degraded", "InvalidSpec: spec.priority: too big")


def test_stale_task_says_so_without_changing_health() -> None:
    stale = {"type": "Stale", "status": "True", "reason": "PhaseTooLong",
             "message": "in Assigned since 2026-01-01T00:00:00Z, longer than the namespace's staleAfter.Assigned of 1h"}
    o = copy.deepcopy(sample("AgentTask", "assigned"))
    o["status"]["conditions"] = [*o["status"]["conditions"], stale]
    status, message = health("AgentTask", o)
    assert status == "Progressing" and message.startswith("Task is Assigned") and "(Stale: in Assigned since" in message
    o["status"]["conditions"][-1] = {**stale, "status": "False", "reason": "WithinThreshold"}
    assert "Stale" not in health("AgentTask", o)[1]
    o = copy.deepcopy(sample("AgentTask", "cancelled"))
    o["status"]["phase"] = o["spec"]["requestedPhase"] = "Done"
    o["status"]["conditions"] = [*o["status"]["conditions"], {**stale, "message": "in Done since x"}]
    assert health("AgentTask", o) == ("Healthy", "Task is Done (Stale: in Done since x)")


def test_scripts_use_only_what_argocd_offers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The sandbox is real: a script reaching for os (absent in Argo CD) fails here too.
    obj = sample("Agent", "healthy")
    (tmp_path / "agentops.dev_Agent.lua").write_text('return {status = os.getenv("HOME")}\n')
    monkeypatch.setattr(harness, "ARGOCD", tmp_path)
    for lua in INTERPRETERS:
        with pytest.raises(AssertionError, match="os"):
            health("Agent", obj, lua)


def test_argocd_cm_snippet_is_generated_from_the_lua_files() -> None:
    assert argocdgen.main(["--check", "--dir", str(ARGOCD)]) == 0, "run `make crds`"
    cm = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"] == {f"resource.customizations.health.agentops.dev_{kind}":
                          (ARGOCD / f"agentops.dev_{kind}.lua").read_text() for kind in ("Agent", "AgentTask", "Quota")}


def test_generator_notices_a_stale_snippet(tmp_path: Path) -> None:
    for lua in ARGOCD.glob("*.lua"):
        (tmp_path / lua.name).write_text(lua.read_text())
    assert argocdgen.main(["--check", "--dir", str(tmp_path)]) == 1  # no snippet yet
    assert argocdgen.main(["--dir", str(tmp_path)]) == 0
    assert argocdgen.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "agentops.dev_Quota.lua").write_text("return {status = 'Healthy'}\n")
    assert argocdgen.main(["--check", "--dir", str(tmp_path)]) == 1
    (tmp_path / "agentops.dev_Quota.lua").unlink()
    with pytest.raises(FileNotFoundError, match="Quota"):
        argocdgen.render(tmp_path)
