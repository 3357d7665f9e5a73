"""What a failed API call means is decided once, in kube.failure; the runtime acts on that verdict."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from urllib3.exceptions import ProtocolError

from agentops_operator import kube, runtime
from agentops_operator.cache import store


def _api(status: int, body: dict[str, Any] | None = None) -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.body = json.dumps(body or {}, separators=(",", ":"))  # compact, as the API server sends it
    return exc


@pytest.mark.parametrize(("exc", "expect"), [
    (_api(404), kube.Failure.GONE),
    (_api(409), kube.Failure.CONFLICT),
    (_api(404, {"details": {"kind": "namespaces"}}), kube.Failure.NAMESPACE_ENDING),
    (_api(403, {"message": "namespace x is being terminated"}), kube.Failure.NAMESPACE_ENDING),
    (_api(403, {"message": "forbidden"}), kube.Failure.REFUSED),
    (_api(422), kube.Failure.REFUSED),
    (_api(503), kube.Failure.UNAVAILABLE),
    (ApiException(status=0, reason="no answer"), kube.Failure.UNAVAILABLE),
    (ProtocolError("reset"), kube.Failure.UNAVAILABLE),
    (ConnectionRefusedError(), kube.Failure.UNAVAILABLE),
    (TimeoutError(), kube.Failure.UNAVAILABLE),
    (KeyError("bug"), None),
])
def test_failure_classification(exc: BaseException, expect: kube.Failure | None) -> None:
    assert kube.failure(exc) is expect


def test_error_message_names_the_field() -> None:
    exc = _api(422, {"details": {"causes": [{"field": "status.used", "message": "must be >= 0"}]}})
    assert kube.error_message(exc) == "API error 422 x: status.used: must be >= 0"
    assert kube.error_message(KeyError("k")) == "KeyError: 'k'"


OBJ = {"apiVersion": "agentops.dev/v1alpha1", "kind": "Quota",
       "metadata": {"name": "q", "namespace": "rt-ns", "resourceVersion": "7", "uid": "u"}}


@pytest.mark.parametrize(("raised", "outcome", "requeued", "reported"), [
    (_api(404), "gone", False, False),
    (_api(409), "conflict", True, False),
    (_api(403, {"message": "being terminated"}), "gone", False, False),
    (_api(503), "error", True, False),
    (_api(422, {"message": "bad field"}), "error", True, True),
    (ValueError("boom"), "error", True, True),
])
def test_runtime_acts_on_the_verdict(monkeypatch: pytest.MonkeyPatch, raised: BaseException, outcome: str,
                                     requeued: bool, reported: bool) -> None:
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(kube, "emit_event", lambda obj, t, reason, msg, name=None: events.append((reason, msg)))

    def reconcile(obj: dict[str, Any]) -> float | None:
        raise raised

    monkeypatch.setitem(runtime.RECONCILERS, "rt-kind", reconcile)
    store.upsert("rt-kind", OBJ)
    rt = runtime.Runtime()
    before = runtime.RECONCILE_TOTAL.labels("rt-kind", outcome)._value.get()
    try:
        rt.process(("rt-kind", "rt-ns", "q"))
    finally:
        store.delete("rt-kind", "rt-ns", "q")
    assert runtime.RECONCILE_TOTAL.labels("rt-kind", outcome)._value.get() == before + 1
    assert (rt.queue.failures(("rt-kind", "rt-ns", "q")) == 1) is requeued  # retried with backoff
    assert bool(events) == reported
    if reported:
        assert events[0][0] == "ReconcileFailed"
