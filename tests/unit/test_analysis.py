"""Analysis providers: condition expressions, JSON paths, HTTP / Prometheus results, Jobs."""

from __future__ import annotations

import ipaddress
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
        ("size(result) == 2 && result.all(x, x > 0)", [1, 2], True),
        ("result['a-b'] == true", {"a-b": True}, True),
        ("result == null", None, True),
        ("1 < result && result <= 3", 3, True),
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
        "result.size()",  # not a bool
        "len(result) == 2",  # Python, not CEL
        "'a' * 3 == 'aaa'",  # CEL has no string repetition
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
    def fetch(target: an.Target, headers: object, timeout: float) -> tuple[int, bytes]:
        fetch.calls.append(f"{target.scheme}://{target.host}:{target.port}{target.path}")  # type: ignore[attr-defined]
        return status, body if isinstance(body, bytes) else json.dumps(body).encode()
    fetch.calls = []  # type: ignore[attr-defined]
    return fetch


def _resolver(table: dict[str, list[str]]) -> an.Resolver:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]
    return resolve


# Unit tests resolve through a table: a.n.svc... is a Service of namespace n, x and prom are allowed hosts.
POLICY = an.UrlPolicy(allowed_hosts=("x", "prom"), resolve=_resolver({
    "a-canary.n.svc.cluster.local": ["10.96.0.20"], "x": ["10.96.0.21"], "prom": ["10.96.0.22"]}))


def test_measure_http_with_json_path_and_conditions() -> None:
    p = HTTPProvider(url="http://{{canaryService}}:8080/health", json_path="$.ok")
    ctx = an.template_context("a", "n", "r")
    m = an.measure_http(p, _metric(successCondition="result == true"), ctx, NOW,
                        fetch=(f := _fetch(200, {"ok": True})), policy=POLICY)
    assert m.phase is OK and m.value == "true"
    assert f.calls == ["http://a-canary.n.svc.cluster.local:8080/health"]  # type: ignore[attr-defined]
    m = an.measure_http(p, _metric(successCondition="result == true"), ctx, NOW, fetch=_fetch(200, {"ok": False}),
                        policy=POLICY)
    assert m.phase is BAD


def test_measure_http_status_code_without_conditions() -> None:
    p = HTTPProvider(url="http://x/")
    ok = an.measure_http(p, _metric(), {}, NOW, fetch=_fetch(200, b"secret body"), policy=POLICY)
    assert ok.phase is OK and ok.value == "HTTP 200"  # the body is never stored
    assert an.measure_http(p, _metric(), {}, NOW, fetch=_fetch(503, b"down"), policy=POLICY).phase is BAD


def test_measure_http_errors() -> None:
    def boom(url: str, headers: object, timeout: float) -> tuple[int, bytes]:
        raise OSError("connection refused")

    p = HTTPProvider(url="http://x/")
    assert an.measure_http(p, _metric(), {}, NOW, fetch=boom, policy=POLICY).phase is ERR
    file_url = HTTPProvider.model_construct(url="file:///etc/passwd", headers=[], json_path="", timeout_seconds=5)
    assert an.measure_http(file_url, _metric(), {}, NOW, fetch=boom, policy=POLICY).phase is ERR
    bad_path = HTTPProvider(url="http://x/", json_path="$.nope")
    m = an.measure_http(bad_path, _metric(successCondition="result"), {}, NOW, fetch=_fetch(200, {"a": "s3cr3t"}),
                        policy=POLICY)
    assert m.phase is ERR and "s3cr3t" not in m.message


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
    m = an.measure_prometheus(p, metric, {"revision": "r1"}, NOW, fetch=f, policy=POLICY)
    assert m.phase is OK
    assert f.calls[0].startswith("http://prom:9090/api/v1/query?query=rate%28x%7Brev%3D%22r1%22")  # type: ignore[attr-defined]
    empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
    assert an.measure_prometheus(p, metric, {}, NOW, fetch=_fetch(200, empty), policy=POLICY).phase is MEH
    assert an.measure_prometheus(p, metric, {}, NOW, fetch=_fetch(400, {"status": "error", "error": "x"}),
                                 policy=POLICY).phase is ERR


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


# ---- bounded CEL evaluation -------------------------------------------------------------------

L10 = "[0,1,2,3,4,5,6,7,8,9]"


@pytest.mark.parametrize("expr", [
    # 10^6 elements through nested macros: the cost meter stops it long before.
    f"size({L10}.map(a,{L10}.map(b,{L10}.map(c,{L10}.map(d,{L10}.map(e,{L10})))))) > 0",
    # string growth by concatenation of a large result
    "size(result.s + result.s + result.s + result.s + result.s + result.s + result.s + result.s) > 0",
    "result.l.all(x, size(result.s + result.s) > 0)",
])
def test_costly_conditions_stop_with_an_error_and_bounded_memory(expr: str) -> None:
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(an.ConditionError, match="limit"):
        an.evaluate(expr, {"s": "x" * 200_000, "l": list(range(1000))})
    assert time.monotonic() - start < an.TIME_LIMIT + 1.0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 50


def test_deeply_nested_conditions_are_refused_not_crashing() -> None:
    with pytest.raises(an.ConditionError):
        an.evaluate("[" * 400 + "]" * 400 + " == []", None)
    with pytest.raises(an.ConditionError):
        an.evaluate("(" * 400 + "1" + ")" * 400 + " == 1", None)


