"""Pure rollout planning: replica maths, revisions, config merge, analysis and the three planners.

The ``Sim`` below plays the Deployment controller (planned replicas become available, or not, in
one tick) and the analysis providers (a function decides each measurement), and runs the package's
own reconcile step (``rollout.step``: plan → apply → measure what is due → plan again → apply), the
one the kopf handler runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentops_operator.conditions import set_condition
from agentops_operator.rollout import (
    REVISION_HASH_LENGTH,
    AnalysisPhase,
    AnalysisRunState,
    AnalysisSpec,
    AnalysisStep,
    BlueGreenSpec,
    CanarySpec,
    Command,
    DeploymentObservation,
    Measurement,
    MeasurementPhase,
    MetricSpec,
    MetricState,
    PauseStep,
    Plan,
    PlanInputs,
    Reason,
    RevisionRecord,
    Role,
    RollingSpec,
    RolloutPhase,
    RolloutState,
    SetWeightStep,
    Step,
    StrategySpec,
    StrategyType,
    Verb,
    aggregate_analysis,
    canary_replicas,
    config_provenance,
    effective_weight,
    merge_config,
    metric_verdict,
    plan,
    queue_depth_replicas,
    record_measurement,
    record_revision,
    resolve_undo_target,
    revision_hash,
    revisions_to_prune,
    split_replicas,
    step,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OK, BAD, MEH, ERR = (MeasurementPhase.SUCCESSFUL, MeasurementPhase.FAILED, MeasurementPhase.INCONCLUSIVE,
                     MeasurementPhase.ERROR)

# ---------------------------------------------------------------------------------------------
# weight → replicas
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (10, 0, (0, 10)),
        (10, 100, (10, 0)),
        (10, 20, (2, 8)),
        (10, 25, (3, 7)),  # ceil(2.5)
        (4, 1, (1, 3)),  # any non-zero weight gets a canary
        (3, 33, (1, 2)),
        (1, 50, (1, 1)),  # surge: stable keeps serving below 100%
        (1, 99, (1, 1)),
        (2, 99, (2, 1)),
        (0, 50, (0, 0)),
        (0, 100, (0, 0)),
    ],
)
def test_split_replicas_examples(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert split_replicas(total, weight) == expected


@pytest.mark.parametrize(("total", "weight"), [(-1, 10), (3, -1), (3, 101)])
def test_split_replicas_rejects_out_of_range(total: int, weight: int) -> None:
    with pytest.raises(ValueError):
        split_replicas(total, weight)


@given(total=st.integers(0, 10_000), weight=st.integers(0, 100))
def test_split_replicas_properties(total: int, weight: int) -> None:
    canary, stable = split_replicas(total, weight)
    assert canary >= 0 and stable >= 0
    assert total <= canary + stable <= total + 1
    if canary + stable == total + 1:
        # The only surge: a partial weight on a total too small to keep a stable replica.
        assert 0 < weight < 100 and stable == 1 and canary == total
    if weight == 0:
        assert (canary, stable) == (0, total)
    if weight == 100:
        assert (canary, stable) == (total, 0)
    if weight > 0 and total >= 1:
        assert canary >= 1
    if weight < 100 and total >= 1:
        assert stable >= 1
    # Never more than one replica above the exact share.
    assert canary - 1 < total * weight / 100 <= canary


@given(total=st.integers(0, 500), w1=st.integers(0, 100), w2=st.integers(0, 100))
def test_split_replicas_is_monotonic_in_weight(total: int, w1: int, w2: int) -> None:
    lo, hi = sorted((w1, w2))
    assert split_replicas(total, lo)[0] <= split_replicas(total, hi)[0]


@given(total=st.integers(0, 200), weight=st.integers(0, 100), avail=st.integers(0, 400))
def test_canary_replicas_never_under_provision(total: int, weight: int, avail: int) -> None:
    canary, stable = canary_replicas(total, weight, avail)
    assert canary == split_replicas(total, weight)[0]
    assert 0 <= stable <= total
    # Desired pods always cover the total, counting only canaries that are actually available.
    assert stable + min(avail, canary) >= total or stable == total
    assert canary + stable <= 2 * total + 1


def test_effective_weight() -> None:
    assert effective_weight(0, 0) == 0
    assert effective_weight(1, 3) == 25
    assert effective_weight(5, 0) == 100


@pytest.mark.parametrize(
    ("open_tasks", "per", "lo", "hi", "expected"),
    [(0, 5, 1, 10, 1), (0, 5, 0, 10, 0), (11, 5, 1, 10, 3), (1000, 5, 1, 10, 10), (-3, 2, 0, 4, 0), (10, 5, 0, 4, 2)],
)
def test_queue_depth_replicas(open_tasks: int, per: int, lo: int, hi: int, expected: int) -> None:
    assert queue_depth_replicas(open_tasks, per, lo, hi) == expected


def test_queue_depth_replicas_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        queue_depth_replicas(1, 0, 0, 1)
    with pytest.raises(ValueError):
        queue_depth_replicas(1, 1, 3, 2)


@given(st.integers(-5, 10_000), st.integers(1, 50), st.integers(0, 20), st.integers(0, 30))
def test_queue_depth_replicas_within_bounds(open_tasks: int, per: int, lo: int, extra: int) -> None:
    hi = lo + extra
    n = queue_depth_replicas(open_tasks, per, lo, hi)
    assert lo <= n <= hi
    if lo < n < hi:
        assert (n - 1) * per < open_tasks <= n * per


# ---------------------------------------------------------------------------------------------
# revisions
# ---------------------------------------------------------------------------------------------

TEMPLATE = {"containers": [{"name": "agent", "image": "ghcr.io/x/agent:1", "env": [{"name": "A", "value": "1"}]}]}


def test_revision_hash_is_short_safe_and_deterministic() -> None:
    h = revision_hash(TEMPLATE, {"temperature": "0.2"})
    assert len(h) == REVISION_HASH_LENGTH
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert h == revision_hash(TEMPLATE, {"temperature": "0.2"})


def test_revision_hash_ignores_key_order_but_not_values() -> None:
    reordered = {"containers": [{"env": [{"value": "1", "name": "A"}], "image": "ghcr.io/x/agent:1", "name": "agent"}]}
    base = revision_hash(TEMPLATE, {"a": "1", "b": "2"})
    assert revision_hash(reordered, {"b": "2", "a": "1"}) == base
    assert revision_hash(TEMPLATE, {"a": "1", "b": "3"}) != base  # config is part of the revision
    changed = {"containers": [{**TEMPLATE["containers"][0], "image": "ghcr.io/x/agent:2"}]}
    assert revision_hash(changed, {"a": "1", "b": "2"}) != base


def test_revision_hash_is_stable_across_processes() -> None:
    # Python's hash() is salted per process; the revision must not be.
    code = (
        "from agentops_operator.rollout import revision_hash;"
        "print(revision_hash({'containers': [{'name': 'a', 'image': 'i'}]}, {'k': 'v'}))"
    )
    root = Path(__file__).resolve().parents[2]
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root / "operator")}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout.strip())
    assert outs == {revision_hash({"containers": [{"name": "a", "image": "i"}]}, {"k": "v"})}


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=6))
def test_revision_hash_independent_of_dict_insertion_order(config: dict[str, str]) -> None:
    reversed_config = dict(reversed(list(config.items())))
    assert revision_hash(TEMPLATE, config) == revision_hash(TEMPLATE, reversed_config)


def test_record_revision_numbers_and_reuse() -> None:
    history: list[RevisionRecord] = []
    rec, changed = record_revision(history, "aaa")
    assert (rec, changed) == (RevisionRecord(1, "aaa"), True)
    history.append(rec)
    assert record_revision(history, "aaa") == (RevisionRecord(1, "aaa"), False)
    history.append(RevisionRecord(2, "bbb"))
    # Going back to an older revision renumbers it as the newest (StatefulSet behaviour).
    assert record_revision(history, "aaa") == (RevisionRecord(3, "aaa"), True)


def test_revisions_to_prune_keeps_live_and_newest() -> None:
    history = [RevisionRecord(i, f"r{i}") for i in range(1, 8)]
    assert revisions_to_prune(history, 3, live=["r1", "r7"]) == ["r2", "r3"]
    assert revisions_to_prune(history, 10, live=[]) == []
    assert revisions_to_prune(history, 0, live=[None, "r7"]) == [f"r{i}" for i in range(1, 7)]
    with pytest.raises(ValueError):
        revisions_to_prune(history, -1, live=[])


def test_resolve_undo_target() -> None:
    history = (RevisionRecord(1, "r1"), RevisionRecord(2, "r2"), RevisionRecord(3, "r3"), RevisionRecord(4, "r4"))
    assert resolve_undo_target(history, "r3", None) == "r2"  # previous relative to stable
    assert resolve_undo_target(history, "r3", 1) == "r1"
    assert resolve_undo_target(history, "r3", 9) is None
    assert resolve_undo_target(history, "r1", None) is None
    assert resolve_undo_target(history, "zzz", None) == "r4"


# ---------------------------------------------------------------------------------------------
# config hierarchy
# ---------------------------------------------------------------------------------------------


def test_merge_config_precedence_global_environment_instance() -> None:
    glob = {"model": "small", "temperature": "0.7", "log": "info"}
    env = {"model": "medium", "region": "eu"}
    inst = {"temperature": "0.1"}
    assert merge_config(glob, env, inst) == {"model": "medium", "temperature": "0.1", "log": "info", "region": "eu"}


def test_merge_config_is_deep_and_none_deletes() -> None:
    glob = {"runtime": {"maxTokens": 1000, "timeout": 30}, "drop": "x"}
    inst = {"runtime": {"timeout": 10, "retries": None}, "drop": None}
    assert merge_config(glob, None, inst) == {"runtime": {"maxTokens": 1000, "timeout": 10}}
    # A scalar replaces a mapping and vice versa.
    assert merge_config({"a": {"b": 1}}, {"a": 2}) == {"a": 2}
    assert merge_config({"a": 2}, {"a": {"b": 1, "c": None}}) == {"a": {"b": 1}}


def test_merge_config_does_not_mutate_layers() -> None:
    glob = {"runtime": {"timeout": 30}}
    merge_config(glob, {"runtime": {"timeout": 1}})
    assert glob == {"runtime": {"timeout": 30}}


flat = st.dictionaries(st.sampled_from("abcdef"), st.one_of(st.none(), st.text(max_size=3)), max_size=6)


@given(flat, flat, flat)
def test_merge_config_last_layer_wins_key_by_key(g: dict, e: dict, i: dict) -> None:
    merged = merge_config(g, e, i)
    for key in set(g) | set(e) | set(i):
        for layer in (i, e, g):
            if key in layer:
                if layer[key] is None:
                    assert key not in merged
                else:
                    assert merged[key] == layer[key]
                break


def test_config_provenance_names_the_winning_layer() -> None:
    layers = [
        ("global", {"model": "s", "runtime": {"timeout": 30, "maxTokens": 5}}),
        ("environment", {"model": "m"}),
        ("instance", {"runtime": {"timeout": 1}, "extra": None}),
    ]
    assert config_provenance(layers) == {
        "model": "environment",
        "runtime.timeout": "instance",
        "runtime.maxTokens": "global",
    }


# ---------------------------------------------------------------------------------------------
# analysis aggregation
# ---------------------------------------------------------------------------------------------


def _state(*phases: MeasurementPhase, start: datetime = T0, step: float = 5) -> MetricState:
    s = MetricState(name="m")
    for i, p in enumerate(phases):
        s = record_measurement(s, Measurement(p, start + timedelta(seconds=step * i)))
    return s


def test_metric_passes_after_count_successes() -> None:
    spec = MetricSpec("m", count=3, interval_seconds=5)
    assert metric_verdict(spec, _state(OK, OK), T0).phase is AnalysisPhase.RUNNING
    assert metric_verdict(spec, _state(OK, OK, OK), T0).phase is AnalysisPhase.SUCCESSFUL


def test_metric_failure_limit() -> None:
    spec = MetricSpec("m", count=3, failure_limit=1)
    assert metric_verdict(spec, _state(BAD), T0).phase is AnalysisPhase.RUNNING
    assert metric_verdict(spec, _state(BAD, OK, OK), T0).phase is AnalysisPhase.SUCCESSFUL
    assert metric_verdict(spec, _state(BAD, BAD), T0).phase is AnalysisPhase.FAILED
    assert metric_verdict(MetricSpec("m", count=3), _state(BAD), T0).phase is AnalysisPhase.FAILED


def test_metric_inconclusive_and_errors() -> None:
    assert metric_verdict(MetricSpec("m", count=2), _state(MEH), T0).phase is AnalysisPhase.INCONCLUSIVE
    assert metric_verdict(MetricSpec("m", count=2, inconclusive_limit=1), _state(MEH, OK), T0).phase \
        is AnalysisPhase.SUCCESSFUL
    spec = MetricSpec("m", count=1, consecutive_error_limit=2)
    assert metric_verdict(spec, _state(ERR, ERR), T0).phase is AnalysisPhase.RUNNING  # errors retry
    assert metric_verdict(spec, _state(ERR, ERR, ERR), T0).phase is AnalysisPhase.ERROR
    assert metric_verdict(spec, _state(ERR, ERR, OK), T0).phase is AnalysisPhase.SUCCESSFUL


def test_metric_due_times() -> None:
    spec = MetricSpec("m", count=3, interval_seconds=7, initial_delay_seconds=2)
    assert metric_verdict(spec, MetricState(name="m"), T0).next_due == T0 + timedelta(seconds=2)
    after_one = _state(OK, start=T0 + timedelta(seconds=2))
    assert metric_verdict(spec, after_one, T0).next_due == T0 + timedelta(seconds=9)


def test_measurements_are_bounded_but_counts_exact() -> None:
    s = MetricState(name="m")
    for i in range(50):
        s = record_measurement(s, Measurement(OK if i % 2 else BAD, T0 + timedelta(seconds=i)), keep=4)
    assert len(s.measurements) == 4
    assert (s.successful, s.failed) == (25, 25)
    assert s.measurements[-1].at == T0 + timedelta(seconds=49)


def test_aggregate_analysis_combines_metrics() -> None:
    spec = AnalysisSpec((MetricSpec("a", count=1), MetricSpec("b", count=2, interval_seconds=10)))
    run = AnalysisRunState(run_id="r", started_at=T0)
    v = aggregate_analysis(spec, run, T0)
    assert v.phase is AnalysisPhase.RUNNING and set(v.due) == {"a", "b"}
    run = run.with_measurement("a", Measurement(OK, T0)).with_measurement("b", Measurement(OK, T0))
    v = aggregate_analysis(spec, run, T0 + timedelta(seconds=1))
    assert v.phase is AnalysisPhase.RUNNING and v.due == () and v.next_due == T0 + timedelta(seconds=10)
    failed = run.with_measurement("b", Measurement(BAD, T0 + timedelta(seconds=10), value="0.3"))
    v = aggregate_analysis(spec, failed, T0 + timedelta(seconds=10))
    assert v.phase is AnalysisPhase.FAILED and "b" in v.message and "0.3" in v.message
    passed = run.with_measurement("b", Measurement(OK, T0 + timedelta(seconds=10)))
    assert aggregate_analysis(spec, passed, T0 + timedelta(seconds=10)).phase is AnalysisPhase.SUCCESSFUL
    assert aggregate_analysis(AnalysisSpec(()), run, T0).phase is AnalysisPhase.SUCCESSFUL


@given(st.lists(st.sampled_from([OK, BAD, MEH]), max_size=12), st.integers(1, 6), st.integers(0, 3))
def test_metric_verdict_matches_counts(phases: list[MeasurementPhase], count: int, limit: int) -> None:
    spec = MetricSpec("m", count=count, failure_limit=limit, inconclusive_limit=limit)
    v = metric_verdict(spec, _state(*phases), T0)
    fails, mehs = phases.count(BAD), phases.count(MEH)
    if fails > limit:
        assert v.phase is AnalysisPhase.FAILED
    elif mehs > limit:
        assert v.phase is AnalysisPhase.INCONCLUSIVE
    elif len(phases) >= count:
        assert v.phase is AnalysisPhase.SUCCESSFUL
    else:
        assert v.phase is AnalysisPhase.RUNNING and v.next_due is not None


# ---------------------------------------------------------------------------------------------
# Simulator
# ---------------------------------------------------------------------------------------------

Analyse = Callable[[str, str], MeasurementPhase]  # (run id, metric) → result


@dataclass
class Sim:
    strategy: StrategySpec
    desired: str = "new"
    replicas: int = 4
    stable: str | None = "old"
    healthy: Callable[[str], bool] = lambda rev: True
    analyse: Analyse = lambda run_id, metric: OK
    now: datetime = T0
    state: RolloutState = field(default_factory=RolloutState)
    obs: dict[str, DeploymentObservation] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)
    history: tuple[RevisionRecord, ...] = ()
    plans: list[Plan] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    measured_runs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.stable:
            self.state = RolloutState(stable_revision=self.stable).evolve(current_revision=self.stable)
            n = self.replicas
            self.obs = {self.stable: DeploymentObservation(self.stable, n, n, n, n, n)}

    def inputs(self) -> PlanInputs:
        return PlanInputs(self.now, self.strategy, self.desired, self.replicas, self.state, dict(self.obs),
                          tuple(self.commands), self.history)

    def tick(self, dt: float = 1.0) -> Plan:
        """One reconcile, as the handler runs it: ``rollout.step`` with this simulator's apply and measure."""
        result = step(self.inputs(), apply=self._apply_plan, measure=self.measure, clock=lambda: self.now)
        self.state = result.plan.state
        self.now += timedelta(seconds=dt)
        return result.plan

    def measure(self, p: Plan) -> AnalysisRunState:
        run = p.state.analysis
        assert run is not None
        for metric in p.measure:
            run = run.with_measurement(metric, Measurement(self.analyse(run.run_id, metric), self.now))
            self.measured_runs.append(run.run_id)
        return run

    def _apply_plan(self, p: Plan) -> None:
        self.commands = [c for c in self.commands if c.nonce not in {a.id for a in p.acks}]
        self.acked += [a.id for a in p.acks]
        self.events += [e.reason for e in p.events]
        self.apply(p)
        self.plans.append(p)

    def apply(self, p: Plan) -> None:
        """The Deployment controller: planned pods of a healthy revision are available next tick."""
        new: dict[str, DeploymentObservation] = {}
        for d in p.deployments:
            if d.replicas == 0 and d.revision not in self.obs:
                continue  # as the handler: no Deployment is created to keep at zero
            if d.role is Role.ROLLING:
                # One in-place Deployment: a stuck update keeps old pods (replicas above spec).
                ok = self.healthy(d.revision)
                n = d.replicas
                new[d.revision] = DeploymentObservation(d.revision, n, n if ok else n + 1, n if ok else 1,
                                                        n if ok else n - 1, n if ok else n - 1)
                continue
            avail = d.replicas if self.healthy(d.revision) else 0
            new[d.revision] = DeploymentObservation(d.revision, d.replicas, d.replicas, d.replicas, avail, avail)
        self.obs = new

    def run(self, until: Callable[[Plan], bool], max_ticks: int = 500, dt: float = 1.0) -> Plan:
        for _ in range(max_ticks):
            seen = len(self.plans)
            self.tick(dt)
            for p in self.plans[seen:]:  # a reconcile may apply two plans
                if until(p):
                    return p
        raise AssertionError(f"condition not reached; last plan: {self.plans[-1]}")

    def command(self, verb: Verb, nonce: str, **kw: object) -> None:
        self.commands.append(Command(verb, nonce, **kw))  # type: ignore[arg-type]


