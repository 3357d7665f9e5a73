"""Analysis providers for Agent rollouts: Job, HTTP and Prometheus.

Conditions are small expressions on ``result`` (Argo Rollouts style: ``result[0] >= 0.95``,
``result.status == "ok" && result.errors < 3``). They are evaluated by a whitelist AST walker,
never ``eval``: the spec is user input and the operator has cluster credentials.

Outcome rules (as Argo Rollouts): failureCondition true → Failed; else successCondition given →
Successful if true, Failed if false, unless a failureCondition is also given, in which case
neither matching is Inconclusive; with only a failureCondition, false → Successful. Provider
trouble (timeouts, bad JSON, Prometheus errors) is an Error measurement, retried up to
consecutiveErrorLimit.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from . import names, podsecurity
from . import rollout as ro
from .models.agent import HTTPProvider, JobProvider, Metric, PrometheusProvider

MAX_BODY = 1 << 20  # read at most 1 MiB of a response

# ---- condition expressions -------------------------------------------------------------------


class ConditionError(ValueError):
    """The expression is not allowed or cannot be evaluated on this result."""


_CMP: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_FUNCS: dict[str, Callable[..., Any]] = {
    "len": len, "float": float, "int": int, "abs": abs, "min": min, "max": max, "all": all, "any": any,
    "isNaN": lambda x: isinstance(x, float) and math.isnan(x),
}


def _to_python(expr: str) -> str:
    """Accept Argo's expr syntax for the common operators (&&, ||, !, true/false/nil)."""
    out = re.sub(r"&&", " and ", expr)
    out = re.sub(r"\|\|", " or ", out)
    out = re.sub(r"!(?!=)", " not ", out)
    out = re.sub(r"\btrue\b", "True", out)
    out = re.sub(r"\bfalse\b", "False", out)
    return re.sub(r"\bnil\b", "None", out)


