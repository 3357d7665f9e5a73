"""Task-outcome statistics of the `tasks` analysis provider, the canary routing split, and the provider."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentops_operator import analysis as an
from agentops_operator import rollout as ro
from agentops_operator import taskoutcomes as to
from agentops_operator import taskrouting as tr
from agentops_operator.models.agent import Metric, TasksProvider
from agentops_operator.timeutil import format_time

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
AGENT = "coder"


def task(name: str, revision: str | None, moves: list[tuple[str, str, float]], *, attempts: int = 1,
         costs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A task with history entries (from, to, seconds after T0) and the revision stamp of AGENT."""
    ann = {to.revision_annotation(AGENT): revision} if revision else {}
    history = [{"from": f, "to": t, "at": format_time(T0 + timedelta(seconds=s)),
                "gates": [{"name": "g", "attempt": attempts}] if (f, t) == ("InProgress", "Review") else []}
               for f, t, s in moves]
    return {"metadata": {"name": name, "uid": f"uid-{name}", "annotations": ann},
            "spec": {"costs": costs or []}, "status": {"history": history}}


def straight(name: str, revision: str, start: float = 10, **kw: Any) -> dict[str, Any]:
    return task(name, revision, [("Assigned", "InProgress", start), ("InProgress", "Review", start + 5),
                                 ("Review", "Done", start + 10)], **kw)


def rejected(name: str, revision: str, start: float = 10, **kw: Any) -> dict[str, Any]:
    return task(name, revision, [("Assigned", "InProgress", start), ("InProgress", "Review", start + 5),
                                 ("Review", "Rejected", start + 6)], **kw)


def test_one_task_outcome_fields() -> None:
    t = task("a", "r2", [("Assigned", "InProgress", 10), ("InProgress", "Review", 15), ("Review", "Rejected", 16),
                         ("Rejected", "InProgress", 17), ("InProgress", "Review", 20), ("Review", "Done", 30)],
             costs=[{"resource": "tokens", "amount": 5, "phase": "Review"}, {"resource": "x", "phase": "Done"}])
    o = to.outcome(t, AGENT, T0)
    assert o is not None and o.revision == "r2"
    assert o.rejected and o.first_pass  # first decision a rejection; first submission's gates at attempt 1
    assert o.cycle_seconds == 20.0 and o.cost == 11.0  # two reviews x 5 + one Done x 1 (default amount)
    # A retried gate on the first submission is not a first pass.
    assert to.outcome(straight("b", "r2", attempts=2), AGENT, T0).first_pass is False  # type: ignore[union-attr]


def test_window_unstamped_and_undecided_tasks_do_not_count() -> None:
    assert to.outcome(straight("a", "r1"), "someone-else", T0) is None  # stamp of another agent
    assert to.outcome(task("b", None, [("Review", "Done", 5)]), AGENT, T0) is None
    assert to.outcome(task("c", "r1", [("Assigned", "InProgress", 5), ("InProgress", "Review", 6)]), AGENT, T0) \
        is None  # not decided yet
    # Decided before the step began: not in the window; a later decision is.
    early = task("d", "r1", [("InProgress", "Review", 1), ("Review", "Rejected", 2), ("Rejected", "InProgress", 3),
                             ("InProgress", "Review", 40), ("Review", "Done", 50)])
    assert to.outcome(early, AGENT, T0 + timedelta(seconds=100)) is None
    o = to.outcome(early, AGENT, T0 + timedelta(seconds=30))
    assert o is not None and not o.rejected
    # Malformed history entries are skipped, not fatal.
    bad = straight("e", "r1")
    bad["status"]["history"].insert(0, {"from": "x", "to": "y", "at": "not a time"})
    bad["status"]["history"].append("junk")
    assert to.outcome(bad, AGENT, T0) is not None


def test_compare_canary_against_stable() -> None:
    tasks = [straight(f"s{i}", "r1") for i in range(4)] + [rejected("s4", "r1")] + \
        [rejected(f"c{i}", "r2") for i in range(3)] + [straight("c3", "r2", start=10)]
    c = to.compare(tasks, AGENT, "r1", "r2", T0)
    assert (c.stable.count, c.stable.rejected, c.stable.rejection_rate) == (5, 1, 0.2)
    assert (c.canary.count, c.canary.rejected, c.canary.rejection_rate) == (4, 3, 0.75)
    assert c.canary.done == 1 and c.canary.median_cycle_seconds == 10.0
    res = c.result()
    assert an.evaluate("result.canary.rejectionRate <= result.stable.rejectionRate + 0.05", res) is False
    assert an.evaluate("result.canary.count >= 4 && result.stable.count >= 4", res) is True
    assert res["since"] == format_time(T0)