def healthy_on(rev: str) -> Callable[[Plan], bool]:
    return lambda p: p.phase is RolloutPhase.HEALTHY and p.state.stable_revision == rev and p.desired_revision == rev


def degraded(p: Plan) -> bool:
    return p.phase is RolloutPhase.DEGRADED


def analysis(name: str = "m", count: int = 1, interval: float = 2, failure_limit: int = 0) -> AnalysisSpec:
    return AnalysisSpec((MetricSpec(name, count=count, interval_seconds=interval, failure_limit=failure_limit),))


def canary(*steps: Step, deadline: float = 30) -> StrategySpec:
    return StrategySpec(type=StrategyType.CANARY, progress_deadline_seconds=deadline, canary=CanarySpec(steps))


def blue_green(deadline: float = 30, **kw: object) -> StrategySpec:
    return StrategySpec(type=StrategyType.BLUE_GREEN, progress_deadline_seconds=deadline,
                        blue_green=BlueGreenSpec(**kw))  # type: ignore[arg-type]


def rolling(deadline: float = 30, post: AnalysisSpec | None = None) -> StrategySpec:
    return StrategySpec(type=StrategyType.ROLLING, progress_deadline_seconds=deadline, rolling=RollingSpec(post))


def reps(p: Plan) -> dict[str, int]:
    return p.replicas_by_revision()


