"""The namespace gate-image allow-list (gateimages): which field a refusal names."""

from __future__ import annotations

from typing import Any

from agentops_operator import gateimages
from agentops_operator.models.task import AgentTaskSpec, Gate, JobGateSpec
from agentops_operator.taskflow import resolve_gates


def cm(name: str, allowed: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": {} if allowed is None else {"allowedImages": allowed}}


def spec(**kw: Any) -> AgentTaskSpec:
    return AgentTaskSpec.model_validate({"title": "t", **kw})


def test_no_list_restricts_nothing_and_comments_are_ignored() -> None:
    gates = [Gate(name="g", type="Job", job=JobGateSpec(image="evil/x:1"))]
    assert gateimages.refusal(spec(), "InProgress->Review", gates, [cm("p", None)]) is None
    assert gateimages.allow_lists([cm("b", "# ci\n a/ \n\n"), cm("a", "")]) == [("a", []), ("b", ["a/"])]


def test_a_task_gate_is_named_by_its_index_and_every_list_must_allow_it() -> None:
    s = spec(gates=[{"transition": "Review->Done", "gates": []},
                    {"transition": "InProgress->Review", "gates": [
                        {"name": "ok", "type": "Job", "job": {"image": "ci/ok:1"}},
                        {"name": "bad", "type": "Job", "job": {"image": "ci/bad:1"}}]}])
    gates = resolve_gates("InProgress->Review", s.gates, None)
    lists = [cm("a", "ci/"), cm("b", "ci/ok")]
    msg = gateimages.refusal(s, "InProgress->Review", gates, lists)
    assert msg is not None and msg.startswith("spec.gates[1].gates[1].job.image: image ci/bad:1 is not allowed")
    assert "ConfigMap b" in msg
    assert gateimages.refusal(s, "InProgress->Review", gates[:1], lists) is None


def test_a_deploy_command_is_named_when_its_gate_image_is_not_allowed() -> None:
    s = spec(deploy={"version": "1", "command": ["deploy.sh"]})
    gates = resolve_gates("Done->Deployed", s.gates, None)  # the default deploy gate (busybox)
    msg = gateimages.refusal(s, "Done->Deployed", gates, [cm("p", "registry.example/")])
    assert msg is not None and msg.startswith("spec.deploy.command (runs in gate deploy of Done->Deployed"), msg
    assert "busybox:1.36" in msg
