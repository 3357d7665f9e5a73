"""Token accounting: OpenTelemetry GenAI data points -> charges, idempotent across re-exports and lost
responses, for cumulative and delta temporality; the operator's per-agent counter from ledger commits."""

from __future__ import annotations

import re

import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from agentops_operator import tokenusage as tu
from agentops_operator.models.quota import QuotaSpec
from agentops_operator.tokenexport import points_of

ATTRS = {tu.ATTR_TYPE: "input", tu.ATTR_MODEL: "gpt-4o", tu.ATTR_PROVIDER: "openai"}


def cum(total: float, start: int = 100, at: int = 200, **attrs: str) -> tu.Point:
    return tu.Point({**ATTRS, **attrs}, start, at, total, True)


def delta(total: float, start: int, end: int, **attrs: str) -> tu.Point:
    return tu.Point({**ATTRS, **attrs}, start, end, total, False)


def run(m: tu.Meter, granted: bool = True) -> list[tu.Charge]:
    """Charge everything due, as the exporter does; every charge's outcome known."""
    done = []
    while due := m.due():
        for c in due:
            m.settle(c, granted)
            done.append(c)
    return done


def test_cumulative_charges_the_difference_and_a_reexport_charges_nothing() -> None:
    m = tu.Meter("dev-1", "abc")
    m.observe([cum(600)])
    [c] = run(m)
    assert (c.amount, c.resources) == (600, ("tokens", "tokens/gpt-4o"))
    assert c.holder == "Tokens/dev-1/abc/input/gpt-4o/100/c0-600"
    m.observe([cum(600)])  # the same collection exported again
    assert run(m) == []
    m.observe([cum(500)])  # an older one arriving late
    assert run(m) == []
    m.observe([cum(1000, at=300)])
    [c] = run(m)
    assert (c.amount, c.holder.rsplit("/", 1)[1]) == (400, "c600-1000")
    assert m.charged_tokens == 1000 and m.outstanding() == 0


def test_a_lost_response_is_retried_with_the_same_holder_before_newer_usage() -> None:
    m = tu.Meter("dev-1", "abc")
    m.observe([cum(100)])
    [first] = m.due()  # the API call fails: outcome unknown, nothing settled
    m.observe([cum(250, at=300)])
    [again] = m.due()
    assert again == first  # same holder, same amount: the ledger charges it at most once
    m.settle(again, True)
    [rest] = m.due()
    assert (rest.amount, rest.holder.rsplit("/", 1)[1]) == (150, "c100-250")
    m.settle(rest, True)
    assert m.due() == [] and m.charged_tokens == 250


def test_a_failed_export_is_healed_by_the_next_cumulative_one() -> None:
    m = tu.Meter("dev-1", "abc")
    m.observe([cum(100)])
    m.due()  # failed, never retried as such: the next export carries the total anyway
    m.observe([cum(300, at=300)])
    charges = run(m)
    assert sum(c.amount for c in charges) == 300


def test_series_are_per_type_model_and_process_start() -> None:
    m = tu.Meter("dev-1", "abc")
    m.observe([cum(10), cum(20, **{tu.ATTR_TYPE: "output"}), cum(5, **{tu.ATTR_MODEL: "claude-sonnet-4"}),
               cum(7, start=999, at=1000)])
    charges = run(m)
    assert sorted(c.amount for c in charges) == [5, 7, 10, 20]
    assert len({c.holder for c in charges}) == 4
    assert {c.series.token_type for c in charges} == {"input", "output"}


def test_refused_usage_is_written_off_never_charged_later() -> None:
    m = tu.Meter("dev-1", "abc")
    m.observe([cum(50)])
    run(m, granted=False)
    assert (m.refused_tokens, m.charged_tokens) == (50, 0)
    m.observe([cum(60, at=300)])
    [c] = run(m)
    assert c.amount == 10  # only the new usage is asked for


def test_delta_points_charge_once_per_interval() -> None:
    m = tu.Meter("dev-1", "abc")
    m.observe([delta(30, 0, 10), delta(40, 10, 20)])
    charges = run(m)
    assert [(c.amount, c.holder.rsplit("/", 1)[1]) for c in charges] == [(30, "d0-10"), (40, "d10-20")]
    m.observe([delta(30, 0, 10), delta(40, 10, 20)])  # re-exported
    assert run(m) == []
    m.observe([delta(5, 20, 30)])
    assert [c.amount for c in run(m)] == [5]


def test_delta_pending_is_retried_as_is() -> None:
    m = tu.Meter("dev-1", "abc")
    m.observe([delta(30, 0, 10)])
    [c] = m.due()
    m.observe([delta(30, 0, 10), delta(1, 10, 20)])
    assert m.due() == [c]


def test_model_names_that_are_no_resource_charge_only_tokens_and_holders_round_trip() -> None:
    for model in ("meta-llama/Llama-3.1-8B", "anthropic.claude-3-sonnet-20240229-v1:0", "x" * 400, ""):
        m = tu.Meter("dev-1", "abc")
        m.observe([cum(10, **{tu.ATTR_MODEL: model})])
        [c] = m.due()
        info = tu.parse_holder(c.holder)
        assert info is not None and info.agent == "dev-1" and info.token_type == "input"
        assert len(c.holder) <= tu.MAX_HOLDER
        if model and len(model) < 100:
            assert info.model == model
        if "/" in model or not model or len(model) > 190:
            assert c.resources == ("tokens",)
    bedrock = "anthropic.claude-3-sonnet-20240229-v1:0"
    assert tu.resources_for(bedrock) == ("tokens", f"tokens/{bedrock}")
    assert tu.parse_holder("AgentTask/t1/uid/move/1") is None
    assert tu.parse_holder("Tokens/Not_An_Agent/a/input/-/1/c0-1") is None