# ---------------------------------------------------------------------------------------------
# Canary
# ---------------------------------------------------------------------------------------------


def test_canary_happy_path_reaches_healthy_on_new_revision() -> None:
    sim = Sim(canary(SetWeightStep(25), PauseStep(5), AnalysisStep(analysis(count=2)), SetWeightStep(50)))
    weights_seen = []
    sim.run(lambda p: (weights_seen.append(p.canary_weight), healthy_on("new")(p))[1])
    last = sim.plans[-1]
    assert reps(last) == {"new": 4}
    assert last.deployments[0].role is Role.STABLE
    assert [w for w in dict.fromkeys(weights_seen) if w is not None] == [25, 50, 100]
    assert "RolloutCompleted" in sim.events and "AnalysisSuccessful" in sim.events
    assert all(c.status for c in last.conditions if c.type in ("Ready", "Healthy", "Progressing"))
    assert not any(c.status for c in last.conditions if c.type in ("Paused", "RolledBack"))


def test_canary_weight_steps_shift_replicas_without_losing_capacity() -> None:
    sim = Sim(canary(SetWeightStep(25), PauseStep(), deadline=60), replicas=4)
    p = sim.tick()
    assert reps(p) == {"old": 4, "new": 1}  # canary not available yet: stable keeps all 4
    p = sim.tick()
    assert p.phase is RolloutPhase.PAUSED and reps(p) == {"old": 3, "new": 1}


