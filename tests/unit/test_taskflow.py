"""Pure AgentTask decisions in taskflow: gate policy, Job attempts, approvals, pipeline stages, assignment.

Examples pin the documented behaviour; hypothesis properties check the invariants the handlers rely on
(capacity, readiness, role/capabilities, priority and age order, determinism, every task accounted for).
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentops_operator.lifecycle import Phase, transition_key
from agentops_operator.models.task import (
    ApprovalGateSpec,
    Approvers,
    Gate,
    JobGateSpec,
    Stage,
    TransitionGates,
)
from agentops_operator.taskflow import (
    ACTIVE_PHASES,
    DEFAULT_POLICY,
    AgentView,
    ApprovalView,
    AssignmentPlan,
    TaskView,
    allowed_approver,
    decide_attempt,
    evaluate_approvals,
    job_state,
    pick_agent,
    plan_assignments,
    resolve_gates,
    stage_for,
)

P = Phase
TO_REVIEW = transition_key(P.IN_PROGRESS, P.REVIEW)
TO_DONE = transition_key(P.REVIEW, P.DONE)
TO_DEPLOYED = transition_key(P.DONE, P.DEPLOYED)
TO_ASSIGNED = transition_key(P.BACKLOG, P.ASSIGNED)


# ==== resolve_gates =============================================================================


def job_gate(name: str) -> Gate:
    return Gate(name=name, type="Job", job=JobGateSpec(command=["true"]))


def tg(key: str, *gates: Gate) -> TransitionGates:
    return TransitionGates(transition=key, gates=list(gates))


def test_default_policy_deliverable_gate() -> None:
    gates = resolve_gates(TO_REVIEW, None)
    assert [(g.name, g.type, g.requires) for g in gates] == [("deliverable", "Job", ["output"])]
    assert gates[0].job is not None
    assert gates[0].job.command == ["sh", "-c", 'test -n "$AGENTOPS_OUTPUT"']


def test_default_policy_one_human_approval_for_done() -> None:
    gates = resolve_gates(TO_DONE, None)
    assert [(g.name, g.type) for g in gates] == [("approval", "Approval")]
    assert gates[0].approval is not None
    assert gates[0].approval.required == 1
    assert gates[0].approval.timeout_seconds is None


def test_default_policy_deploy_gate_needs_deploy_ref() -> None:
    gates = resolve_gates(TO_DEPLOYED, None)
    assert [(g.name, g.type, g.requires) for g in gates] == [("deploy", "Job", ["deployRef"])]


@pytest.mark.parametrize(
    "key",
    [TO_ASSIGNED, transition_key(P.ASSIGNED, P.IN_PROGRESS), transition_key(P.REVIEW, P.REJECTED),
     transition_key(P.REJECTED, P.IN_PROGRESS), transition_key(P.BACKLOG, P.CANCELLED),
     transition_key(P.DEPLOYED, P.ROLLED_BACK)],
)
def test_moves_without_default_gates(key) -> None:
    assert resolve_gates(key, None) == []
    assert resolve_gates(key, [], []) == []


def test_task_override_beats_namespace_and_default() -> None:
    task = [tg(TO_DONE, job_gate("lint"))]
    ns = [tg(TO_DONE, job_gate("ns-check"))]
    assert [g.name for g in resolve_gates(TO_DONE, task, ns)] == ["lint"]


def test_namespace_policy_beats_default_when_task_is_silent() -> None:
    task = [tg(TO_REVIEW, job_gate("lint"))]  # a different move
    ns = [tg(TO_DONE, job_gate("ns-check"))]
    assert [g.name for g in resolve_gates(TO_DONE, task, ns)] == ["ns-check"]


def test_override_of_another_move_leaves_default() -> None:
    assert [g.name for g in resolve_gates(TO_DONE, [tg(TO_REVIEW)], [tg(TO_DEPLOYED)])] == ["approval"]


def test_entry_with_no_gates_removes_the_gates() -> None:
    assert resolve_gates(TO_DONE, [tg(TO_DONE)]) == []
    assert resolve_gates(TO_DONE, None, [tg(TO_DONE)]) == []
    # The task's empty entry also beats a namespace entry that has gates.
    assert resolve_gates(TO_DONE, [tg(TO_DONE)], [tg(TO_DONE, job_gate("ns-check"))]) == []


def test_task_entry_with_gates_beats_namespace_removal() -> None:
    assert [g.name for g in resolve_gates(TO_DONE, [tg(TO_DONE, job_gate("x"))], [tg(TO_DONE)])] == ["x"]


def test_first_entry_for_a_move_wins() -> None:
    task = [tg(TO_DONE, job_gate("first")), tg(TO_DONE, job_gate("second"))]
    assert [g.name for g in resolve_gates(TO_DONE, task)] == ["first"]


def test_gate_order_is_kept() -> None:
    task = [tg(TO_DONE, job_gate("c"), job_gate("a"), job_gate("b"))]
    assert [g.name for g in resolve_gates(TO_DONE, task)] == ["c", "a", "b"]


def test_empty_override_list_means_no_overrides() -> None:
    assert resolve_gates(TO_DONE, []) == resolve_gates(TO_DONE, None)


def test_result_is_a_fresh_list() -> None:
    gates = resolve_gates(TO_DONE, None)
    gates.clear()
    assert len(DEFAULT_POLICY[TO_DONE]) == 1
    assert len(resolve_gates(TO_DONE, None)) == 1
    override = [tg(TO_DONE, job_gate("x"))]
    resolve_gates(TO_DONE, override).clear()
    assert len(override[0].gates) == 1


ALL_KEYS = [transition_key(P.IN_PROGRESS, P.REVIEW), TO_DONE, TO_DEPLOYED, TO_ASSIGNED,
            transition_key(P.REVIEW, P.REJECTED)]
LEVEL = st.lists(
    st.builds(lambda k, names: tg(k, *[job_gate(n) for n in names]),
              st.sampled_from(ALL_KEYS), st.lists(st.sampled_from(["a", "b", "c"]), max_size=2)),
    max_size=4,
)


@settings(max_examples=100)
@given(st.sampled_from(ALL_KEYS), st.one_of(st.none(), LEVEL), st.one_of(st.none(), LEVEL))
def test_resolve_gates_precedence_property(key, task, ns) -> None:
    # Without required gates, the first level mentioning the move decides alone.
    got = [g.name for g in resolve_gates(key, task, ns)]
    first_task = next((e for e in task or [] if e.transition == key), None)
    first_ns = next((e for e in ns or [] if e.transition == key), None)
    if first_task is not None:
        assert got == [g.name for g in first_task.gates]
    elif first_ns is not None:
        assert got == [g.name for g in first_ns.gates]
    else:
        assert got == [g.name for g in DEFAULT_POLICY.get(key, [])]


# ==== job_state =================================================================================


def job(attempt: int | None = 1, *conds: tuple[str, str], generation: int | None = 1, retry: int | None = 0,
        reason: str | None = None, message: str | None = None) -> dict:
    labels = {"agentops.dev/gate": "g"}
    if attempt is not None:
        labels["agentops.dev/attempt"] = str(attempt)
    annotations = {}
    if generation is not None:
        annotations["agentops.dev/task-generation"] = str(generation)
    if retry is not None:
        annotations["agentops.dev/task-retry"] = str(retry)
    conditions = []
    for ctype, status in conds:
        c = {"type": ctype, "status": status}
        if reason is not None:
            c["reason"] = reason
        if message is not None:
            c["message"] = message
        conditions.append(c)
    return {"metadata": {"name": f"j{attempt}", "labels": labels, "annotations": annotations},
            "status": {"conditions": conditions}}


RUNNING = ()
COMPLETE = (("Complete", "True"),)
FAILED = (("Failed", "True"),)


@pytest.mark.parametrize("j", [{}, {"status": None}, {"status": {}}, {"status": {"conditions": None}},
                               {"status": {"conditions": []}}, {"status": {"active": 1}}])
def test_job_without_conditions_is_running(j) -> None:
    assert job_state(j) == ("Running", "job running")


@pytest.mark.parametrize("ctype", ["Complete", "SuccessCriteriaMet"])
def test_success_conditions_pass(ctype) -> None:
    assert job_state(job(1, (ctype, "True"))) == ("Passed", "job completed")


@pytest.mark.parametrize("ctype", ["Failed", "FailureTarget"])
def test_failure_conditions_fail_with_reason_and_message(ctype) -> None:
    j = job(1, (ctype, "True"), reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")
    assert job_state(j) == ("Failed", "BackoffLimitExceeded: Job has reached the specified backoff limit")


def test_failure_message_without_reason_or_message() -> None:
    assert job_state(job(1, ("Failed", "True"))) == ("Failed", "Failed")
    assert job_state(job(1, ("Failed", "True"), reason="DeadlineExceeded")) == ("Failed", "DeadlineExceeded")


@pytest.mark.parametrize("status", ["False", "Unknown"])
def test_conditions_that_are_not_true_are_ignored(status) -> None:
    assert job_state(job(1, ("Complete", status)))[0] == "Running"
    assert job_state(job(1, ("Failed", status)))[0] == "Running"


def test_unrelated_true_conditions_are_ignored() -> None:
    assert job_state(job(1, ("Suspended", "True")))[0] == "Running"
    assert job_state(job(1, ("Suspended", "True"), ("Complete", "True")))[0] == "Passed"


def test_failure_target_then_failed_is_failed() -> None:
    assert job_state(job(1, ("FailureTarget", "True"), ("Failed", "True")))[0] == "Failed"


# ==== decide_attempt ============================================================================


def test_no_job_yet_creates_attempt_one() -> None:
    d = decide_attempt([], generation=3, retry=0)
    assert (d.action, d.attempt, d.job) == ("create", 1, None)


def test_running_job_waits() -> None:
    j = job(2, *RUNNING)
    d = decide_attempt([j], 1, 0)
    assert (d.action, d.attempt, d.job, d.message) == ("wait", 2, j, "job running")


def test_passed_job_passes() -> None:
    j = job(1, *COMPLETE)
    d = decide_attempt([j], 1, 0)
    assert (d.action, d.attempt, d.job) == ("passed", 1, j)


def test_failed_job_without_spec_change_fails() -> None:
    j = job(1, *FAILED, generation=4, retry=1, reason="BackoffLimitExceeded", message="boom")
    d = decide_attempt([j], generation=4, retry=1)
    assert (d.action, d.attempt, d.job) == ("failed", 1, j)
    assert d.message == "BackoffLimitExceeded: boom"


def test_failed_job_is_retried_after_a_generation_bump() -> None:
    j = job(1, *FAILED, generation=4, retry=0)
    d = decide_attempt([j], generation=5, retry=0)
    assert (d.action, d.attempt, d.job) == ("create", 2, j)


def test_failed_job_is_retried_after_a_retry_bump() -> None:
    j = job(3, *FAILED, generation=4, retry=1)
    d = decide_attempt([j], generation=4, retry=2)
    assert (d.action, d.attempt) == ("create", 4)


def test_lower_generation_or_retry_does_not_retry() -> None:
    j = job(1, *FAILED, generation=4, retry=2)
    assert decide_attempt([j], generation=3, retry=1).action == "failed"


def test_latest_attempt_decides_numerically_not_lexically() -> None:
    old = job(9, *FAILED)
    new = job(10, *COMPLETE)
    for jobs in ([old, new], [new, old]):
        d = decide_attempt(jobs, 1, 0)
        assert (d.action, d.attempt, d.job) == ("passed", 10, new)


def test_an_old_pass_does_not_hide_a_newer_running_attempt() -> None:
    d = decide_attempt([job(1, *COMPLETE), job(2, *RUNNING)], 1, 0)
    assert (d.action, d.attempt) == ("wait", 2)


def test_an_old_failure_does_not_hide_a_newer_pass() -> None:
    d = decide_attempt([job(1, *FAILED, generation=1), job(2, *COMPLETE, generation=2)], 2, 0)
    assert (d.action, d.attempt) == ("passed", 2)


def test_missing_attempt_label_counts_as_attempt_one() -> None:
    d = decide_attempt([job(None, *RUNNING)], 1, 0)
    assert (d.action, d.attempt) == ("wait", 1)


def test_failed_job_without_annotations_counts_as_made_for_generation_zero() -> None:
    # A Job without the bookkeeping annotations (made by an older operator) is retried once.
    d = decide_attempt([job(1, *FAILED, generation=None, retry=None)], generation=1, retry=0)
    assert (d.action, d.attempt) == ("create", 2)


ATTEMPT_JOBS = st.lists(
    st.builds(lambda a, c, g, r: job(a, *c, generation=g, retry=r),
              st.integers(1, 12), st.sampled_from([RUNNING, COMPLETE, FAILED]),
              st.integers(1, 5), st.integers(0, 3)),
    max_size=5,
)


@settings(max_examples=100)
@given(ATTEMPT_JOBS, st.integers(1, 6), st.integers(0, 4))
def test_decide_attempt_properties(jobs, generation, retry) -> None:
    d = decide_attempt(jobs, generation, retry)
    if not jobs:
        assert (d.action, d.attempt) == ("create", 1)
        return
    top = max(int(j["metadata"]["labels"]["agentops.dev/attempt"]) for j in jobs)
    assert d.job is not None
    assert int(d.job["metadata"]["labels"]["agentops.dev/attempt"]) == top
    state = job_state(d.job)[0]
    expected = {"Running": "wait", "Passed": "passed"}.get(state)
    if expected:
        assert (d.action, d.attempt) == (expected, top)
    else:
        ann = d.job["metadata"]["annotations"]
        changed = generation > int(ann["agentops.dev/task-generation"]) or retry > int(ann["agentops.dev/task-retry"])
        assert (d.action, d.attempt) == (("create", top + 1) if changed else ("failed", top))
    # Permuting the Jobs never changes the action or attempt (attempt numbers are unique per name,
    # so only check when they are).
    attempts = [j["metadata"]["labels"]["agentops.dev/attempt"] for j in jobs]
    if len(set(attempts)) == len(attempts):
        d2 = decide_attempt(list(reversed(jobs)), generation, retry)
        assert (d2.action, d2.attempt, d2.job) == (d.action, d.attempt, d.job)


# ==== approvals =================================================================================

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def sec(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def av(approver: str, decision: str = "Approved", reason: str = "", transition: str = TO_DONE,
       groups: tuple[str, ...] = (), at: float = 1) -> ApprovalView:
    return ApprovalView(approver, decision, reason, transition, groups, sec(at))


def gate(required: int = 1, users: tuple[str, ...] = (), groups: tuple[str, ...] = (), roles: tuple[str, ...] = (),
         timeout: int | None = None, on_timeout: str = "Wait") -> ApprovalGateSpec:
    return ApprovalGateSpec(required=required, approvers=Approvers(users=list(users), groups=list(groups),
                                                                   roles=list(roles)),
                            timeout_seconds=timeout, on_timeout=on_timeout)


def ev(g: ApprovalGateSpec, approvals: list[ApprovalView], now: float = 10, since: float = 0,
       role_users: set[str] | None = None, key: str = TO_DONE):
    return evaluate_approvals(g, approvals, key, sec(since), sec(now), role_users)


def test_no_approvals_waits() -> None:
    out = ev(gate(), [])
    assert (out.state, out.message, out.approvers, out.rejections) == ("Waiting", "0/1 approvals", (), ())


def test_one_approval_passes_default_gate() -> None:
    out = ev(gate(), [av("alice")])
    assert (out.state, out.message, out.approvers) == ("Passed", "approved by alice", ("alice",))


def test_n_of_m_needs_n_distinct_approvers() -> None:
    g = gate(required=2)
    assert ev(g, [av("alice")]).state == "Waiting"
    assert ev(g, [av("alice")]).message == "1/2 approvals (by alice)"
    same_twice = ev(g, [av("alice", reason="lgtm"), av("alice", reason="really", at=2)])
    assert (same_twice.state, same_twice.approvers) == ("Waiting", ("alice",))
    both = ev(g, [av("bob"), av("alice")])
    assert (both.state, both.approvers, both.message) == ("Passed", ("alice", "bob"), "approved by alice, bob")


def test_more_than_n_approvals_still_pass_and_are_all_listed() -> None:
    out = ev(gate(required=2), [av("carol"), av("alice"), av("bob")])
    assert (out.state, out.approvers) == ("Passed", ("alice", "bob", "carol"))


def test_an_allowed_rejection_rejects() -> None:
    out = ev(gate(), [av("bob", "Rejected", "tests missing")])
    assert out.state == "Rejected"
    assert out.message == "rejected by bob: tests missing"
    assert out.approvers == ("bob",)
    assert out.rejections == ("bob: tests missing",)


def test_rejection_without_reason() -> None:
    out = ev(gate(), [av("bob", "Rejected")])
    assert out.message == "rejected by bob: no reason given"
    assert out.rejections == ("bob: ",)


def test_rejection_beats_enough_approvals() -> None:
    out = ev(gate(required=1), [av("alice"), av("bob"), av("carol", "Rejected", "no")])
    assert (out.state, out.approvers) == ("Rejected", ("carol",))


def test_every_rejection_is_reported_in_order() -> None:
    out = ev(gate(), [av("bob", "Rejected", "a"), av("alice", "Rejected", "b")])
    assert out.message == "rejected by bob: a; rejected by alice: b"
    assert out.approvers == ("bob", "alice")
    assert out.rejections == ("bob: a", "alice: b")


def test_same_approver_approving_and_rejecting_rejects() -> None:
    assert ev(gate(), [av("alice"), av("alice", "Rejected", "changed my mind", at=2)]).state == "Rejected"


def test_allowed_users_only() -> None:
    g = gate(users=("alice",))
    out = ev(g, [av("mallory")])
    assert (out.state, out.approvers) == ("Waiting", ())
    assert out.message == "0/1 approvals; not allowed to approve: mallory"
    assert ev(g, [av("mallory"), av("alice")]).state == "Passed"


def test_rejection_by_someone_not_allowed_is_ignored() -> None:
    g = gate(users=("alice",))
    out = ev(g, [av("mallory", "Rejected", "nope")])
    assert out.state == "Waiting"
    assert "not allowed to approve: mallory" in out.message
    assert ev(g, [av("mallory", "Rejected", "nope"), av("alice")]).state == "Passed"


def test_ignored_approvers_are_listed_once_and_sorted() -> None:
    out = ev(gate(required=2, users=("alice",)), [av("zed"), av("mallory"), av("zed", reason="again"), av("alice")])
    assert out.message == "1/2 approvals (by alice); not allowed to approve: mallory, zed"


def test_allowed_groups() -> None:
    g = gate(groups=("reviewers",))
    assert ev(g, [av("dave", groups=("devs", "reviewers"))]).state == "Passed"
    assert ev(g, [av("dave", groups=("devs",))]).state == "Waiting"
    assert ev(g, [av("dave")]).state == "Waiting"
    assert ev(g, [av("dave", "Rejected", groups=("reviewers",))]).state == "Rejected"


def test_allowed_roles_via_role_users() -> None:
    qa_sa = "system:serviceaccount:team:agent-qa-1"
    g = gate(roles=("qa",))
    assert ev(g, [av(qa_sa)], role_users={qa_sa}).state == "Passed"
    assert ev(g, [av(qa_sa)], role_users={"someone-else"}).state == "Waiting"
    # Roles configured but no agent has the role: nobody qualifies through roles.
    assert ev(g, [av(qa_sa)], role_users=None).state == "Waiting"
    assert ev(g, [av(qa_sa)], role_users=set()).state == "Waiting"


def test_users_groups_and_roles_are_alternatives() -> None:
    g = gate(required=3, users=("alice",), groups=("reviewers",), roles=("qa",))
    approvals = [av("alice"), av("bob", groups=("reviewers",)), av("qa-sa"), av("mallory")]
    out = ev(g, approvals, role_users={"qa-sa"})
    assert (out.state, out.approvers) == ("Passed", ("alice", "bob", "qa-sa"))


def test_empty_allowlist_lets_anyone_approve() -> None:
    g = gate()
    assert allowed_approver(g, av("anyone"), set())
    assert ev(g, [av("anyone")]).state == "Passed"


def test_allowed_approver_checks() -> None:
    g = gate(users=("alice",), groups=("ops",))
    assert allowed_approver(g, av("alice"), set())
    assert allowed_approver(g, av("bob", groups=("ops",)), set())
    assert allowed_approver(g, av("carol"), {"carol"})
    assert not allowed_approver(g, av("carol", groups=("dev",)), set())


def test_decisions_for_other_moves_do_not_count() -> None:
    out = ev(gate(), [av("alice", transition=TO_DEPLOYED), av("bob", "Rejected", transition=TO_REVIEW)])
    assert (out.state, out.message) == ("Waiting", "0/1 approvals")
    assert ev(gate(), [av("alice", transition=TO_DEPLOYED)], key=TO_DEPLOYED).state == "Passed"


def test_decisions_before_the_round_started_do_not_count() -> None:
    # Round 1: bob rejected at t=5. The task re-entered Review at t=20 (since=20): round 2 starts from zero.
    history = [av("bob", "Rejected", "tests missing", at=5), av("alice", at=6)]
    assert ev(gate(), history, since=0, now=10).state == "Rejected"
    round2 = ev(gate(), history, since=20, now=30)
    assert (round2.state, round2.message) == ("Waiting", "0/1 approvals")
    assert ev(gate(), [*history, av("alice", reason="fixed", at=25)], since=20, now=30).state == "Passed"
    assert ev(gate(), [*history, av("bob", "Rejected", "still", at=25)], since=20, now=30).state == "Rejected"


def test_decision_observed_exactly_when_round_starts_counts() -> None:
    assert ev(gate(), [av("alice", at=20)], since=20, now=21).state == "Passed"
    assert ev(gate(), [av("alice", at=19.999)], since=20, now=21).state == "Waiting"


def test_no_timeout_waits_forever() -> None:
    out = ev(gate(), [], now=10 * 365 * 86400)
    assert (out.state, out.message) == ("Waiting", "0/1 approvals")


def test_before_timeout_is_plain_waiting() -> None:
    for on_timeout in ("Wait", "Reject"):
        out = ev(gate(timeout=60, on_timeout=on_timeout), [], since=100, now=159)
        assert (out.state, out.message) == ("Waiting", "0/1 approvals")


def test_timeout_with_reject_times_out_at_the_deadline() -> None:
    out = ev(gate(required=2, timeout=60, on_timeout="Reject"), [av("alice", at=110)], since=100, now=160)
    assert out.state == "TimedOut"
    assert out.message == "approval timed out after 60s; 1/2 approvals (by alice)"
    assert out.approvers == ("alice",)
    assert out.rejections == ()


def test_timeout_with_wait_keeps_waiting_and_says_so() -> None:
    out = ev(gate(required=2, timeout=60, on_timeout="Wait"), [av("bob", at=110)], since=100, now=500)
    assert (out.state, out.approvers) == ("Waiting", ("bob",))
    assert out.message == "1/2 approvals (by bob); timed out after 60s, still waiting"
    out = ev(gate(timeout=60, on_timeout="Wait"), [], since=100, now=160)
    assert (out.state, out.message) == ("Waiting", "0/1 approvals; timed out after 60s, still waiting")
    out = ev(gate(users=("alice",), timeout=60), [av("mallory", at=110)], since=100, now=500)
    assert out.message == "0/1 approvals; not allowed to approve: mallory; timed out after 60s, still waiting"


def test_late_approval_still_passes_after_timeout_with_wait() -> None:
    assert ev(gate(timeout=60, on_timeout="Wait"), [av("alice", at=400)], since=100, now=500).state == "Passed"


def test_decisions_win_over_the_timeout_when_present() -> None:
    # The evaluation sees approvals first: enough approvals pass, a rejection rejects (with the
    # approver's reason rather than a timeout), whatever the clock says.
    g = gate(timeout=60, on_timeout="Reject")
    assert ev(g, [av("alice", at=150)], since=100, now=1000).state == "Passed"
    assert ev(g, [av("bob", "Rejected", "no", at=150)], since=100, now=1000).state == "Rejected"


def test_timeout_is_measured_from_the_round_start() -> None:
    g = gate(timeout=60, on_timeout="Reject")
    assert ev(g, [], since=0, now=70).state == "TimedOut"
    assert ev(g, [], since=20, now=70).state == "Waiting"


# ---- approval properties -----------------------------------------------------------------------

PEOPLE = ["alice", "bob", "carol", "dave", "mallory"]
APPROVAL = st.builds(
    ApprovalView,
    st.sampled_from(PEOPLE),
    st.sampled_from(["Approved", "Approved", "Rejected"]),
    st.sampled_from(["", "lgtm", "no"]),
    st.sampled_from([TO_DONE, TO_DONE, TO_DEPLOYED]),
    st.lists(st.sampled_from(["reviewers", "devs"]), max_size=2, unique=True).map(tuple),
    st.integers(-5, 40).map(sec),
)
GATES = st.builds(
    gate,
    required=st.integers(1, 3),
    users=st.lists(st.sampled_from(PEOPLE), max_size=2, unique=True).map(tuple),
    groups=st.lists(st.sampled_from(["reviewers", "devs"]), max_size=1).map(tuple),
    roles=st.lists(st.just("qa"), max_size=1).map(tuple),
    timeout=st.one_of(st.none(), st.integers(1, 30)),
    on_timeout=st.sampled_from(["Wait", "Reject"]),
)
ROLE_USERS = st.sets(st.sampled_from(PEOPLE), max_size=2)


def expected_state(g: ApprovalGateSpec, approvals: list[ApprovalView], now: datetime, role_users: set[str]):
    allow = g.approvers
    anyone = not (allow.users or allow.groups or allow.roles)

    def ok(a: ApprovalView) -> bool:
        return anyone or a.approver in allow.users or any(x in allow.groups for x in a.groups) \
            or a.approver in role_users

    mine = [a for a in approvals if a.transition == TO_DONE and a.observed_at >= T0 and ok(a)]
    if any(a.decision == "Rejected" for a in mine):
        return "Rejected", tuple(a.approver for a in mine if a.decision == "Rejected")
    yes = tuple(sorted({a.approver for a in mine if a.decision == "Approved"}))
    if len(yes) >= g.required:
        return "Passed", yes
    if g.timeout_seconds is not None and now >= T0 + timedelta(seconds=g.timeout_seconds) \
            and g.on_timeout == "Reject":
        return "TimedOut", yes
    return "Waiting", yes


@settings(max_examples=200)
@given(GATES, st.lists(APPROVAL, max_size=8), st.integers(0, 60), ROLE_USERS)
def test_evaluate_approvals_matches_model(g, approvals, now_s, role_users) -> None:
    now = sec(now_s)
    out = evaluate_approvals(g, approvals, TO_DONE, T0, now, role_users)
    assert (out.state, out.approvers) == expected_state(g, approvals, now, role_users)
    if out.state == "Passed":
        assert len(out.approvers) >= g.required
    else:
        assert len(set(out.approvers)) < g.required or out.state == "Rejected"
    assert out.message


@settings(max_examples=100)
@given(GATES, st.lists(APPROVAL, max_size=8), st.integers(0, 60), ROLE_USERS, st.randoms(use_true_random=False))
def test_evaluate_approvals_ignores_order_and_irrelevant_decisions(g, approvals, now_s, role_users, rnd) -> None:
    base = evaluate_approvals(g, approvals, TO_DONE, T0, sec(now_s), role_users)
    shuffled = list(approvals)
    rnd.shuffle(shuffled)
    out = evaluate_approvals(g, shuffled, TO_DONE, T0, sec(now_s), role_users)
    assert (out.state, sorted(out.approvers), sorted(out.rejections)) == (
        base.state, sorted(base.approvers), sorted(base.rejections))
    # Decisions of an earlier round or another move change nothing, messages included.
    noise = [av("bob", "Rejected", "old", at=-1), av("alice", at=-100), av("carol", "Rejected", transition=TO_REVIEW)]
    noisy = evaluate_approvals(g, approvals + noise, TO_DONE, T0, sec(now_s), role_users)
    assert (noisy.state, noisy.approvers, noisy.rejections) == (base.state, base.approvers, base.rejections)
    assert noisy.message == base.message


@settings(max_examples=80)
@given(GATES, st.lists(APPROVAL, max_size=6), ROLE_USERS)
def test_more_allowed_approvals_never_hurt_without_rejections(g, approvals, role_users) -> None:
    approvals = [a for a in approvals if a.decision == "Approved"]
    before = evaluate_approvals(g, approvals, TO_DONE, T0, sec(10), role_users)
    extra = av("zoe-admin", at=5)
    g2 = g.model_copy(update={"approvers": g.approvers.model_copy(
        update={"users": [*g.approvers.users, "zoe-admin"]})}) if (
        g.approvers.users or g.approvers.groups or g.approvers.roles) else g
    after = evaluate_approvals(g2, [*approvals, extra], TO_DONE, T0, sec(10), role_users)
    order = {"TimedOut": 0, "Waiting": 1, "Passed": 2}
    assert order[after.state] >= order[before.state]
    assert set(before.approvers) <= set(after.approvers)
    assert "zoe-admin" in after.approvers


# ==== stage_for =================================================================================

PIPELINE = [
    Stage(name="dev", phases=["Assigned", "InProgress", "Rejected"], role="dev"),
    Stage(name="qa", phases=["Review"], role="qa"),
    Stage(name="deploy", phases=["Done", "Deployed"], agent="deployer"),
]


@pytest.mark.parametrize(
    ("phase", "stage"),
    [(P.ASSIGNED, "dev"), (P.IN_PROGRESS, "dev"), (P.REJECTED, "dev"), (P.REVIEW, "qa"), (P.DONE, "deploy"),
     (P.DEPLOYED, "deploy"), (P.BACKLOG, None), (P.CANCELLED, None), (P.ROLLED_BACK, None)],
)
def test_stage_for_each_phase(phase, stage) -> None:
    got = stage_for(PIPELINE, phase)
    assert (got.name if got else None) == stage
    got_str = stage_for(PIPELINE, phase.value)
    assert (got_str.name if got_str else None) == stage


def test_stage_for_empty_pipeline() -> None:
    assert all(stage_for([], p) is None for p in P)


def test_first_matching_stage_wins() -> None:
    overlapping = [Stage(name="a", phases=["Review"]), Stage(name="b", phases=["Review", "Done"])]
    assert stage_for(overlapping, P.REVIEW).name == "a"
    assert stage_for(overlapping, P.DONE).name == "b"


def test_stage_for_rejects_unknown_phase() -> None:
    with pytest.raises(ValueError):
        stage_for(PIPELINE, "Nonsense")


def test_active_phases_are_the_ones_holding_an_agent() -> None:
    assert set(ACTIVE_PHASES) == {P.ASSIGNED, P.IN_PROGRESS, P.REVIEW, P.REJECTED}


# ==== pick_agent ================================================================================


def agent(name: str, role: str = "dev", caps: tuple[str, ...] = (), max_concurrent: int = 1, ready: bool = True,
          load: int = 0) -> AgentView:
    return AgentView(name, role, frozenset(caps), max_concurrent, ready, load)


NONE: frozenset[str] = frozenset()


def test_pick_agent_none_available() -> None:
    assert pick_agent([], None, NONE) is None
    assert pick_agent([agent("a", ready=False)], None, NONE) is None
    assert pick_agent([agent("a", load=1)], None, NONE) is None
    assert pick_agent([agent("a", load=5, max_concurrent=2)], None, NONE) is None  # over capacity
    assert pick_agent([agent("a", role="qa")], "dev", NONE) is None
    assert pick_agent([agent("a", caps=("py",))], None, frozenset({"py", "gpu"})) is None


def test_pick_agent_role_and_capabilities() -> None:
    agents = [agent("a", role="qa", caps=("py",)), agent("b", role="dev", caps=("py", "gpu", "go"))]
    assert pick_agent(agents, "dev", frozenset({"py", "gpu"})).name == "b"
    assert pick_agent(agents, "qa", NONE).name == "a"
    assert pick_agent(agents, None, frozenset({"go"})).name == "b"  # role None: any role


def test_pick_agent_least_loaded_by_ratio() -> None:
    agents = [agent("a", max_concurrent=2, load=1), agent("b", max_concurrent=4, load=1)]
    assert pick_agent(agents, None, NONE).name == "b"  # 1/4 < 1/2


def test_pick_agent_ratio_tie_prefers_lower_load_then_name() -> None:
    assert pick_agent([agent("a", max_concurrent=4, load=2), agent("b", max_concurrent=2, load=1)],
                      None, NONE).name == "b"
    assert pick_agent([agent("b", max_concurrent=3), agent("a", max_concurrent=1)], None, NONE).name == "a"


def test_pick_agent_tie_prefers_the_less_specialised_agent() -> None:
    agents = [agent("a-gpu", caps=("py", "gpu")), agent("b-plain", caps=("py",))]
    assert pick_agent(agents, None, frozenset({"py"})).name == "b-plain"
    assert pick_agent(agents, None, frozenset({"gpu"})).name == "a-gpu"


def test_pick_agent_skips_not_ready_even_if_idle() -> None:
    agents = [agent("idle", ready=False, max_concurrent=10), agent("busy", max_concurrent=3, load=2)]
    assert pick_agent(agents, None, NONE).name == "busy"


def test_pick_agent_does_not_mutate() -> None:
    agents = [agent("a"), agent("b", load=0)]
    before = copy.deepcopy(agents)
    pick_agent(agents, None, NONE)
    assert agents == before


# ==== plan_assignments: examples ================================================================


def task(name: str, priority: int = 100, created: str = "2025-01-01T00:00:00Z", role: str | None = None,
         caps: tuple[str, ...] = (), agent_name: str | None = None) -> TaskView:
    return TaskView(name, priority, created, role, frozenset(caps), agent_name)


def test_empty_inputs() -> None:
    plan = plan_assignments([], [agent("a")])
    assert (plan.assignments, plan.waiting) == ([], {})
    plan = plan_assignments([task("t")], [])
    assert plan.assignments == []
    assert plan.waiting == {"t": "no Ready agent with room matches role=* capabilities=[]"}


def test_higher_priority_gets_the_only_slot() -> None:
    plan = plan_assignments([task("low", 10), task("high", 500)], [agent("a")])
    assert plan.assignments == [("high", "a")]
    assert set(plan.waiting) == {"low"}


def test_older_first_among_equal_priority_then_name() -> None:
    tasks = [task("new", created="2025-01-02T00:00:00Z"), task("old", created="2025-01-01T00:00:00Z")]
    assert plan_assignments(tasks, [agent("a")]).assignments == [("old", "a")]
    same_time = [task("b"), task("a")]
    assert plan_assignments(same_time, [agent("x")]).assignments == [("a", "x")]


def test_priority_beats_age() -> None:
    tasks = [task("old-low", 1, created="2020-01-01T00:00:00Z"), task("new-high", 2, created="2025-01-01T00:00:00Z")]
    assert plan_assignments(tasks, [agent("a")]).assignments == [("new-high", "a")]


def test_capacity_respects_existing_load() -> None:
    plan = plan_assignments([task("t1"), task("t2"), task("t3")], [agent("a", max_concurrent=3, load=1)])
    assert plan.assignments == [("t1", "a"), ("t2", "a")]
    assert set(plan.waiting) == {"t3"}


def test_spreads_over_least_loaded_agents() -> None:
    agents = [agent("a", max_concurrent=2), agent("b", max_concurrent=2)]
    plan = plan_assignments([task("t1"), task("t2"), task("t3"), task("t4")], agents)
    assert plan.assignments == [("t1", "a"), ("t2", "b"), ("t3", "a"), ("t4", "b")]


def test_waiting_reason_names_the_requirements() -> None:
    plan = plan_assignments([task("t", role="qa", caps=("py", "gpu"))], [agent("a", role="dev")])
    assert plan.waiting == {"t": "no Ready agent with room matches role=qa capabilities=['gpu', 'py']"}


def test_role_and_capabilities_route_tasks() -> None:
    agents = [agent("dev-1", "dev", ("py",), 5), agent("qa-1", "qa", ("py",), 5),
              agent("gpu-1", "dev", ("py", "gpu"), 5)]
    plan = plan_assignments([task("q", role="qa"), task("g", caps=("gpu",)), task("d", role="dev", caps=("py",))],
                            agents)
    assert sorted(plan.assignments) == [("d", "dev-1"), ("g", "gpu-1"), ("q", "qa-1")]


def test_named_agent_need_not_be_ready() -> None:
    plan = plan_assignments([task("t", agent_name="sleepy")], [agent("sleepy", ready=False)])
    assert plan.assignments == [("t", "sleepy")]


def test_named_agent_is_a_human_decision_over_role_and_capabilities() -> None:
    # role/capabilities constrain auto-assignment only (see AgentTaskSpec field docs).
    plan = plan_assignments([task("t", role="qa", caps=("gpu",), agent_name="a")], [agent("a", role="dev")])
    assert plan.assignments == [("t", "a")]


def test_named_agent_missing() -> None:
    plan = plan_assignments([task("t", agent_name="ghost")], [agent("a")])
    assert plan.assignments == []
    assert plan.waiting == {"t": "agent ghost does not exist"}


def test_named_agent_full() -> None:
    plan = plan_assignments([task("t", agent_name="a")], [agent("a", max_concurrent=2, load=2)])
    assert plan.waiting == {"t": "agent a is at maxConcurrentTasks (2)"}


def test_named_task_takes_capacity_from_auto_tasks() -> None:
    plan = plan_assignments([task("auto", 900), task("named", 1000, agent_name="a")], [agent("a")])
    assert plan.assignments == [("named", "a")]
    assert set(plan.waiting) == {"auto"}


def test_auto_task_never_goes_to_a_not_ready_agent() -> None:
    plan = plan_assignments([task("t")], [agent("a", ready=False, max_concurrent=10)])
    assert plan.assignments == []


def test_plan_does_not_mutate_agents_and_is_repeatable() -> None:
    # Regression: plan_assignments used to bump AgentView.load in place, so a second call with the
    # same views planned against phantom load (and the caller's views lied about the cluster).
    agents = [agent("a"), agent("b", max_concurrent=2, load=1)]
    tasks = [task("t1"), task("t2"), task("t3")]
    before = copy.deepcopy(agents)
    first = plan_assignments(tasks, agents)
    assert agents == before
    second = plan_assignments(tasks, agents)
    assert first == second
    assert first.assignments == [("t1", "a"), ("t2", "b")]


# ==== plan_assignments: properties ==============================================================
# One hypothesis test draws a namespace (agents with roles, capabilities, capacity, readiness and
# existing load; tasks with priorities, ages, requirements and sometimes a named agent) and checks
# every invariant below on the plan. Drawing is the expensive part, so the checks share it.

AGENT_NAMES = ["a1", "a2", "a3", "a4"]
CAPS = ["py", "go", "gpu"]
TIMES = ["2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z", "2025-01-02T00:00:00Z"]


def caps_of(mask: int) -> frozenset[str]:
    return frozenset(c for i, c in enumerate(CAPS) if mask >> i & 1)


# Agents are a1..aN: (role, capability mask, maxConcurrent, ready, load). The draws lean towards
# assignable namespaces (idle, Ready, capable agents; undemanding tasks) so plans are rarely empty.
RAW_AGENTS = st.lists(
    st.tuples(st.sampled_from(["dev", "dev", "qa", ""]), st.sampled_from([7, 7, 7, 0, 1, 3, 5, 6]),
              st.integers(1, 4), st.sampled_from([True, True, True, True, False]),
              st.sampled_from([0, 0, 0, 0, 1, 2, 5])),
    min_size=1, max_size=4,
)
# Tasks are t0..tN: (priority, created index, role index, capability mask, named agent: 0-3 a1..a4
# (which may not exist), 4 a missing agent, anything else none).
RAW_TASKS = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2), st.sampled_from([0, 0, 0, 0, 1, 2]),
              st.sampled_from([0, 0, 0, 0, 0, 1, 2, 4, 3, 7]), st.integers(0, 15)),
    max_size=10,
)


def build(raw_tasks: list[tuple], raw_agents: list[tuple]) -> tuple[list[TaskView], list[AgentView]]:
    agents = [AgentView(f"a{i + 1}", role, caps_of(m), mx, ready, load)
              for i, (role, m, mx, ready, load) in enumerate(raw_agents)]
    tasks = [
        TaskView(f"t{i}", prio, TIMES[ti], [None, "dev", "qa"][ri], caps_of(m),
                 ([*AGENT_NAMES, "ghost"][ai] if ai <= 4 else None))
        for i, (prio, ti, ri, m, ai) in enumerate(raw_tasks)
    ]
    return tasks, agents


# (load, maxConcurrent) pairs chosen so that load ratios tie with different loads (1/2, 2/4, 3/6) and
# the ratio and the raw load disagree (1/2 vs 2/5), plus full and over-full agents.
LOADS = [(0, 1), (0, 3), (1, 2), (2, 4), (3, 6), (1, 3), (2, 6), (2, 5), (1, 4), (4, 4), (5, 3)]
PICK_AGENTS = st.lists(
    st.tuples(st.sampled_from(["dev", "dev", "qa", ""]), st.sampled_from([7, 7, 0, 1, 3, 5, 6]),
              st.sampled_from(LOADS), st.sampled_from([True, True, True, False]))
    .map(lambda t: (t[0], t[1], t[2][1], t[3], t[2][0])),  # -> (role, mask, maxConcurrent, ready, load)
    min_size=2, max_size=5,
)


@settings(max_examples=300)
@given(PICK_AGENTS, st.sampled_from([None, None, "dev", "qa"]), st.sampled_from([0, 0, 0, 1, 3, 7]),
       st.randoms(use_true_random=False))
def test_pick_agent_picks_the_least_loaded_fit(raw_agents, role, mask, rnd: random.Random) -> None:
    _, agents = build([], raw_agents)
    caps = caps_of(mask)
    fits = [a for a in agents if a.ready and a.load < a.max_concurrent
            and (role is None or a.role == role) and caps <= a.capabilities]
    chosen = pick_agent(agents, role, caps)
    if not fits:
        assert chosen is None
        return
    assert chosen in fits
    for other in fits:
        mine, theirs = Fraction(chosen.load, chosen.max_concurrent), Fraction(other.load, other.max_concurrent)
        assert mine <= theirs
        if mine == theirs:
            assert (chosen.load, len(chosen.capabilities), chosen.name) <= (
                other.load, len(other.capabilities), other.name)
    shuffled = list(agents)
    rnd.shuffle(shuffled)
    assert pick_agent(shuffled, role, caps) == chosen


def order_key(t: TaskView) -> tuple:
    return (-t.priority, t.created, t.name)


def requirements(t: TaskView) -> tuple:
    return (t.agent, t.role, t.capabilities)


def check_every_task_accounted_for_once(tasks, agents, plan) -> None:
    assigned = [t for t, _ in plan.assignments]
    assert len(assigned) == len(set(assigned)), "a task was assigned twice"
    assert set(assigned).isdisjoint(plan.waiting), "a task is both assigned and waiting"
    assert set(assigned) | set(plan.waiting) == {t.name for t in tasks}, "a task is neither assigned nor waiting"
    assert all(isinstance(why, str) and why for why in plan.waiting.values()), "a waiting task has no reason"


def check_capacity(tasks, agents, plan) -> None:
    for a in agents:
        got = sum(1 for _, name in plan.assignments if name == a.name)
        limit = max(0, a.max_concurrent - a.load)
        assert got <= limit, f"{a.name} got {got} tasks with load {a.load}/{a.max_concurrent}"


def check_eligibility(tasks, agents, plan) -> None:
    by_task = {t.name: t for t in tasks}
    by_agent = {a.name: a for a in agents}
    for tname, aname in plan.assignments:
        t, a = by_task[tname], by_agent[aname]
        if t.agent is not None:
            assert aname == t.agent, f"{tname} named {t.agent} but went to {aname}"
            continue
        assert a.ready, f"auto-assigned {tname} to not-Ready {aname}"
        assert t.role is None or a.role == t.role, f"{tname} wants role {t.role}, {aname} is {a.role!r}"
        assert t.capabilities <= a.capabilities, f"{tname} wants {sorted(t.capabilities)}, {aname} lacks some"


def check_urgency(tasks, agents, plan) -> None:
    """No task waits while a less urgent one (lower priority, or equal and younger) with the same needs got a slot."""
    assigned = {t for t, _ in plan.assignments}
    for w in (t for t in tasks if t.name in plan.waiting):
        for a in (t for t in tasks if t.name in assigned and requirements(t) == requirements(w)):
            assert a.priority >= w.priority, f"{w.name} (prio {w.priority}) waits, {a.name} (prio {a.priority}) runs"
            if a.priority == w.priority:
                assert a.created <= w.created, f"older {w.name} waits, younger {a.name} runs"
            assert order_key(a) < order_key(w)


def check_assignment_order(tasks, agents, plan) -> None:
    by_task = {t.name: t for t in tasks}
    keys = [order_key(by_task[t]) for t, _ in plan.assignments]
    assert keys == sorted(keys), "assignments are not in priority, then age, then name order"


def check_work_conserving(tasks, agents, plan) -> None:
    """After the plan, no waiting task has an agent it could still go to, and its reason says why."""
    final = {a.name: replace(a, load=a.load + sum(1 for _, n in plan.assignments if n == a.name)) for a in agents}
    for t in tasks:
        why = plan.waiting.get(t.name)
        if why is None:
            continue
        if t.agent is None:
            assert pick_agent(list(final.values()), t.role, t.capabilities) is None, f"{t.name} could run"
            assert why == (f"no Ready agent with room matches role={t.role or '*'} "
                           f"capabilities={sorted(t.capabilities)}")
        elif t.agent not in final:
            assert why == f"agent {t.agent} does not exist"
        else:
            named = final[t.agent]
            assert named.load >= named.max_concurrent, f"{t.name} waits but {t.agent} has room"
            assert why == f"agent {t.agent} is at maxConcurrentTasks ({named.max_concurrent})"


CHECKS = [check_every_task_accounted_for_once, check_capacity, check_eligibility, check_urgency,
          check_assignment_order, check_work_conserving]


@settings(max_examples=250)
@given(RAW_TASKS, RAW_AGENTS, st.randoms(use_true_random=False))
def test_plan_assignments_invariants(raw_tasks, raw_agents, rnd: random.Random) -> None:
    tasks, agents = build(raw_tasks, raw_agents)
    snapshot = copy.deepcopy(agents)
    plan = plan_assignments(tasks, agents)
    for check in CHECKS:
        check(tasks, agents, plan)
    # Deterministic: the caller's views are untouched, the same input plans the same, and neither the
    # order of the listed tasks nor of the agents matters.
    assert agents == snapshot
    assert plan_assignments(tasks, agents) == plan
    shuffled_tasks, shuffled_agents = list(tasks), copy.deepcopy(agents)
    rnd.shuffle(shuffled_tasks)
    rnd.shuffle(shuffled_agents)
    assert plan_assignments(shuffled_tasks, shuffled_agents) == plan


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_invariant_checks_catch_a_bad_plan(check) -> None:
    """The checks above are not vacuous: each one rejects a plan that breaks its invariant."""
    tasks = [task("hi", 10, caps=("gpu",)), task("lo", 1, created="2025-01-02T00:00:00Z", caps=("gpu",)),
             task("named", 5, agent_name="ghost")]
    agents = [agent("a", caps=("gpu",)), agent("b", ready=False, caps=("gpu",), max_concurrent=5)]
    good = plan_assignments(tasks, agents)
    check(tasks, agents, good)
    bad = {
        "check_every_task_accounted_for_once": AssignmentPlan(good.assignments, {}),
        "check_capacity": AssignmentPlan([("hi", "a"), ("lo", "a")], {"named": "x"}),
        "check_eligibility": AssignmentPlan([("hi", "a"), ("lo", "b")], {"named": "x"}),
        "check_urgency": AssignmentPlan([("lo", "a")], {"hi": "x", "named": "x"}),
        "check_assignment_order": AssignmentPlan([("lo", "b"), ("hi", "a")], {"named": "x"}),
        "check_work_conserving": AssignmentPlan([], {"hi": "x", "lo": "x", "named": "x"}),
    }[check.__name__]
    with pytest.raises(AssertionError):
        check(tasks, agents, bad)


# ---- required namespace gates: a floor a task override may add to, never weaken ---------------


def required_gate(name: str, required: int = 2) -> Gate:
    return Gate(name=name, type="Approval", required=True,
                approval=ApprovalGateSpec(required=required, approvers=Approvers(users=["bob", "carol"])))


def test_required_namespace_gate_survives_a_task_override_that_removes_all_gates() -> None:
    ns = [tg(TO_DONE, required_gate("two-approvers"), job_gate("ns-optional"))]
    assert [g.name for g in resolve_gates(TO_DONE, [tg(TO_DONE)], ns)] == ["two-approvers"]


def test_task_override_adds_to_the_floor_but_cannot_replace_a_required_gate_by_name() -> None:
    weaker = Gate(name="two-approvers", type="Approval", approval=ApprovalGateSpec(required=1))
    ns = [tg(TO_DONE, required_gate("two-approvers"))]
    got = resolve_gates(TO_DONE, [tg(TO_DONE, weaker, job_gate("lint"))], ns)
    assert [g.name for g in got] == ["two-approvers", "lint"]
    assert got[0].approval is not None and got[0].approval.required == 2


def test_required_gates_of_every_policy_entry_apply() -> None:
    ns = [tg(TO_DONE, job_gate("first")), tg(TO_DONE, required_gate("second"))]
    assert [g.name for g in resolve_gates(TO_DONE, None, ns)] == ["second", "first"]
    assert [g.name for g in resolve_gates(TO_DONE, [tg(TO_DONE)], ns)] == ["second"]


def test_required_gates_of_other_moves_do_not_leak() -> None:
    ns = [tg(TO_DEPLOYED, required_gate("ship-approval"))]
    assert [g.name for g in resolve_gates(TO_DONE, [tg(TO_DONE)], ns)] == []


GATE_NAMES = ["a", "b", "c", "d"]
ANY_GATE = st.builds(
    lambda name, req, kind: (required_gate(name) if req else job_gate(name)) if kind == "ns"
    else job_gate(name), st.sampled_from(GATE_NAMES), st.booleans(), st.sampled_from(["ns", "task"]),
)
NS_LEVEL = st.lists(st.builds(lambda k, gs: tg(k, *{g.name: g for g in gs}.values()), st.sampled_from(ALL_KEYS),
                              st.lists(ANY_GATE, max_size=3)), max_size=4)
TASK_LEVEL = st.lists(st.builds(lambda k, names: tg(k, *[job_gate(n) for n in dict.fromkeys(names)]),
                                st.sampled_from(ALL_KEYS), st.lists(st.sampled_from(GATE_NAMES), max_size=3)),
                      max_size=4)


@settings(max_examples=300)
@given(st.sampled_from(ALL_KEYS), st.one_of(st.none(), TASK_LEVEL), st.one_of(st.none(), NS_LEVEL))
def test_no_task_override_weakens_the_namespace_floor(key, task, ns) -> None:
    got = resolve_gates(key, task, ns)
    names = [g.name for g in got]
    assert len(names) == len(set(names))  # one Job / one approval count per gate name
    floor: dict[str, Gate] = {}
    for entry in ns or []:
        if entry.transition == key:
            for g in entry.gates:
                if g.required:
                    floor.setdefault(g.name, g)
    # Every required gate is there, exactly as the namespace defined it, and first.
    assert got[: len(floor)] == list(floor.values())
    # Whatever the task says, it can only add gates (never remove or replace a required one).
    assert set(floor) <= set(names)
    no_override = resolve_gates(key, None, ns)
    assert {g.name for g in no_override if g.required} == set(floor)


# ---- separation of duties ----------------------------------------------------------------------

AGENT_SA = "system:serviceaccount:team:agent-dev-1"


def test_requester_and_assignee_cannot_approve_their_own_move() -> None:
    out = evaluate_approvals(gate(), [av("alice"), av(AGENT_SA)], TO_DONE, T0, sec(5),
                             requester="alice", assignee=AGENT_SA)
    assert out.state == "Waiting"
    assert out.message == (f"0/1 approvals; not counted (separation of duties): alice (requested the move), "
                           f"{AGENT_SA} (did the work)")
    both = evaluate_approvals(gate(), [av("alice"), av("bob")], TO_DONE, T0, sec(5), requester="alice")
    assert (both.state, both.approvers) == ("Passed", ("bob",))


def test_a_rejection_by_the_requester_counts() -> None:
    # Turning one's own work down bypasses nothing, and a pipeline's reviewer records its verdict by
    # requesting the move it rejects.
    out = evaluate_approvals(gate(), [av("alice", "Rejected", "not ready")], TO_DONE, T0, sec(5), requester="alice")
    assert out.state == "Rejected"


def test_allow_self_approval_opts_out_per_gate() -> None:
    g = ApprovalGateSpec(required=1, allow_self_approval=True)
    out = evaluate_approvals(g, [av("alice")], TO_DONE, T0, sec(5), requester="alice", assignee=AGENT_SA)
    assert (out.state, out.approvers) == ("Passed", ("alice",))


@settings(max_examples=200)
@given(GATES, st.lists(APPROVAL, max_size=8), st.integers(0, 60), ROLE_USERS, st.sampled_from(PEOPLE),
       st.sampled_from(PEOPLE))
def test_separation_of_duties_property(g, approvals, now_s, role_users, requester, assignee) -> None:
    """The requester's and the author's approvals never change the outcome; every rejection and everyone
    else's approvals count as before."""
    now = sec(now_s)
    out = evaluate_approvals(g, approvals, TO_DONE, T0, now, role_users, requester=requester, assignee=assignee)
    others = [a for a in approvals if a.approver not in (requester, assignee) or a.decision != "Approved"]
    plain = evaluate_approvals(g, others, TO_DONE, T0, now, role_users)
    assert (out.state, out.approvers) == (plain.state, plain.approvers)
    if out.state != "Rejected":  # approvers are then who approved; a rejection names who rejected
        assert requester not in out.approvers and assignee not in out.approvers