def test_the_quota_resource_pattern_allows_a_model_qualifier() -> None:
    QuotaSpec(resource="tokens/gpt-4o-mini", limit=1)
    QuotaSpec(resource="tokens", limit=1)
    for bad in ("tokens/", "Tokens", "tokens/a b", "/gpt"):
        with pytest.raises(ValueError):
            QuotaSpec(resource=bad, limit=1)


def test_agent_and_instance_are_checked() -> None:
    with pytest.raises(ValueError, match="agent"):
        tu.Meter("Dev_1", "abc")
    with pytest.raises(ValueError, match="instance"):
        tu.Meter("dev-1", "a/b")


def test_points_from_the_real_sdk_histogram() -> None:
    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.CUMULATIVE})
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    usage = meter.create_histogram(tu.METRIC, unit="{token}")
    other = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    usage.record(300, ATTRS)
    usage.record(200, ATTRS)
    usage.record(70, {**ATTRS, tu.ATTR_TYPE: "output"})
    other.record(1.5, ATTRS)
    m = tu.Meter("dev-1", "abc")
    m.observe(points_of(reader.get_metrics_data()))
    charges = {c.series.token_type: c.amount for c in run(m)}
    assert charges == {"input": 500, "output": 70}
    usage.record(30, ATTRS)
    m.observe(points_of(reader.get_metrics_data()))
    assert [c.amount for c in run(m)] == [30]


def test_points_from_the_real_sdk_in_delta_temporality() -> None:
    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    usage = MeterProvider(metric_readers=[reader]).get_meter("test").create_histogram(tu.METRIC)
    usage.record(40, ATTRS)
    data = reader.get_metrics_data()
    m = tu.Meter("dev-1", "abc")
    m.observe(points_of(data))
    m.observe(points_of(data))  # the same batch twice
    usage.record(2, ATTRS)
    m.observe(points_of(reader.get_metrics_data()))
    assert [c.amount for c in run(m)] == [40, 2]


def _quota(ns: str, name: str, resource: str, committed: list[tuple[str, int]]) -> dict:
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"resource": resource},
            "status": {"committed": [{"holder": h, "amount": a, "at": "2026-01-01T00:00:00Z"} for h, a in committed]}}


def test_the_operator_counts_each_committed_charge_once_per_namespace() -> None:
    from agentops_operator.cache import store
    from agentops_operator.handlers import tokens

    ns = "tok-unit"
    h1 = "Tokens/dev-1/abc/input/gpt-4o/100/c0-600"
    h2 = "Tokens/dev-1/abc/output/made-up-model/100/c0-40"
    scoped = _quota(ns, "gpt", "tokens/gpt-4o", [])
    store.upsert("quotas", scoped)
    try:
        before = tokens.TOKENS.labels(ns, "dev-1", "input", "gpt-4o")._value.get()
        old = _quota(ns, "tokens", "tokens", [])
        new = _quota(ns, "tokens", "tokens", [(h1, 600), (h2, 40), ("AgentTask/t/u/m/1", 9)])
        assert tokens.observe(old, new) == 640
        assert tokens.observe(new, new) == 0  # no change
        # the same charge committed to the model's quota: not counted twice
        assert tokens.observe(scoped, _quota(ns, "gpt", "tokens/gpt-4o", [(h1, 600)])) == 0
        assert tokens.TOKENS.labels(ns, "dev-1", "input", "gpt-4o")._value.get() - before == 600
        # a model no Quota names is `other`: agents cannot mint label values
        assert tokens.TOKENS.labels(ns, "dev-1", "output", "other")._value.get() >= 40
    finally:
        store.delete("quotas", ns, "gpt")


def test_without_the_agent_label_token_use_is_counted_per_namespace() -> None:
    import dataclasses

    from agentops_operator import settings as settings_mod
    from agentops_operator.handlers import tokens

    ns = "tok-unit-noagent"
    saved = settings_mod.current
    settings_mod.current = dataclasses.replace(saved, metrics_agent_label=False)
    try:
        before = tokens.TOKENS.labels(ns, "", "input", "other")._value.get()
        old = _quota(ns, "tokens", "tokens", [])
        assert tokens.observe(old, _quota(ns, "tokens", "tokens", [("Tokens/dev-9/abc/input/m/100/c0-7", 7)])) == 7
        assert tokens.TOKENS.labels(ns, "", "input", "other")._value.get() - before == 7
        assert tokens.TOKENS.labels(ns, "dev-9", "input", "other")._value.get() == 0
    finally:
        settings_mod.current = saved


def test_the_metric_name_is_prometheus_style() -> None:
    from agentops_operator.handlers import tokens

    assert re.fullmatch(r"agentops_[a-z_]+", tokens.TOKENS._name)
