"""Token budgets for agents: an OpenTelemetry metric exporter that charges LLM usage to Quotas.

An agent records its LLM usage with the OpenTelemetry SDK as the GenAI semantic conventions say
(histogram `gen_ai.client.token.usage`), and registers this exporter on its MeterProvider. Each
collection (periodic, or `force_flush()`) charges the new usage to the namespace's Quotas whose
resource is `tokens` or `tokens/<model>` (and whose selector matches the Agent's labels), with the
agent's own credentials, through `quota_client.charge_for`: reserved on every matching Quota, then
committed, or none when one refuses. The admission policy agentops-quota-status lets only the
ServiceAccount agent-<agent> add holders `Tokens/<agent>/...`, so a charge is bound to the identity
that made it; the operator counts committed charges per agent (`agentops_agent_tokens_total`).

    from agentops_operator.tokenexport import TokenBudget, TokenBudgetExceeded
    budget = TokenBudget(worker)                  # worker.Worker: its API client, namespace and Agent
    meter = budget.meter_provider().get_meter("my-agent")
    usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    budget.require()                              # before an LLM call: raises once a Hard quota refused
    usage.record(812, {"gen_ai.token.type": "input", "gen_ai.request.model": "gpt-4o",
                       "gen_ai.provider.name": "openai"})
    budget.flush()                                # charge now (also every `interval` seconds)

`pip install 'agentops-operator[otel]'` brings the SDK; the operator itself never imports this module.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)

from . import GROUP, VERSION, quota_client, selectors
from . import tokenusage as tu

log = logging.getLogger(__name__)


class TokenBudgetExceeded(RuntimeError):
    """A Hard token quota refused (or would refuse) usage: stop spending until `reset_at`."""

    def __init__(self, message: str, reset_at: datetime | None = None, refused_tokens: int = 0) -> None:
        super().__init__(message)
        self.reset_at = reset_at
        self.refused_tokens = refused_tokens


@dataclass(frozen=True)
class Refusal:
    message: str
    reset_at: datetime | None
    at: datetime


def points_of(data: MetricsData) -> Iterator[tu.Point]:
    """The data points of `gen_ai.client.token.usage` in one collection."""
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != tu.METRIC:
                    continue
                cumulative = getattr(metric.data, "aggregation_temporality", None) != AggregationTemporality.DELTA
                for dp in metric.data.data_points:
                    if isinstance(dp, HistogramDataPoint):
                        yield tu.Point(dict(dp.attributes or {}), dp.start_time_unix_nano, dp.time_unix_nano,
                                       dp.sum, cumulative)


class QuotaTokenExporter(MetricExporter):
    """Charges `gen_ai.client.token.usage` to the token Quotas (see the module doc). Cumulative temporality
    is asked for: a failed export is healed by the next one, and a re-export charges nothing."""

    def __init__(self, api: Any, namespace: str, agent: str, labels: dict[str, str] | None = None,
                 instance: str | None = None) -> None:
        super().__init__(preferred_temporality={Histogram: AggregationTemporality.CUMULATIVE})
        self.api, self.namespace, self.agent = api, namespace, agent
        self._labels = labels
        self.meter = tu.Meter(agent, instance or secrets.token_hex(4))
        self.refusal: Refusal | None = None
        self.errors = 0
        self.last_export: MetricsData | None = None
        self._lock = threading.Lock()

    def labels(self) -> dict[str, str]:
        """The Agent's labels, which Quota selectors are matched against (read once)."""
        if self._labels is None:
            try:
                agent = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "agents", self.agent)
                self._labels = dict((agent.get("metadata") or {}).get("labels") or {})
            except Exception as exc:  # no Agent object (or not readable): only unselective Quotas apply
                log.warning("agent %s/%s: labels unknown (%s); charging quotas without a selector",
                            self.namespace, self.agent, exc)
                return {}
        return self._labels

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        with self._lock:
            self.last_export = metrics_data
            self.meter.observe(points_of(metrics_data))
            return self._charge_due()

    def _charge_due(self) -> MetricExportResult:
        while True:
            due = self.meter.due()
            if not due:
                return MetricExportResult.SUCCESS
            try:
                quotas = list(self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                                     quota_client.PLURAL).get("items", []))
                for charge in due:
                    costs = [(r, charge.amount) for r in charge.resources]
                    out = quota_client.charge_for(self.api, self.namespace, self.labels(), charge.holder, costs,
                                                  reason=f"{charge.amount} {charge.series.token_type} tokens",
                                                  quotas=quotas)
                    if not out.ok and any(w in out.message for w in ("WindowPending", "TooManyReservations")):
                        raise quota_client.QuotaWindowPending(out.message)  # not a refusal: retry as is
                    self.meter.settle(charge, out.ok)
                    if out.ok:
                        self.refusal = None
                    else:
                        self.refusal = Refusal(out.message, out.reset_at, datetime.now(UTC))
                        log.warning("token usage of %s refused: %s", self.agent, out.message)
            except Exception as exc:  # outcome unknown: the pending charges are retried as they are
                self.errors += 1
                log.warning("token usage of %s not charged yet (%s); retried at the next export", self.agent, exc)
                return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


class TokenBudget:
    """An agent's token budget: the exporter on a MeterProvider, and the check before spending."""

    def __init__(self, worker: Any, interval_seconds: float = 30.0, instance: str | None = None) -> None:
        self.worker = worker
        self.exporter = QuotaTokenExporter(worker.custom, worker.namespace, worker.agent, instance=instance)
        self.reader = PeriodicExportingMetricReader(self.exporter, export_interval_millis=interval_seconds * 1000)
        self._provider: MeterProvider | None = None

    def meter_provider(self, **kwargs: Any) -> MeterProvider:
        """A MeterProvider whose metrics this budget charges (kwargs: resource, views, ...)."""
        if self._provider is None:
            self._provider = MeterProvider(metric_readers=[self.reader], **kwargs)
        return self._provider

    def flush(self) -> bool:
        """Collect and charge now; False when some usage could not be charged yet (retried later)."""
        errors = self.exporter.errors
        self.reader.collect()
        return self.exporter.errors == errors

    @property
    def charged_tokens(self) -> int:
        return self.exporter.meter.charged_tokens

    @property
    def refused_tokens(self) -> int:
        return self.exporter.meter.refused_tokens

    def require(self, tokens: int = 1, model: str = "") -> None:
        """Raise TokenBudgetExceeded when the last charge was refused (until the window resets) or when a Hard
        `tokens` (or `tokens/<model>`) quota cannot take `tokens` more now. Reads only; the charge decides."""
        r = self.exporter.refusal
        if r is not None and (r.reset_at is None or datetime.now(UTC) < r.reset_at):
            raise TokenBudgetExceeded(r.message, r.reset_at, self.refused_tokens)
        labels = self.exporter.labels()
        quotas = self.worker.custom.list_namespaced_custom_object(GROUP, VERSION, self.worker.namespace,
                                                                  quota_client.PLURAL).get("items", [])
        for q in quotas:
            spec = q.get("spec") or {}
            if spec.get("resource") not in tu.resources_for(model) or \
                    not selectors.matches(spec.get("selector"), labels):
                continue
            g = quota_client.check(self.worker.custom, self.worker.namespace, q["metadata"]["name"], tokens)
            if not g.granted:
                raise TokenBudgetExceeded(f"quota {q['metadata']['name']}: {g.message}", g.reset_at,
                                          self.refused_tokens)

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