class _Attr(dict[str, Any]):
    """JSON objects allow result.field as well as result["field"]."""


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return _Attr({k: _wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def evaluate(expr: str, result: Any) -> bool:
    try:
        tree = ast.parse(_to_python(expr).strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"cannot parse condition {expr!r}: {exc.msg}") from exc
    env = {"result": _wrap(result)}

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            raise ConditionError(f"unknown name {node.id!r} (only `result` is defined)")
        if isinstance(node, ast.BoolOp):
            values = (ev(v) for v in node.values)
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            if isinstance(node.op, ast.Not):
                return not v
            if isinstance(node.op, ast.USub):
                return -v
            raise ConditionError("unsupported unary operator")
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                fn = _CMP.get(type(op))
                if fn is None:
                    raise ConditionError("unsupported comparison")
                if not fn(left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            return _BIN[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Subscript):
            return ev(node.value)[ev(node.slice)]
        if isinstance(node, ast.Attribute):
            base = ev(node.value)
            if isinstance(base, _Attr) and node.attr in base:
                return base[node.attr]
            raise ConditionError(f"no field {node.attr!r} in result")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
                and not node.keywords:
            return _FUNCS[node.func.id](*(ev(a) for a in node.args))
        if isinstance(node, ast.List | ast.Tuple):
            return [ev(e) for e in node.elts]
        raise ConditionError(f"unsupported expression element: {type(node).__name__}")

    try:
        return bool(ev(tree))
    except ConditionError:
        raise
    except (TypeError, KeyError, IndexError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise ConditionError(f"{expr!r} on {short(result)}: {type(exc).__name__}: {exc}") from exc


def judge(result: Any, success: str, failure: str) -> tuple[ro.MeasurementPhase, str]:
    """Turn a provider result into a measurement phase (see the module docstring for the rules)."""
    if failure and evaluate(failure, result):
        return ro.MeasurementPhase.FAILED, f"failureCondition {failure!r} met"
    if success:
        if evaluate(success, result):
            return ro.MeasurementPhase.SUCCESSFUL, f"successCondition {success!r} met"
        if failure:
            return ro.MeasurementPhase.INCONCLUSIVE, "neither successCondition nor failureCondition met"
        return ro.MeasurementPhase.FAILED, f"successCondition {success!r} not met"
    return ro.MeasurementPhase.SUCCESSFUL, "failureCondition not met" if failure else "no condition"


def short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- JSON path and templates -----------------------------------------------------------------

_TOKEN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")


def json_path(data: Any, path: str) -> Any:
    """A small JSONPath subset: ``$.a.b[0]``, ``{.a.b}``, ``a.b``, ``$['a-b']``; empty → whole body."""
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1].strip()
    p = p.removeprefix("$")
    if not p:
        return data
    if not p.startswith((".", "[")):
        p = "." + p
    pos, cur = 0, data
    while pos < len(p):
        m = _TOKEN.match(p, pos)
        if not m:
            raise ConditionError(f"unsupported jsonPath {path!r} at {p[pos:]!r}")
        key, index, quoted = m.groups()
        try:
            cur = cur[int(index)] if index is not None else cur[key if key is not None else quoted]
        except (KeyError, IndexError, TypeError) as exc:
            raise ConditionError(f"jsonPath {path!r} not found in {short(data)}") from exc
        pos = m.end()
    return cur


def template_context(agent: str, namespace: str, revision: str) -> dict[str, str]:
    return {
        "agent": agent,
        "namespace": namespace,
        "revision": revision,
        "service": names.service_dns(agent, namespace),
        "stableService": names.service_dns(agent, namespace),
        "canaryService": names.service_dns(agent, namespace, "canary"),
        "previewService": names.service_dns(agent, namespace, "preview"),
    }


def render(text: str, ctx: Mapping[str, str]) -> str:
    return re.sub(r"\{\{\s*([A-Za-z]+)\s*\}\}", lambda m: ctx.get(m.group(1), m.group(0)), text)


# ---- HTTP and Prometheus ---------------------------------------------------------------------

Fetch = Callable[[str, Mapping[str, str], float], tuple[int, bytes]]


def urllib_fetch(url: str, headers: Mapping[str, str], timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=dict(headers), method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # scheme checked by the callers
            return int(resp.status), resp.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(MAX_BODY) if exc.fp else b""


def _check_scheme(url: str) -> None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ConditionError(f"only http(s) URLs are allowed, got {url!r}")


def measure_http(p: HTTPProvider, metric: Metric, ctx: Mapping[str, str], now: datetime,
                 fetch: Fetch = urllib_fetch) -> ro.Measurement:
    url = render(p.url, ctx)
    try:
        _check_scheme(url)
        status, body = fetch(url, {h.name: render(h.value, ctx) for h in p.headers}, float(p.timeout_seconds))
        try:
            data: Any = json.loads(body.decode() or "null")
        except ValueError:
            data = body.decode(errors="replace")
        if not (metric.success_condition or metric.failure_condition):
            # Without conditions the status code decides; an HTTP error is an answer, not an Error.
            phase = ro.MeasurementPhase.FAILED if status >= 400 else ro.MeasurementPhase.SUCCESSFUL
            return ro.Measurement(phase, now, short(data, 256), f"HTTP {status} from {url}")
        result = json_path(data, p.json_path) if p.json_path else data
        phase, why = judge(result, metric.success_condition, metric.failure_condition)
        return ro.Measurement(phase, now, short(result, 256), f"HTTP {status}: {why}")
    except ConditionError as exc:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, "", str(exc))
    except (OSError, TimeoutError) as exc:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, "", f"GET {url}: {exc}")


def prometheus_result(payload: Any) -> Any:
    """Vector → list of floats; scalar → float; matrix → list of lists of floats."""
    if not isinstance(payload, dict) or payload.get("status") != "success":
        err = payload.get("error") if isinstance(payload, dict) else None
        raise ConditionError(f"prometheus query failed: {err or short(payload)}")
    data = payload.get("data") or {}
    kind = data.get("resultType")
    res: Any = data.get("result")
    if kind == "vector":
        return [float(s["value"][1]) for s in res or []]
    if kind == "scalar":
        return float(res[1])
    if kind == "matrix":
        return [[float(v[1]) for v in s.get("values", [])] for s in res or []]
    if kind == "string":
        return res[1]
    raise ConditionError(f"unexpected prometheus resultType {kind!r}")


def measure_prometheus(p: PrometheusProvider, metric: Metric, ctx: Mapping[str, str], now: datetime,
                       fetch: Fetch = urllib_fetch) -> ro.Measurement:
    query = render(p.query, ctx)
    url = p.address.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        _check_scheme(url)
        status, body = fetch(url, {"Accept": "application/json"}, float(p.timeout_seconds))
        try:
            payload = json.loads(body.decode() or "null")
        except ValueError as exc:
            raise ConditionError(f"prometheus answered HTTP {status} with non-JSON") from exc
        result = prometheus_result(payload)
        if isinstance(result, list) and not result and not metric.failure_condition:
            # An empty vector usually means the series does not exist yet: not a pass.
            return ro.Measurement(ro.MeasurementPhase.INCONCLUSIVE, now, "[]", f"query {query!r} returned no series")
        phase, why = judge(result, metric.success_condition, metric.failure_condition)
        return ro.Measurement(phase, now, short(result, 256), why)
    except ConditionError as exc:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, "", str(exc))
    except (OSError, TimeoutError) as exc:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, "", f"query {p.address}: {exc}")