def test_cel_errors_do_not_echo_the_result() -> None:
    with pytest.raises(an.ConditionError) as err:
        an.evaluate("result.token > 1", {"token": "s3cr3t-value"})
    assert "s3cr3t" not in str(err.value)


# ---- URL policy (SSRF) ------------------------------------------------------------------------

TABLE = {
    "web.team.svc": ["10.96.0.10"], "web.team.svc.cluster.local": ["10.96.0.10"],
    "web.other.svc.cluster.local": ["10.96.1.10"], "evil.team.svc": ["169.254.169.254"],
    "loop.team.svc": ["127.0.0.1"], "mapped.team.svc": ["::ffff:127.0.0.1"], "prom.monitoring.svc": ["10.96.2.2"],
    "api.team.svc": ["10.96.0.1"], "zero.team.svc": ["0.0.0.0"], "ali.team.svc": ["100.100.100.200"],
    "local.test": ["127.0.0.1"],
}


def policy(**kw: object) -> an.UrlPolicy:
    return an.UrlPolicy(resolve=_resolver(TABLE), api_servers=frozenset({("10.96.0.1", 443), ("127.0.0.1", 6443)}),
                        **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["http://web.team.svc:8080/health", "https://web.team.svc.cluster.local/x?y=1"])
def test_services_of_the_agents_namespace_are_allowed(url: str) -> None:
    t = policy().check(url, "team", "http.url")
    assert t.ip == "10.96.0.10" and t.host.startswith("web.team.svc")


@pytest.mark.parametrize(("url", "why"), [
    ("http://web.other.svc.cluster.local/", "not allowed"),  # another namespace's Service
    ("http://example.com/", "not allowed"),
    ("http://169.254.169.254/latest/meta-data/", "not allowed"),
    ("http://evil.team.svc/", "link-local"),  # an own-namespace name resolving to the metadata IP
    ("http://loop.team.svc/", "loopback"),
    ("http://mapped.team.svc/", "loopback"),
    ("http://zero.team.svc/", "unspecified"),
    ("http://ali.team.svc/", "metadata"),
    ("https://api.team.svc:443/", "API server"),
    ("https://kubernetes.default.svc/api", "API server"),
    ("http://user:pw@web.team.svc/", "credentials"),
    ("ftp://web.team.svc/", "http and https"),
    ("http://nosuch.team.svc/", "cannot resolve"),
])
def test_refused_targets_name_the_field(url: str, why: str) -> None:
    with pytest.raises(an.ConditionError) as err:
        policy().check(url, "team", "metric m: http.url")
    assert str(err.value).startswith("metric m: http.url:") and why in str(err.value)


def test_operator_flags_widen_the_policy_but_never_to_the_api_server() -> None:
    p = policy(allowed_hosts=("local.test", "*.monitoring.svc"),
               allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    assert p.check("http://local.test:8080/x", "team", "f").ip == "127.0.0.1"
    assert p.check("http://prom.monitoring.svc:9090/", "team", "f").ip == "10.96.2.2"
    with pytest.raises(an.ConditionError, match="API server"):
        p.check("https://local.test:6443/", "team", "f")


def test_prometheus_endpoints_allow_exact_base_urls_only() -> None:
    p = an.UrlPolicy(prometheus_endpoints=("http://prom.monitoring.svc:9090",), resolve=_resolver(TABLE))
    q = "http://prom.monitoring.svc:9090/api/v1/query?query=up"
    assert p.check(q, "team", "prometheus.address", prometheus=True).port == 9090
    with pytest.raises(an.ConditionError, match="not allowed"):
        p.check(q, "team", "http.url")  # an HTTP metric may not use it
    with pytest.raises(an.ConditionError, match="not allowed"):
        p.check("http://prom.monitoring.svc:9091/api/v1/query?query=up", "team", "prometheus.address",
                prometheus=True)


def test_redirects_are_not_followed_and_bodies_not_stored() -> None:
    p = HTTPProvider(url="http://x/", json_path="$.v")
    m = an.measure_http(p, _metric(successCondition="result > 0"), {}, NOW, fetch=_fetch(302, b""), policy=POLICY)
    assert m.phase is ERR and "redirects are not followed" in m.message
    big = {"v": "y" * 10_000, "secret": "s3cr3t"}
    m = an.measure_http(p, _metric(successCondition="size(result) > 0"), {}, NOW, fetch=_fetch(200, big),
                        policy=POLICY)
    assert m.phase is OK and len(m.value) <= an.MAX_VALUE and "s3cr3t" not in m.value
    whole = HTTPProvider(url="http://x/")
    m = an.measure_http(whole, _metric(successCondition="result.v != ''"), {}, NOW, fetch=_fetch(200, big),
                        policy=POLICY)
    assert m.phase is OK and m.value == ""


def test_pinned_fetch_connects_to_the_checked_address_without_redirects() -> None:
    """A real socket: a local server answering a redirect; the fetch reports it and reads no further."""
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=srv.handle_request, daemon=True).start()
    target = an.Target("http", "name-not-resolved.example", srv.server_port, "127.0.0.1", "/")
    status, _ = an.pinned_fetch(target, {}, 5)
    srv.server_close()
    assert status == 302
