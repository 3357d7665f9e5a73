"""Analysis providers: condition expressions, JSON paths, HTTP / Prometheus results, Jobs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agentops_operator import analysis as an
from agentops_operator import rollout as ro
from agentops_operator.models.agent import HTTPProvider, JobProvider, Metric, PrometheusProvider

NOW = datetime(2025, 3, 1, tzinfo=UTC)
OK, BAD, MEH, ERR = (ro.MeasurementPhase.SUCCESSFUL, ro.MeasurementPhase.FAILED,
                     ro.MeasurementPhase.INCONCLUSIVE, ro.MeasurementPhase.ERROR)


@pytest.mark.parametrize(
    ("expr", "result", "expected"),
    [
        ("result == 'ok'", "ok", True),
        ("result[0] >= 0.95", [0.97], True),
        ("result[0] >= 0.95", [0.9], False),
        ("result.status == \"ok\" && result.errors < 3", {"status": "ok", "errors": 1}, True),
        ("result.status == 'ok' || result.errors < 3", {"status": "bad", "errors": 5}, False),
        ("!(result > 5)", 3, True),
        ("len(result) == 2 and all([result[0] > 0, result[1] > 0])", [1, 2], True),
        ("result['a-b'] == true", {"a-b": True}, True),
        ("result == nil", None, True),
        ("1 < result <= 3", 3, True),
        ("result / 2 + 1 == 3", 4, True),
        ("'x' in result", ["x", "y"], True),
        ("isNaN(result)", float("nan"), True),
    ],
)
def test_evaluate(expr: str, result: object, expected: bool) -> None:
    assert an.evaluate(expr, result) is expected


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('true')",
        "result.__class__",
        "open('/etc/passwd')",
        "[x for x in result]",
        "lambda: 1",
        "result.missing == 1",
        "result[5] > 1",
        "(",
    ],
)
def test_evaluate_refuses_anything_outside_the_whitelist(expr: str) -> None:
    with pytest.raises(an.ConditionError):
        an.evaluate(expr, [1, 2])


def test_judge_rules() -> None:
    assert an.judge(1, "result > 0", "")[0] is OK
    assert an.judge(0, "result > 0", "")[0] is BAD
    assert an.judge(0, "", "result == 0")[0] is BAD
    assert an.judge(1, "", "result == 0")[0] is OK
    assert an.judge(5, "result < 3", "result > 8")[0] is MEH  # neither: inconclusive
    assert an.judge(9, "result < 3", "result > 8")[0] is BAD
    assert an.judge(None, "", "")[0] is OK


@pytest.mark.parametrize(
    ("path", "expected"),
    [("$.a.b[1]", 2), ("{.a.b[0]}", 1), ("a.c", "x"), ("", {"a": {"b": [1, 2], "c": "x"}, "d-e": 3}),
     ("$['d-e']", 3)],
)
def test_json_path(path: str, expected: object) -> None:
    assert an.json_path({"a": {"b": [1, 2], "c": "x"}, "d-e": 3}, path) == expected


def test_json_path_missing_is_an_error() -> None:
    with pytest.raises(an.ConditionError):
        an.json_path({"a": 1}, "$.b")


def test_render_templates() -> None:
    ctx = an.template_context("coder", "ns1", "rev9")
    assert an.render("http://{{canaryService}}/{{ revision }}?x={{unknown}}", ctx) == \
        "http://coder-canary.ns1.svc.cluster.local/rev9?x={{unknown}}"


def _metric(**kw: object) -> Metric:
    return Metric.model_validate({"name": "m", "http": {"url": "http://x"}, **kw})


def _fetch(status: int, body: object) -> an.Fetch:
    def fetch(url: str, headers: object, timeout: float) -> tuple[int, bytes]:
        fetch.calls.append(url)  # type: ignore[attr-defined]
        return status, body if isinstance(body, bytes) else json.dumps(body).encode()
    fetch.calls = []  # type: ignore[attr-defined]
    return fetch


def test_measure_http_with_json_path_and_conditions() -> None:
    p = HTTPProvider(url="http://{{canaryService}}:8080/health", json_path="$.ok")
    m = an.measure_http(p, _metric(successCondition="result == true"), an.template_context("a", "n", "r"), NOW,
                        fetch=(f := _fetch(200, {"ok": True})))
    assert m.phase is OK and m.value == "true"
    assert f.calls == ["http://a-canary.n.svc.cluster.local:8080/health"]  # type: ignore[attr-defined]
    m = an.measure_http(p, _metric(successCondition="result == true"), {}, NOW, fetch=_fetch(200, {"ok": False}))
    assert m.phase is BAD


def test_measure_http_status_code_without_conditions() -> None:
    p = HTTPProvider(url="http://x/")
    assert an.measure_http(p, _metric(), {}, NOW, fetch=_fetch(200, b"fine")).phase is OK
    assert an.measure_http(p, _metric(), {}, NOW, fetch=_fetch(503, b"down")).phase is BAD


def test_measure_http_errors() -> None:
    def boom(url: str, headers: object, timeout: float) -> tuple[int, bytes]:
        raise OSError("connection refused")

    p = HTTPProvider(url="http://x/")
    assert an.measure_http(p, _metric(), {}, NOW, fetch=boom).phase is ERR
    file_url = HTTPProvider.model_construct(url="file:///etc/passwd", headers=[], json_path="", timeout_seconds=5)
    assert an.measure_http(file_url, _metric(), {}, NOW, fetch=boom).phase is ERR
    bad_path = HTTPProvider(url="http://x/", json_path="$.nope")
    assert an.measure_http(bad_path, _metric(successCondition="result"), {}, NOW,
                           fetch=_fetch(200, {"a": 1})).phase is ERR


def test_prometheus_result_shapes() -> None:
    vec = {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "0.5"]}]}}
    assert an.prometheus_result(vec) == [0.5]
    assert an.prometheus_result({"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}) == 2.0
    with pytest.raises(an.ConditionError):
        an.prometheus_result({"status": "error", "error": "parse error"})


def test_measure_prometheus() -> None:
    p = PrometheusProvider(address="http://prom:9090/", query="rate(x{rev=\"{{revision}}\"}[1m])")
    metric = Metric.model_validate({"name": "m", "prometheus": {"address": "http://p", "query": "q"},
                                    "successCondition": "result[0] < 0.1"})
    vec = {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "0.05"]}]}}
    f = _fetch(200, vec)
    m = an.measure_prometheus(p, metric, {"revision": "r1"}, NOW, fetch=f)
    assert m.phase is OK
    assert f.calls[0].startswith("http://prom:9090/api/v1/query?query=rate%28x%7Brev%3D%22r1%22")  # type: ignore[attr-defined]
    empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
    assert an.measure_prometheus(p, metric, {}, NOW, fetch=_fetch(200, empty)).phase is MEH
    assert an.measure_prometheus(p, metric, {}, NOW, fetch=_fetch(400, {"status": "error", "error": "x"})).phase is ERR


def test_analysis_job_manifest_and_verdicts() -> None:
    obj = {"apiVersion": "agentops.dev/v1alpha1", "kind": "Agent",
           "metadata": {"name": "coder", "namespace": "ns", "uid": "u"}}
    p = JobProvider(command=["sh", "-c", "curl {{canaryService}}"], pod_annotations={"agentops.dev/kwok-fail": "true"})
    job = an.analysis_job(obj, p, "rev/step-2/0", "smoke", 1, an.template_context("coder", "ns", "rev"))
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["command"][2] == "curl coder-canary.ns.svc.cluster.local"
    assert job["spec"]["template"]["metadata"]["annotations"] == {"agentops.dev/kwok-fail": "true"}
    assert job["metadata"]["labels"]["agentops.dev/analysis-run"] == "rev.step-2.0"
    assert job["metadata"]["name"] == an.analysis_job(obj, p, "rev/step-2/0", "smoke", 1, {})["metadata"]["name"]
    running = {"metadata": {"name": "j"}, "status": {"active": 1}}
    assert an.job_measurement(running, NOW) is None
    done = {"metadata": {"name": "j"}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert an.job_measurement(done, NOW).phase is OK  # type: ignore[union-attr]
    failed = {"metadata": {"name": "j"}, "status": {"conditions": [{"type": "Failed", "status": "True",
                                                                   "reason": "BackoffLimitExceeded"}]}}
    m = an.job_measurement(failed, NOW, "exit code 1: latency too high")
    assert m is not None and m.phase is BAD and "latency too high" in m.message