# ---- Job -------------------------------------------------------------------------------------


def analysis_job(obj: Mapping[str, Any], p: JobProvider, run_id: str, metric: str, index: int,
                 ctx: Mapping[str, str]) -> dict[str, Any]:
    agent, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    name = names.analysis_job_name(agent, run_id, metric, index)
    labels = {**names.child_labels(agent), names.LABEL_ANALYSIS_RUN: names_safe(run_id), names.LABEL_METRIC: metric}
    env = [{"name": "AGENTOPS_" + k.upper(), "value": v} for k, v in sorted(ctx.items())]
    env += [{"name": e.name, "value": render(e.value, ctx)} for e in p.env]
    container = podsecurity.check_container(
        "analysis", p.image, env,
        command=[render(c, ctx) for c in p.command], args=[render(a, ctx) for a in p.args],
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "annotations": {"agentops.dev/analysis-run": run_id, "agentops.dev/measurement": str(index)},
            "ownerReferences": [names.owner_reference({"kind": "Agent", **obj})],
        },
        "spec": {
            "backoffLimit": 0,  # one pod, one verdict: a retry would hide a failing check
            "activeDeadlineSeconds": p.active_deadline_seconds,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels, "annotations": dict(p.pod_annotations)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {k: v for k, v in podsecurity.POD_SECURITY_CONTEXT.items() if k != "fsGroup"},
                    "containers": [container],
                },
            },
        },
    }


def names_safe(run_id: str) -> str:
    """A run id as a label value (<= 63 chars of [-A-Za-z0-9_.])."""
    return re.sub(r"[^-A-Za-z0-9_.]", ".", run_id)[:63].strip("-_.")


def job_measurement(job: Mapping[str, Any], now: datetime, failure_detail: str = "") -> ro.Measurement | None:
    """Successful / Failed once the Job finished; None while it runs."""
    st = job.get("status") or {}
    conds = {c.get("type"): c for c in st.get("conditions") or [] if c.get("status") == "True"}
    name = job["metadata"]["name"]
    if "Complete" in conds or "SuccessCriteriaMet" in conds:
        return ro.Measurement(ro.MeasurementPhase.SUCCESSFUL, now, "succeeded", f"job {name} succeeded")
    if "Failed" in conds or "FailureTarget" in conds:
        c = conds.get("Failed") or conds.get("FailureTarget") or {}
        detail = failure_detail or c.get("message") or c.get("reason") or "failed"
        return ro.Measurement(ro.MeasurementPhase.FAILED, now, "failed", f"job {name} failed: {detail}"[:2048])
    return None