def test_empty_windows_and_one_side_empty_are_null_not_nan() -> None:
    c = to.compare([], AGENT, "r1", "r2", T0)
    for s in (c.canary, c.stable):
        assert s.count == 0 and s.rejection_rate is None and s.median_cycle_seconds is None and s.mean_cost is None
    c = to.compare([straight("s", "r1")], AGENT, "r1", "r2", T0)
    assert c.stable.count == 1 and c.canary.count == 0 and c.canary.first_pass_rate is None
    json.dumps(c.result(), allow_nan=False)  # valid JSON, no NaN


def test_huge_costs_stay_finite() -> None:
    huge = [{"resource": "tokens", "amount": 1.5e308, "phase": "Review"}]
    tasks = [straight("s0", "r1", costs=huge), straight("s1", "r1", costs=huge)]
    c = to.compare(tasks, AGENT, "r1", "r2", T0)
    assert c.stable.mean_cost == 1.5e308
    assert to._mean([1.5e308, 1.5e308]) == 1.5e308 and to._mean([]) is None and to._mean([1.0, 2.0]) == 1.5
    json.dumps(c.result(), allow_nan=False)


def test_ties_are_equal_not_worse() -> None:
    tasks = [rejected("s0", "r1"), straight("s1", "r1"), rejected("c0", "r2"), straight("c1", "r2")]
    res = to.compare(tasks, AGENT, "r1", "r2", T0).result()
    assert res["canary"]["rejectionRate"] == res["stable"]["rejectionRate"] == 0.5
    assert an.evaluate("result.canary.rejectionRate <= result.stable.rejectionRate", res)
    assert res["canary"]["medianCycleSeconds"] == res["stable"]["medianCycleSeconds"] == 10.0


_moves = st.lists(st.tuples(st.sampled_from(["Backlog", "Assigned", "InProgress", "Review", "Rejected", "Done"]),
                            st.sampled_from(["Assigned", "InProgress", "Review", "Rejected", "Done", "Deployed"]),
                            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)), max_size=8)