def test_pause_with_duration_resumes_after_it_elapses() -> None:
    sim = Sim(canary(SetWeightStep(50), PauseStep(10), SetWeightStep(100)))
    sim.run(lambda p: p.current_step == "pause 10s")
    entered = sim.now - timedelta(seconds=1)
    p = sim.run(lambda p: p.phase is not RolloutPhase.PAUSED)
    assert (sim.now - timedelta(seconds=1)) - entered >= timedelta(seconds=10)
    assert p.current_step != "pause 10s"
    paused_plans = [q for q in sim.plans if q.current_step == "pause 10s"]
    assert paused_plans[0].requeue_after == pytest.approx(10)  # the handler wakes when it ends
    sim.run(healthy_on("new"))


def test_pause_without_duration_waits_for_promote() -> None:
    sim = Sim(canary(SetWeightStep(50), PauseStep(), SetWeightStep(75)))
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    for _ in range(100):
        p = sim.tick(dt=60)
        assert p.phase is RolloutPhase.PAUSED and p.canary_weight == 50 and p.requeue_after is None
    sim.command(Verb.PROMOTE, "n1")
    p = sim.tick()
    assert p.acks and p.acks[0].applied and p.acks[0].id == "n1"
    assert p.canary_weight == 75
    sim.run(healthy_on("new"))


