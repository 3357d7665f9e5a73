"""The Rollout gate and the undo watch (deploygate), fed by the real rollout planner.

The Agent statuses come from the planner itself (``Sim`` of test_rollout runs ``rollout.step``),
turned into ``AgentStatus`` the way handlers/agent.py writes it, so the gate is judged against what
an Agent really reports at each step -- not against hand-made statuses.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentops_operator import deploygate as dg
from agentops_operator.conditions import set_condition
from agentops_operator.models.agent import AgentStatus
from agentops_operator.models.task import DeployRef, Gate
from agentops_operator.rollout import (
    AnalysisStep,
    PauseStep,
    Plan,
    RevisionRecord,
    RolloutPhase,
    SetWeightStep,
    Verb,
)

from .test_rollout import BAD, OK, T0, Sim, analysis, canary, degraded, healthy_on

IMAGES = {"old": "reg/coder:1.0", "new": "reg/coder:1.1", "newer": "reg/coder:1.2"}


def revisions(*numbered: tuple[str, int], config: dict[str, str] | None = None) -> list[dg.RevisionInfo]:
    return [dg.RevisionInfo(r, n, IMAGES[r], None, config or {}) for r, n in numbered]


def status_of(p: Plan) -> AgentStatus:
    """What handlers/agent.py writes for a plan (the fields the gate reads)."""
    conditions: list[dict[str, Any]] = []
    for c in p.conditions:
        conditions = set_condition(conditions, c.type, c.status, c.reason, c.message, 1, T0)
    return AgentStatus.model_validate({
        **p.state.status(), "phase": p.phase.value, "reason": p.reason, "message": p.message,
        "desiredRevision": p.desired_revision, "currentRevision": p.target_revision,
        "currentStep": p.current_step or None, "currentStepIndex": p.step_index, "stepCount": p.step_count or None,
        "canaryWeight": p.canary_weight, "conditions": conditions,
    })


REF = DeployRef(agent="coder", image=IMAGES["new"])
REVS = revisions(("old", 1), ("new", 2))


def gate(p: Plan, ref: DeployRef = REF, revs: list[dg.RevisionInfo] = REVS) -> dg.GateView:
    return dg.evaluate("coder", ref, status_of(p), revs)


def test_runs_with_step_weight_and_analysis_then_passes_when_stable_and_healthy() -> None:
    sim = Sim(canary(SetWeightStep(25), AnalysisStep(analysis(count=2)), SetWeightStep(50), PauseStep(3)))
    seen: list[dg.GateView] = []
    sim.run(lambda p: (seen.append(gate(p)), healthy_on("new")(p))[1])
    assert seen[-1].state == "Passed" and seen[-1].rollout.revision == "new"
    running = [v for v in seen if v.state == "Running"]
    assert running and all(v.rollout.revision == "new" for v in running)
    assert {v.rollout.weight for v in running} >= {25, 50}
    assert any(v.rollout.step == "analysis m" and v.rollout.analysis for v in running)
    assert any("weight 50%" in v.rollout.summary for v in running)
    # Never passed before the Agent made the revision stable and was Healthy (the last plan).
    assert [v.state for v in seen].index("Passed") == len(seen) - 1


def test_failed_analysis_fails_the_gate_with_the_rollouts_reason() -> None:
    sim = Sim(canary(SetWeightStep(50), AnalysisStep(analysis()), SetWeightStep(100)), analyse=lambda r, m: BAD)
    p = sim.run(degraded)
    view = gate(p)
    assert view.state == "Failed" and view.rollout.reason == "AnalysisFailed"
    assert "AnalysisFailed" in view.message and "serving old" in view.message
    assert view.rollout.summary == "rolled back: AnalysisFailed"
    # Still failed while the Agent keeps serving the stable revision.
    assert gate(sim.tick()).state == "Failed"


def test_abort_and_deadline_fail_the_gate() -> None:
    sim = Sim(canary(SetWeightStep(50), PauseStep()))
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    sim.command(Verb.ABORT, "a1")
    assert gate(sim.tick()).rollout.reason == "AbortedByUser"
    stuck = Sim(canary(SetWeightStep(50), PauseStep(), deadline=5), healthy=lambda r: r != "new")
    view = gate(stuck.run(degraded))
    assert view.state == "Failed" and view.rollout.reason == "ProgressDeadlineExceeded"


def test_unrelated_rollouts_are_ignored() -> None:
    # The task deploys the stable image while another revision rolls out, or fails: served, passes.
    sim = Sim(canary(SetWeightStep(50), PauseStep()))
    p = sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    old_ref = DeployRef(agent="coder", image=IMAGES["old"])
    assert gate(p, old_ref).state == "Passed"
    sim.command(Verb.ABORT, "a1")
    assert gate(sim.tick(), old_ref).state == "Passed"
    # An image the Agent has never been asked for: pending, saying what the spec asks for now.
    view = gate(p, DeployRef(agent="coder", image="reg/coder:9"))
    assert view.state == "Pending" and IMAGES["new"] in view.message


def test_config_and_version_tell_revisions_apart() -> None:
    sim = Sim(canary(SetWeightStep(50)))
    p = sim.run(healthy_on("new"))
    revs = [dg.RevisionInfo("old", 1, IMAGES["new"], "1", {"model": "a"}),
            dg.RevisionInfo("new", 2, IMAGES["new"], "2", {"model": "b"})]
    assert gate(p, DeployRef(agent="coder", image=IMAGES["new"], config={"model": "b"}), revs).state == "Passed"
    assert gate(p, DeployRef(agent="coder", version="2"), revs).state == "Passed"
    assert gate(p, DeployRef(agent="coder", image=IMAGES["new"], config={"model": "a"}), revs).state == "Pending"
    assert gate(p, DeployRef(agent="coder", version="1"), revs).state == "Pending"


def test_missing_agent_is_pending_and_names_the_field() -> None:
    view = dg.evaluate("ghost", REF, None, [])
    assert view.state == "Pending" and view.message.startswith("spec.deploy.agent: Agent ghost not found")


def test_revision_info_from_a_controller_revision() -> None:
    cr = {"metadata": {"labels": {"agentops.dev/revision": "abc"}}, "revision": 3,
          "data": {"template": {"metadata": {"labels": {"app.kubernetes.io/version": "1.2"}},
                                "spec": {"containers": [{"image": "reg/x:1"}]}}, "config": {"k": "v"}}}
    assert dg.revision_info(cr) == dg.RevisionInfo("abc", 3, "reg/x:1", "1.2", {"k": "v"})
    assert dg.revision_info({"metadata": {}}) is None


def test_implicit_gate_and_missing_inputs() -> None:
    job = Gate(name="deploy", type="Job")
    gates = dg.with_rollout_gate(dg.DEPLOY_KEY, REF, [job])
    assert [g.type for g in gates] == ["Job", "Rollout"]
    assert dg.with_rollout_gate("Review->Done", REF, [job]) == [job]
    assert dg.with_rollout_gate(dg.DEPLOY_KEY, DeployRef(image="x"), [job]) == [job]
    declared = [Gate(name="r", type="Rollout")]
    assert dg.with_rollout_gate(dg.DEPLOY_KEY, REF, declared) == declared
    assert dg.missing_inputs(DeployRef(image="x"), declared) == ["spec.deploy.agent"]
    assert dg.missing_inputs(None, declared) == ["spec.deploy.agent", "spec.deploy.version or spec.deploy.image"]
    assert dg.missing_inputs(REF, declared) == [] and dg.missing_inputs(None, [job]) == []


# ---- after Deployed ---------------------------------------------------------------------------


def history_with(revision: str, agent: str = "coder") -> list[dict[str, Any]]:
    return [{"from": "Review", "to": "Done"},
            {"from": "Done", "to": "Deployed", "gates": [
                {"name": "deploy", "type": "Job", "state": "Passed"},
                {"name": "rollout", "type": "Rollout", "state": "Passed",
                 "rollout": {"agent": agent, "revision": revision}}]}]


def test_deployed_through_reads_the_rollout_gate_of_the_move_into_deployed() -> None:
    assert dg.deployed_through(history_with("new")) == dg.DeployedThrough("coder", "new")
    assert dg.deployed_through(history_with("new")[:1]) is None
    assert dg.deployed_through([{"to": "Deployed", "gates": [{"type": "Job", "state": "Passed"}]}]) is None


def test_undo_after_deployed_is_seen_with_the_agents_reason() -> None:
    history = (RevisionRecord(1, "old"), RevisionRecord(2, "new"))
    sim = Sim(canary(SetWeightStep(50)), history=history)
    p = sim.run(healthy_on("new"))
    through = dg.DeployedThrough("coder", "new")
    assert dg.undone(through, status_of(p), REVS) is None
    sim.command(Verb.UNDO, "u1")
    p = sim.tick()
    gone = dg.undone(through, status_of(p), REVS)
    assert gone is not None and gone.reason == "UndoneByUser" and "serving old" in gone.message
    p = sim.run(lambda p: p.phase is RolloutPhase.HEALTHY)
    gone = dg.undone(through, status_of(p), REVS)
    assert gone is not None and gone.reason == "UndoneByUser" and "serving old" in gone.message
    # The task of the revision served again (old) is not touched.
    assert dg.undone(dg.DeployedThrough("coder", "old"), status_of(p), REVS) is None


def test_a_newer_revision_superseding_is_not_a_rollback() -> None:
    history = (RevisionRecord(1, "old"), RevisionRecord(2, "new"))
    sim = Sim(canary(SetWeightStep(50)), history=history)
    sim.run(healthy_on("new"))
    sim.desired, sim.history = "newer", (*history, RevisionRecord(3, "newer"))
    revs = revisions(("old", 1), ("new", 2), ("newer", 3))
    p = sim.run(healthy_on("newer"))
    assert dg.undone(dg.DeployedThrough("coder", "new"), status_of(p), revs) is None
    # ... and a failed rollout of the newer one leaves "new" served: no rollback of "new".
    sim2 = Sim(canary(SetWeightStep(50), AnalysisStep(analysis())), stable="new", desired="newer",
               analyse=lambda r, m: BAD, history=(*history, RevisionRecord(3, "newer")))
    p = sim2.run(degraded)
    assert dg.undone(dg.DeployedThrough("coder", "new"), status_of(p), revs) is None
    assert dg.undone(dg.DeployedThrough("coder", "new"), None, revs) is None
    # Now undo while "newer" is rejected: the Agent goes back from the stable "new" to "old".
    sim2.command(Verb.UNDO, "u1")
    p = sim2.tick()
    gone = dg.undone(dg.DeployedThrough("coder", "new"), status_of(p), revs)
    assert gone is not None and gone.reason == "UndoneByUser" and "to old" in gone.message
    assert dg.undone(dg.DeployedThrough("coder", "new"), status_of(sim2.run(healthy_on_stable("old"))), revs)


def healthy_on_stable(rev: str) -> Any:
    return lambda p: p.phase is RolloutPhase.HEALTHY and p.state.stable_revision == rev


# ---- properties ----------------------------------------------------------------------------------

ACTIONS = st.lists(st.sampled_from(["tick", "tick", "tick", "abort", "retry", "undo", "promote", "bad", "ok"]),
                   max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS)
def test_gate_and_watch_agree_with_what_the_agent_serves(actions: list[str]) -> None:
    """Whatever users and analyses do: Passed only while the task's revision is stable; Failed only
    when the Agent rejected it; an undo is reported only when the revision is no longer stable."""
    verdicts = {"v": OK}
    sim = Sim(canary(SetWeightStep(50), AnalysisStep(analysis()), PauseStep()),
              history=(RevisionRecord(1, "old"), RevisionRecord(2, "new")),
              analyse=lambda r, m: verdicts["v"])
    through = dg.DeployedThrough("coder", "new")
    for i, action in enumerate(actions):
        if action in ("bad", "ok"):
            verdicts["v"] = BAD if action == "bad" else OK
        elif action != "tick":
            sim.command(Verb(action), f"c{i}")
        p = sim.tick()
        s = status_of(p)
        view = dg.evaluate("coder", REF, s, REVS)
        if view.state == "Passed":
            assert s.stable_revision == "new" and view.rollout.revision == "new"
        if view.state == "Failed":
            assert s.rollout.rejected_revision == "new" and s.rollout.reason
        if view.state == "Running":
            assert "new" in (s.rollout.current_revision, s.desired_revision)
        gone = dg.undone(through, s, REVS)
        if gone is not None:  # rejected by the Agent, or no longer the stable revision
            assert s.rollout.rejected_revision == "new" or s.stable_revision != "new"
        elif s.rollout.rejected_revision == "new" and s.rollout.reason:
            raise AssertionError("the Agent rejected the deployed revision and the watch missed it")