_tasks = st.lists(st.tuples(st.sampled_from(["r1", "r2", "r3", None]), _moves, st.integers(1, 3),
                            st.lists(st.fixed_dictionaries({
                                "amount": st.one_of(st.integers(0, 10**15), st.floats(allow_nan=True)),
                                "phase": st.sampled_from(["Review", "Done"])}), max_size=2)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(_tasks, st.floats(min_value=-1e6, max_value=1e6))
def test_properties_counts_bounds_and_no_nan(raw: list[Any], since_s: float) -> None:
    tasks = [task(f"t{i}", rev, moves, attempts=att, costs=costs) for i, (rev, moves, att, costs) in enumerate(raw)]
    since = T0 + timedelta(seconds=since_s)
    c = to.compare(tasks, AGENT, "r1", "r2", since)
    decided = [o for t in tasks if (o := to.outcome(t, AGENT, since))]
    for s in (c.canary, c.stable):
        assert s.count == sum(1 for o in decided if o.revision == s.revision)
        assert 0 <= s.rejected <= s.count and 0 <= s.first_pass <= s.count and 0 <= s.done <= s.count
        for rate in (s.rejection_rate, s.first_pass_rate):
            assert (rate is None) == (s.count == 0)
            assert rate is None or 0.0 <= rate <= 1.0
        assert (s.median_cycle_seconds is None) == (s.done == 0)
        assert s.median_cycle_seconds is None or s.median_cycle_seconds >= 0
        assert s.mean_cost is None or math.isfinite(s.mean_cost)
    # Both sides see disjoint tasks; neither result holds a NaN or infinity.
    assert c.canary.count + c.stable.count <= len(decided)
    json.dumps(c.result(), allow_nan=False)
    # Swapping the sides swaps the statistics (the comparison is symmetric in its inputs).
    swapped = to.compare(tasks, AGENT, "r2", "r1", since)
    assert swapped.canary == c.stable and swapped.stable == c.canary


# ---- routing ---------------------------------------------------------------------------------

CANARY_AT = {"stableRevision": "r1", "currentRevision": "r2"}


def test_split_follows_the_weight() -> None:
    uids = [f"uid-{i}" for i in range(4000)]
    for weight in (0, 10, 50, 90, 100):
        status = {**CANARY_AT, "canaryWeight": weight}
        owners = Counter(tr.owner(u, None, status) for u in uids)
        assert set(owners) <= {"r1", "r2"}
        share = owners["r2"] / len(uids)
        assert abs(share - weight / 100) < 0.03, (weight, share)
        # Exactly one of the two workers takes each task.
        assert all(tr.mine(u, None, status, "r1") != tr.mine(u, None, status, "r2") for u in uids[:500])
        # A worker of an old revision takes none; a worker that does not know its revision takes all.
        assert not any(tr.mine(u, None, status, "r0") for u in uids[:200])
        assert all(tr.mine(u, None, status, None) for u in uids[:200])


def test_split_is_stable_and_monotonic_in_the_weight() -> None:
    """Raising the weight only moves tasks from stable to canary, never back: work in flight stays put."""
    uids = [f"u{i}" for i in range(1000)]
    previous: set[str] = set()
    for weight in range(0, 101, 5):
        canary = {u for u in uids if tr.owner(u, None, {**CANARY_AT, "canaryWeight": weight}) == "r2"}
        assert previous <= canary
        previous = canary
    assert tr.bucket("x") == tr.bucket("x")


def test_no_canary_means_no_routing_and_stamps_stick_while_their_side_serves() -> None:
    assert tr.owner("u", None, {"stableRevision": "r1"}) is None
    assert tr.owner("u", None, {"stableRevision": "r1", "currentRevision": "r1", "canaryWeight": 50}) is None
    status = {**CANARY_AT, "canaryWeight": 50}
    u_canary = next(u for u in (f"u{i}" for i in range(100)) if tr.bucket(u) < 50)
    assert tr.owner(u_canary, None, status) == "r2"
    assert tr.owner(u_canary, "r1", status) == "r1"  # rework goes back to the revision that did it
    assert tr.owner(u_canary, "r1", {**CANARY_AT, "canaryWeight": 100}) == "r2"  # r1 has no share left
    assert tr.owner(u_canary, "r0", status) == "r2"  # stamp of a revision gone: routed afresh


# ---- the provider ----------------------------------------------------------------------------


def metric(**kw: Any) -> Metric:
    return Metric.model_validate({"name": "outcomes", "tasks": {"minCount": 3}, **kw})


def test_measure_tasks_verdicts() -> None:
    worse = [straight(f"s{i}", "r1") for i in range(3)] + [rejected(f"c{i}", "r2") for i in range(3)]
    same = [straight(f"s{i}", "r1") for i in range(3)] + [straight(f"c{i}", "r2") for i in range(3)]
    cond = {"successCondition": "result.canary.rejectionRate <= result.stable.rejectionRate + 0.05"}
    now = T0 + timedelta(minutes=5)
    m = an.measure_tasks(TasksProvider(min_count=3), metric(**cond), AGENT, "r1", "r2", T0, worse, now)
    assert m.phase is ro.MeasurementPhase.FAILED and "canary r2: 3 tasks, 3 rejected (1.00)" in m.message
    assert json.loads(m.value)["canary"]["rejectionRate"] == 1.0
    m = an.measure_tasks(TasksProvider(min_count=3), metric(**cond), AGENT, "r1", "r2", T0, same, now)
    assert m.phase is ro.MeasurementPhase.SUCCESSFUL
    m = an.measure_tasks(TasksProvider(min_count=4), metric(**cond), AGENT, "r1", "r2", T0, same, now)
    assert m.phase is ro.MeasurementPhase.INCONCLUSIVE and "too few decided tasks (need 4 each)" in m.message
    m = an.measure_tasks(TasksProvider(), metric(**cond), AGENT, "r1", "r2", T0, [], now)
    assert m.phase is ro.MeasurementPhase.INCONCLUSIVE
    # A condition that does not parse is an Error at once, even before the sample is complete.
    m = an.measure_tasks(TasksProvider(min_count=4), metric(successCondition="result.canary.count >="), AGENT,
                         "r1", "r2", T0, same, now)
    assert m.phase is ro.MeasurementPhase.ERROR and "cannot parse condition" in m.message
    m = an.measure_tasks(TasksProvider(), metric(**cond), AGENT, "r1", None, T0, same, now)
    assert m.phase is ro.MeasurementPhase.ERROR and "canary" in m.message
    # A condition on a statistic without data (null) is an Error, not a silent pass.
    no_done = [rejected(f"s{i}", "r1") for i in range(3)] + [rejected(f"c{i}", "r2") for i in range(3)]
    m = an.measure_tasks(TasksProvider(min_count=3), metric(successCondition="result.canary.medianCycleSeconds < 60"),
                         AGENT, "r1", "r2", T0, no_done, now)
    assert m.phase is ro.MeasurementPhase.ERROR