def test_promote_full_skips_remaining_steps() -> None:
    steps = (SetWeightStep(10), PauseStep(), AnalysisStep(analysis()), SetWeightStep(50), PauseStep())
    sim = Sim(canary(*steps), replicas=10, analyse=lambda r, m: BAD)  # the analysis would fail
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    sim.command(Verb.PROMOTE, "full-1", full=True)
    p = sim.tick()
    assert p.acks[0].applied and p.canary_weight == 100 and p.deployment("new").replicas == 10
    sim.run(healthy_on("new"))
    assert sim.measured_runs == []  # the analysis step never ran


def test_failed_analysis_aborts_canary_scales_to_zero_and_degrades() -> None:
    sim = Sim(canary(SetWeightStep(25), AnalysisStep(analysis(count=3)), SetWeightStep(100)),
              analyse=lambda run, metric: BAD)
    p = sim.run(degraded)
    assert reps(p) == {"old": 4, "new": 0}
    assert p.state.stable_revision == "old" and p.state.rollout.rejected_revision == "new"
    assert p.reason == Reason.ANALYSIS_FAILED.value
    rolled = next(c for c in p.conditions if c.type == "RolledBack")
    assert rolled.status and rolled.reason == Reason.ANALYSIS_FAILED.value and "new" in rolled.message
    assert "RolledBack" in sim.events and "AnalysisFailed" in sim.events
    assert p.desired_revision == "new" and p.target_revision == "old"  # drift visible, spec untouched
    # And it stays that way: no automatic re-rollout of the same revision.
    for _ in range(20):
        p = sim.tick(dt=30)
        assert p.phase is RolloutPhase.DEGRADED and reps(p) == {"old": 4, "new": 0}


def test_stable_untouched_during_failed_canary() -> None:
    sim = Sim(canary(SetWeightStep(50), AnalysisStep(analysis(count=2))), analyse=lambda r, m: BAD)
    sim.run(degraded)
    for p in sim.plans:
        assert p.deployment("old") is not None and p.deployment("old").replicas >= 2


def test_abort_scales_canary_to_zero() -> None:
    sim = Sim(canary(SetWeightStep(50), PauseStep()))
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    sim.command(Verb.ABORT, "a1")
    p = sim.tick()
    assert p.acks[0].applied
    assert p.phase is RolloutPhase.DEGRADED and p.reason == Reason.ABORTED_BY_USER.value
    assert reps(p) == {"old": 4, "new": 0}


def test_progress_deadline_rolls_back_canary() -> None:
    sim = Sim(canary(SetWeightStep(25), PauseStep(), deadline=10), healthy=lambda rev: rev != "new")
    p = sim.run(degraded, max_ticks=30)
    assert p.reason == Reason.PROGRESS_DEADLINE_EXCEEDED.value
    assert reps(p) == {"old": 4, "new": 0}
    assert 10 <= len(sim.plans) <= 12
    # While waiting, the handler is asked to look again before the deadline.
    assert all(q.requeue_after is not None and q.requeue_after <= 10 for q in sim.plans[:-1])


def test_retry_after_abort_restarts_from_first_step() -> None:
    verdicts = iter([BAD])
    sim = Sim(canary(SetWeightStep(50), AnalysisStep(analysis())), analyse=lambda r, m: next(verdicts, OK))
    sim.run(degraded)
    sim.command(Verb.RETRY, "r1")
    p = sim.tick()
    assert p.acks[0].applied and p.phase is RolloutPhase.PROGRESSING and p.step_index == 0
    sim.run(healthy_on("new"))
    assert len(set(sim.measured_runs)) == 2  # a new analysis run, not the failed one again


def test_new_spec_after_rollback_rolls_out_without_retry() -> None:
    sim = Sim(canary(SetWeightStep(50), AnalysisStep(analysis())), analyse=lambda r, m: BAD if "bad" in r else OK)
    sim.desired = "bad"
    sim.run(degraded)
    sim.desired = "fixed"  # Git moved on
    sim.run(healthy_on("fixed"))
    assert not next(c for c in sim.plans[-1].conditions if c.type == "RolledBack").status


def test_new_desired_revision_mid_rollout_restarts_and_drops_old_canary() -> None:
    sim = Sim(canary(SetWeightStep(50), PauseStep()))
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    sim.desired = "newer"
    p = sim.tick()
    assert set(reps(p)) == {"old", "newer"} and p.step_index == 0


def test_promote_when_nothing_to_promote_is_acknowledged_not_applied() -> None:
    sim = Sim(canary(SetWeightStep(50)), desired="old")
    sim.command(Verb.PROMOTE, "p1")
    sim.command(Verb.RETRY, "r1")
    sim.command(Verb.ABORT, "a1")
    p = sim.tick()
    assert {a.id: a.applied for a in p.acks} == {"p1": False, "r1": False, "a1": False}
    assert p.phase is RolloutPhase.HEALTHY and sim.commands == []


def test_inconclusive_analysis_pauses_for_a_human() -> None:
    sim = Sim(canary(SetWeightStep(50), AnalysisStep(analysis()), SetWeightStep(100)), analyse=lambda r, m: MEH)
    p = sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    assert p.reason == Reason.ANALYSIS_INCONCLUSIVE.value
    assert next(c for c in p.conditions if c.type == "Paused").reason == Reason.ANALYSIS_INCONCLUSIVE.value
    for _ in range(5):
        assert sim.tick(dt=60).phase is RolloutPhase.PAUSED
    assert sim.events.count(Reason.ANALYSIS_INCONCLUSIVE.value) == 1  # one Event, not one per reconcile
    sim.command(Verb.PROMOTE, "p1")
    sim.run(healthy_on("new"))


def test_inconclusive_then_retry_reruns_the_analysis() -> None:
    results = iter([MEH, OK])
    sim = Sim(canary(SetWeightStep(50), AnalysisStep(analysis())), analyse=lambda r, m: next(results))
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    sim.command(Verb.RETRY, "r1")
    sim.run(healthy_on("new"))
    assert len(set(sim.measured_runs)) == 2


def test_analysis_with_interval_takes_count_measurements() -> None:
    sim = Sim(canary(SetWeightStep(50), AnalysisStep(analysis(count=3, interval=10))))
    sim.run(healthy_on("new"))
    assert len(sim.measured_runs) == 3
    assert (last := sim.plans[-1].state.last_analysis) is not None and last.phase is AnalysisPhase.SUCCESSFUL


def test_undo_to_previous_revision_after_completed_rollout() -> None:
    history = (RevisionRecord(1, "old"), RevisionRecord(2, "new"))
    sim = Sim(canary(SetWeightStep(50)), history=history)
    sim.run(healthy_on("new"))
    sim.command(Verb.UNDO, "u1")
    p = sim.tick()
    assert p.acks[0].applied and p.current_step == "undo"
    p = sim.run(lambda p: p.phase is RolloutPhase.HEALTHY)
    assert p.state.stable_revision == "old" and reps(p) == {"old": 4, "new": 0}
    assert p.desired_revision == "new"  # spec untouched: drift shown
    rb = next(c for c in p.conditions if c.type == "RolledBack")
    assert rb.status and rb.reason == Reason.UNDONE_BY_USER.value


def test_undo_to_unknown_revision_is_refused() -> None:
    sim = Sim(canary(SetWeightStep(50)), history=(RevisionRecord(1, "old"),))
    sim.command(Verb.UNDO, "u1", to_revision=7)
    p = sim.tick()
    assert not p.acks[0].applied and "7" in p.acks[0].message


def test_undo_during_rollout_goes_back_to_stable() -> None:
    sim = Sim(canary(SetWeightStep(50), PauseStep()), history=(RevisionRecord(1, "old"), RevisionRecord(2, "new")))
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    sim.command(Verb.UNDO, "u1", to_revision=1)
    p = sim.tick()
    assert p.acks[0].applied and reps(p) == {"old": 4, "new": 0}


def test_first_deploy_has_no_steps_and_cannot_roll_back() -> None:
    sim = Sim(canary(SetWeightStep(10), PauseStep()), stable=None)
    p = sim.run(healthy_on("new"), max_ticks=3)
    assert reps(p) == {"new": 4}
    stuck = Sim(canary(SetWeightStep(10)), stable=None, healthy=lambda r: False)
    p = stuck.run(degraded, max_ticks=40)
    assert p.reason == Reason.PROGRESS_DEADLINE_EXCEEDED.value and reps(p) == {"new": 4}
    stuck.healthy = lambda r: True
    stuck.run(healthy_on("new"), max_ticks=3)


def test_scale_to_zero_and_back() -> None:
    sim = Sim(canary(SetWeightStep(50)), desired="old")
    sim.replicas = 0
    p = sim.tick()
    assert reps(p) == {"old": 0} and p.phase is RolloutPhase.PROGRESSING  # the Deployment has not caught up yet
    assert sim.tick().phase is RolloutPhase.HEALTHY
    sim.replicas = 3
    p = sim.tick()
    assert reps(p) == {"old": 3} and p.phase is RolloutPhase.PROGRESSING
    assert sim.tick().phase is RolloutPhase.HEALTHY


@pytest.mark.parametrize("strategy", [canary(SetWeightStep(50)), rolling(), blue_green()])
def test_zero_replicas_from_the_start_is_healthy_and_idle(strategy: StrategySpec) -> None:
    # spec.replicas: 0 on a new Agent: no Deployment is created, and that is the goal reached, not a
    # rollout waiting "0/0 available" and re-planned every poll forever.
    sim = Sim(strategy, stable=None, desired="new", replicas=0)
    p = sim.tick()
    assert p.phase is RolloutPhase.HEALTHY and p.state.stable_revision == "new"
    assert sim.obs == {} and p.requeue_after is None
    again = sim.tick()
    assert again.phase is RolloutPhase.HEALTHY and again.requeue_after is None and again.events == ()
    # A new revision at zero replicas completes without pods as well.
    sim.desired = "newer"
    sim.run(healthy_on("newer"), max_ticks=5)
    sim.now += timedelta(seconds=60)  # past blue-green's scaleDownDelaySeconds
    p = sim.tick()
    assert p.phase is RolloutPhase.HEALTHY and sim.obs == {} and p.requeue_after is None


def test_zero_replicas_after_running_scales_down_then_idles() -> None:
    sim = Sim(rolling(), desired="old", replicas=3)
    sim.replicas = 0
    sim.run(healthy_on("old"), max_ticks=3)
    p = sim.tick()
    assert reps(p) == {"old": 0} and p.phase is RolloutPhase.HEALTHY and p.requeue_after is None


# ---------------------------------------------------------------------------------------------
# Blue-green
# ---------------------------------------------------------------------------------------------


def test_blue_green_happy_path_switches_then_scales_down_after_delay() -> None:
    sim = Sim(blue_green(scale_down_delay_seconds=20, pre_promotion_analysis=analysis(),
                         post_promotion_analysis=analysis()))
    p = sim.tick()
    assert p.active_revision == "old" and p.preview_revision == "new" and reps(p) == {"old": 4, "new": 4}
    p = sim.run(lambda p: p.active_revision == "new")
    switched = sim.now
    p = sim.run(healthy_on("new"))
    assert "old" in reps(p)  # kept for a fast switch-back
    p = sim.run(lambda p: "old" not in reps(p))
    assert sim.now - switched >= timedelta(seconds=20)
    assert reps(p) == {"new": 4} and p.active_revision == "new" and p.preview_revision is None


def test_blue_green_preview_replica_count_then_full_before_switch() -> None:
    sim = Sim(blue_green(preview_replica_count=1, auto_promotion_enabled=False))
    p = sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    assert reps(p) == {"old": 4, "new": 1} and p.active_revision == "old"
    sim.command(Verb.PROMOTE, "p")
    p = sim.tick()
    assert reps(p)["new"] == 4 and p.active_revision == "old"  # full size first
    p = sim.run(lambda p: p.active_revision == "new")
    assert reps(p)["new"] == 4


def test_blue_green_auto_promotion_seconds() -> None:
    sim = Sim(blue_green(auto_promotion_seconds=15))
    sim.run(lambda p: p.reason == Reason.WAITING_AUTO_PROMOTION.value)
    ready = sim.now
    sim.run(lambda p: p.active_revision == "new")
    assert sim.now - ready >= timedelta(seconds=15)


def test_blue_green_pre_promotion_failure_keeps_active() -> None:
    sim = Sim(blue_green(pre_promotion_analysis=analysis()), analyse=lambda r, m: BAD)
    p = sim.run(degraded)
    assert all(q.active_revision == "old" for q in sim.plans)
    assert reps(p) == {"old": 4, "new": 0} and p.preview_revision is None


def test_blue_green_post_promotion_failure_switches_back() -> None:
    sim = Sim(blue_green(post_promotion_analysis=analysis(count=2)),
              analyse=lambda r, m: BAD if "/post/" in r else OK)
    sim.run(lambda p: p.active_revision == "new")
    p = sim.run(degraded)
    assert p.active_revision == "old" and reps(p) == {"old": 4, "new": 0}
    assert "SwitchedBack" in sim.events and p.reason == Reason.ANALYSIS_FAILED.value
    # the old revision was never scaled down while the new one was on trial
    assert all(q.deployment("old").replicas == 4 for q in sim.plans)


def test_blue_green_preview_never_ready_rolls_back() -> None:
    sim = Sim(blue_green(deadline=8), healthy=lambda r: r != "new")
    p = sim.run(degraded, max_ticks=20)
    assert p.reason == Reason.PROGRESS_DEADLINE_EXCEEDED.value and p.active_revision == "old"


def test_blue_green_manual_promotion() -> None:
    sim = Sim(blue_green(auto_promotion_enabled=False))
    p = sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    assert p.reason == Reason.AWAITING_PROMOTION.value
    for _ in range(10):
        assert sim.tick(dt=100).active_revision == "old"
    sim.command(Verb.PROMOTE, "go")
    sim.run(healthy_on("new"))


# ---------------------------------------------------------------------------------------------
# Rolling
# ---------------------------------------------------------------------------------------------


def test_rolling_happy_path() -> None:
    sim = Sim(rolling(post=analysis()))
    p = sim.tick()
    assert p.deployments == (p.deployments[0],) and p.deployments[0].role is Role.ROLLING
    assert reps(p) == {"new": 4}
    sim.run(healthy_on("new"))


def test_rolling_progress_deadline_rolls_back_to_stable_template() -> None:
    sim = Sim(rolling(deadline=12), healthy=lambda r: r != "new")
    p = sim.run(degraded, max_ticks=30)
    assert p.reason == Reason.PROGRESS_DEADLINE_EXCEEDED.value
    assert reps(p) == {"old": 4}  # the one Deployment goes back to the stable template
    assert "RolledBack" in sim.events
    p = sim.tick()
    assert p.phase is RolloutPhase.DEGRADED and next(c for c in p.conditions if c.type == "Ready").status


def test_rolling_failed_post_update_analysis_rolls_back() -> None:
    sim = Sim(rolling(post=analysis(count=2)), analyse=lambda r, m: BAD)
    p = sim.run(degraded)
    assert reps(p) == {"old": 4} and p.reason == Reason.ANALYSIS_FAILED.value


def test_rolling_undo_to_revision() -> None:
    history = (RevisionRecord(1, "v1"), RevisionRecord(2, "old"), RevisionRecord(3, "new"))
    sim = Sim(rolling(), history=history)
    sim.run(healthy_on("new"))
    sim.command(Verb.UNDO, "u", to_revision=1)
    p = sim.tick()
    assert reps(p) == {"v1": 4}
    p = sim.run(lambda p: p.state.stable_revision == "v1")
    assert p.phase is RolloutPhase.HEALTHY


# ---------------------------------------------------------------------------------------------
# Property tests over whole rollouts
# ---------------------------------------------------------------------------------------------

step_strategy = st.one_of(
    st.builds(SetWeightStep, st.integers(0, 100)),
    st.builds(PauseStep, st.one_of(st.none(), st.integers(1, 40).map(float))),
    st.builds(lambda c: AnalysisStep(analysis(count=c, interval=3)), st.integers(1, 3)),
)


def _auto_promote(sim: Sim, p: Plan) -> None:
    if p.phase is RolloutPhase.PAUSED and not sim.commands and p.reason in (
        Reason.AWAITING_PROMOTION.value, Reason.ANALYSIS_INCONCLUSIVE.value
    ):
        sim.command(Verb.PROMOTE, f"p{len(sim.plans)}")


def _check_invariants(sim: Sim, p: Plan) -> None:
    for d in p.deployments:
        assert d.replicas >= 0
        assert d.replicas <= sim.replicas
    live = [d for d in p.deployments if d.role is not Role.RETIRED or d.replicas]
    assert sum(d.replicas for d in live) <= 2 * sim.replicas + 1
    if p.phase is not RolloutPhase.DEGRADED and sim.stable and p.state.stable_revision == sim.stable:
        # The stable revision plus available canaries always cover the total.
        stable = p.deployment(sim.stable)
        assert stable is not None
        canary_avail = sum(min(sim.obs.get(d.revision, DeploymentObservation(d.revision, 0)).available_replicas,
                               d.replicas) for d in p.deployments if d.role is Role.CANARY)
        assert stable.replicas + canary_avail >= sim.replicas or stable.replicas == sim.replicas


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step_strategy, max_size=8), total=st.integers(0, 12))
def test_any_canary_with_healthy_pods_and_passing_analysis_ends_promoted(steps: list[Step], total: int) -> None:
    sim = Sim(canary(*steps, deadline=50), replicas=total)
    for _ in range(400):
        p = sim.tick(dt=2)
        _check_invariants(sim, p)
        if healthy_on("new")(p):
            break
        assert p.phase is not RolloutPhase.DEGRADED
        _auto_promote(sim, p)
    else:
        raise AssertionError("rollout never completed")
    assert reps(p) == {"new": total} and p.state.stable_revision == "new"
    # Weight 100 (a setWeight 100 step or the final promotion) means the canary has every replica.
    for q in sim.plans:
        if q.canary_weight == 100 and q.canary_revision:
            assert q.deployment("new").replicas == total


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(step_strategy, max_size=4),
    after=st.lists(step_strategy, max_size=3),
    total=st.integers(1, 10),
    fail_at=st.integers(0, 2),
)
def test_any_failing_canary_ends_degraded_with_stable_at_full(
    before: list[Step], after: list[Step], total: int, fail_at: int
) -> None:
    gate = AnalysisStep(analysis("gate", count=3, interval=3))
    calls: dict[str, int] = {}

    def analyse(run: str, metric: str) -> MeasurementPhase:
        if metric != "gate":
            return OK
        calls[run] = calls.get(run, 0) + 1
        return BAD if calls[run] > fail_at else OK

    sim = Sim(canary(*before, gate, *after, deadline=50), replicas=total, analyse=analyse)
    for _ in range(400):
        p = sim.tick(dt=2)
        _check_invariants(sim, p)
        if p.phase is RolloutPhase.DEGRADED:
            break
        assert p.state.stable_revision == "old"
        _auto_promote(sim, p) if p.reason != Reason.ANALYSIS_INCONCLUSIVE.value else None
    else:
        raise AssertionError("never degraded")
    assert reps(p) == {"old": total, "new": 0}
    assert p.reason == Reason.ANALYSIS_FAILED.value and p.state.rollout.rejected_revision == "new"


@settings(max_examples=80, deadline=None)
@given(
    strategy=st.sampled_from(["canary", "blueGreen", "rolling"]),
    total=st.integers(1, 8),
    deadline=st.integers(3, 30),
)
def test_pods_never_ready_always_roll_back_after_the_deadline(strategy: str, total: int, deadline: int) -> None:
    spec = {
        "canary": canary(SetWeightStep(20), PauseStep(), deadline=deadline),
        "blueGreen": blue_green(deadline=deadline),
        "rolling": rolling(deadline=deadline),
    }[strategy]
    sim = Sim(spec, replicas=total, healthy=lambda r: r != "new")
    p = sim.run(degraded, max_ticks=deadline + 5)
    assert p.reason == Reason.PROGRESS_DEADLINE_EXCEEDED.value
    assert reps(p)["old"] == total and reps(p).get("new", 0) == 0
    assert len(sim.plans) >= deadline  # not before the deadline
    assert p.active_revision in ("old", None)


@settings(max_examples=60, deadline=None)
@given(
    commands=st.lists(st.sampled_from(list(Verb)), max_size=6),
    gaps=st.lists(st.integers(1, 20), min_size=6, max_size=6),
)
def test_random_commands_keep_invariants_and_are_all_acknowledged(commands: list[Verb], gaps: list[int]) -> None:
    history = (RevisionRecord(1, "older"), RevisionRecord(2, "old"), RevisionRecord(3, "new"))
    sim = Sim(canary(SetWeightStep(30), PauseStep(10), AnalysisStep(analysis()), PauseStep(), deadline=40),
              history=history)
    sim.obs["older"] = DeploymentObservation("older", 0)
    sent = []
    for i, verb in enumerate(commands):
        for _ in range(gaps[i]):
            _check_invariants(sim, sim.tick())
        sim.command(verb, f"c{i}")
        sent.append(f"c{i}")
        _check_invariants(sim, sim.tick())
    assert sorted(sim.acked) == sorted(sent)  # every command answered exactly once
    for q in sim.plans:
        assert q.state.stable_revision in ("old", "new", "older")


def test_plan_is_pure() -> None:
    sim = Sim(canary(SetWeightStep(50), AnalysisStep(analysis())))
    sim.tick()
    inputs = sim.inputs()
    assert plan(inputs) == plan(inputs)


def test_negative_replicas_rejected() -> None:
    with pytest.raises(ValueError):
        plan(PlanInputs(T0, canary(), "x", -1))


# ---------------------------------------------------------------------------------------------
# conditions
# ---------------------------------------------------------------------------------------------


def test_conditions_keep_transition_time_until_status_flips() -> None:
    # The handler writes each plan condition with conditions.set_condition.
    first = set_condition([], "Healthy", False, "NewRevision", "", 1, T0)
    assert first[0]["lastTransitionTime"] == "2025-03-01T12:00:00Z" and first[0]["observedGeneration"] == 1
    later = T0 + timedelta(minutes=5)
    same = set_condition(first, "Healthy", False, "Scaling", "msg", 2, later)
    assert same[0]["lastTransitionTime"] == "2025-03-01T12:00:00Z" and same[0]["reason"] == "Scaling"
    flipped = set_condition(same, "Healthy", True, "RolloutCompleted", "", 2, later)
    assert flipped[0]["lastTransitionTime"] == "2025-03-01T12:05:00Z" and flipped[0]["status"] == "True"


def test_inconclusive_event_once_per_run_and_again_after_retry() -> None:
    sim = Sim(canary(SetWeightStep(50), AnalysisStep(analysis()), SetWeightStep(100)), analyse=lambda r, m: MEH)
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    for _ in range(3):
        sim.tick(dt=30)
    assert sim.events.count(Reason.ANALYSIS_INCONCLUSIVE.value) == 1
    sim.command(Verb.RETRY, "r1")
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED and p.state.rollout.attempt == 1)
    sim.tick(dt=30)
    assert sim.events.count(Reason.ANALYSIS_INCONCLUSIVE.value) == 2


def test_status_message_does_not_change_while_waiting_on_a_timed_pause() -> None:
    # A countdown in the message would rewrite status on every reconcile.
    sim = Sim(canary(SetWeightStep(50), PauseStep(60)))
    sim.run(lambda p: p.phase is RolloutPhase.PAUSED)
    messages = {sim.tick(dt=5).message for _ in range(5)}
    assert len(messages) == 1 and "12:01:" in messages.pop()
