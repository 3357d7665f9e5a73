"""Analysis providers for Agent rollouts: Job, HTTP, Prometheus and tasks.

Conditions are CEL expressions on ``result`` (``result[0] >= 0.95``,
``result.status == "ok" && result.errors < 3``), the language Kubernetes itself uses for
admission. They are evaluated by cel-python with a cost meter: every evaluation step costs 1 and
every value a step builds (a concatenated string or list, a macro's result) costs its size; past
``COST_LIMIT`` units or ``TIME_LIMIT`` seconds the evaluation stops with an error. CEL has no
string repetition, loops or recursion, so with the meter, memory and time are bounded by
construction whatever the expression: the spec is user input and the operator has cluster
credentials.

HTTP and Prometheus targets are restricted by the operator's configuration (``UrlPolicy``): by
default only Services of the Agent's own namespace (``<svc>.<ns>.svc[.cluster.local]``) and the
configured Prometheus endpoints; every resolved address is checked (never loopback, link-local,
cloud metadata, unspecified, multicast or the API server, unless an operator flag explicitly
allows a network), the connection goes to the checked address (no DNS rebinding), redirects are
not followed, at most ``MAX_BODY`` bytes are read, and only the value a ``jsonPath`` extracted
(clipped) is stored in status, never the body.

Outcome rules (as Argo Rollouts): failureCondition true → Failed; else successCondition given →
Successful if true, Failed if false, unless a failureCondition is also given, in which case
neither matching is Inconclusive; with only a failureCondition, false → Successful. Provider
trouble (timeouts, bad JSON, Prometheus errors, refused URLs) is an Error measurement, retried up
to consecutiveErrorLimit.
"""

from __future__ import annotations

import fnmatch
import http.client
import ipaddress
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError, Evaluator

from . import names, podsecurity, taskoutcomes
from . import rollout as ro
from .models.agent import HTTPProvider, JobProvider, Metric, PrometheusProvider, TasksProvider

MAX_BODY = 256 * 1024  # read at most 256 KiB of a response
MAX_VALUE = 256  # characters of an extracted value kept in status
COST_LIMIT = 1_000_000  # evaluation steps + sizes of built values, per condition
TIME_LIMIT = 1.0  # seconds per condition

# ---- condition expressions (CEL) -------------------------------------------------------------


class ConditionError(ValueError):
    """The expression is not allowed or cannot be evaluated on this result."""


class _BudgetExceeded(Exception):
    pass


# Rules whose value is newly built (so its size is paid for); the others read existing values.
_BUILDS = {"addition", "multiplication", "member_dot_arg", "ident_arg", "dot_ident_arg", "list_lit", "map_lit",
           "member_object"}


@dataclass
class _Meter:
    limit: int
    deadline: float
    spent: int = 0

    def charge(self, rule: str, value: Any) -> None:
        cost = 1
        if rule in _BUILDS and isinstance(value, str | bytes | list | dict):
            cost += len(value)
        self.spent += cost
        if self.spent > self.limit:
            raise _BudgetExceeded(f"cost limit of {self.limit} exceeded")
        if time.monotonic() > self.deadline:
            raise _BudgetExceeded(f"time limit of {TIME_LIMIT}s exceeded")


class _MeteredEvaluator(Evaluator):
    """celpy's tree-walking evaluator, charging every step to a shared meter (macros included)."""

    def __init__(self, ast: lark.Tree, activation: Any, meter: _Meter) -> None:
        super().__init__(ast, activation)
        self.meter = meter

    def sub_evaluator(self, ast: lark.Tree) -> Evaluator:
        return _MeteredEvaluator(ast, self.activation, self.meter)

    def _visit_tree(self, tree: lark.Tree) -> Any:
        if time.monotonic() > self.meter.deadline:
            raise _BudgetExceeded(f"time limit of {TIME_LIMIT}s exceeded")
        value = super()._visit_tree(tree)
        self.meter.charge(str(tree.data), value)
        return value


def _is_nan(x: Any) -> celtypes.BoolType:
    return celtypes.BoolType(isinstance(x, float) and math.isnan(x))


_FUNCTIONS: dict[str, Any] = {"isNaN": _is_nan}
# celpy logs every evaluation step at DEBUG (and user mistakes at ERROR): the operator reports
# condition errors in status itself, so keep its own log readable under --verbose.
logging.getLogger("celpy").setLevel(logging.CRITICAL)
_env_lock = threading.Lock()
_env: celpy.Environment | None = None


def _environment() -> celpy.Environment:
    global _env
    with _env_lock:
        if _env is None:
            _env = celpy.Environment()
        return _env


def _to_cel(value: Any) -> Any:
    try:
        return celpy.json_to_cel(value)
    except (TypeError, ValueError) as exc:
        raise ConditionError(f"result cannot be used in a condition: {type(exc).__name__}") from exc


def compile_condition(expr: str) -> Any:
    """Parse a CEL condition (ConditionError naming it when it does not parse). The first call in a
    process builds the parser, which takes seconds: a provider that waits for data (``tasks``) calls
    this while it waits, so the decisive measurement is not the one that pays for it."""
    env = _environment()
    try:
        return env.compile(expr)
    except RecursionError as exc:
        raise ConditionError(f"cannot parse condition {short(expr, 80)!r}: nested too deeply") from exc
    except Exception as exc:  # celpy's parse errors carry the position
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConditionError(f"cannot parse condition {short(expr, 80)!r}: {short(first, 200)}") from exc


def evaluate(expr: str, result: Any, cost_limit: int = COST_LIMIT, time_limit: float = TIME_LIMIT) -> bool:
    """Evaluate a CEL condition on ``result``; ConditionError for anything but a bool."""
    env = _environment()
    ast = compile_condition(expr)
    runner = env.program(ast, functions=_FUNCTIONS)
    meter = _Meter(cost_limit, time.monotonic() + time_limit)
    try:
        value = _MeteredEvaluator(ast, runner.new_activation(), meter).evaluate({"result": _to_cel(result)})
    except _BudgetExceeded as exc:
        raise ConditionError(f"condition {short(expr, 80)!r} stopped: {exc}") from exc
    except RecursionError as exc:
        raise ConditionError(f"condition {short(expr, 80)!r} nested too deeply") from exc
    except CELEvalError as exc:
        raise ConditionError(f"condition {short(expr, 80)!r}: {short(_cel_error(exc), 200)}") from exc
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, AttributeError, OverflowError) as exc:
        raise ConditionError(f"condition {short(expr, 80)!r}: {type(exc).__name__}") from exc
    if not isinstance(value, celtypes.BoolType):
        raise ConditionError(f"condition {short(expr, 80)!r} must be true or false, got a {type(value).__name__}")
    return bool(value)


def _cel_error(exc: CELEvalError) -> str:
    """The message of a CEL error without the operand values (they may come from a response body)."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return re.sub(r"\(.*", "", text).strip() or "evaluation error"


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
            raise ConditionError(f"jsonPath {path!r} not found in the response") from exc
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


# ---- URL policy (SSRF) -----------------------------------------------------------------------

Resolver = Callable[[str, int], list[str]]

# Cloud metadata services outside the link-local ranges (which are refused anyway).
METADATA_IPS = frozenset({"100.100.100.200", "fd00:ec2::254", "192.0.0.192"})
_API_SERVER_NAMES = re.compile(r"^kubernetes(\.default(\.svc(\.cluster\.local)?)?)?$")


def getaddrinfo_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``ip``, speak to ``host``."""

    scheme: str
    host: str
    port: int
    ip: str
    path: str  # path and query


@dataclass(frozen=True)
class UrlPolicy:
    """Where HTTP analysis and Prometheus queries may go (operator configuration, not the spec).

    A host is allowed when it is a Service of the Agent's namespace, matches ``allowed_hosts``
    (globs such as ``*.monitoring.svc``), or (Prometheus) the URL is one of
    ``prometheus_endpoints``. Every address the host resolves to must then be outside the refused
    ranges (loopback, link-local incl. 169.254.169.254, metadata IPs, unspecified, multicast,
    reserved) unless inside ``allowed_networks``, and never the API server.
    """

    allowed_hosts: tuple[str, ...] = ()
    prometheus_endpoints: tuple[str, ...] = ()
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    api_servers: frozenset[tuple[str, int]] = frozenset()
    resolve: Resolver = field(default=getaddrinfo_resolver, compare=False)

    def check(self, url: str, namespace: str, what: str, prometheus: bool = False) -> Target:
        """The Target to connect to, or ConditionError naming the field ``what``."""

        def refuse(why: str) -> ConditionError:
            return ConditionError(f"{what}: {short(url, 200)!r} refused: {why}")

        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise refuse(f"not a valid URL ({exc})") from exc
        if parts.scheme not in ("http", "https"):
            raise refuse("only http and https URLs are allowed")
        if parts.username is not None or parts.password is not None:
            raise refuse("credentials in the URL are not allowed")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise refuse("no host")
        if _API_SERVER_NAMES.match(host) or host.startswith("kubernetes.default."):
            raise refuse("the Kubernetes API server is never a target")
        if not self._host_allowed(host, namespace, url if prometheus else None):
            allowed = f"Services of namespace {namespace} (<service>.{namespace}.svc)"
            if prometheus:
                allowed += ", the operator's --prometheus-endpoint URLs"
            raise refuse(f"host {host} is not allowed; allowed: {allowed} and the operator's "
                         "--analysis-allow-host patterns")
        try:
            ips = self.resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise refuse(f"cannot resolve {host}: {exc}") from exc
        if not ips:
            raise refuse(f"{host} resolves to no address")
        for ip in ips:
            why = self._ip_refused(ip, port)
            if why:
                raise refuse(f"{host} resolves to {ip} ({why})")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return Target(parts.scheme, host, port, ips[0], path)

    def _host_allowed(self, host: str, namespace: str, prometheus_url: str | None) -> bool:
        ns = re.escape(namespace.lower())
        if re.fullmatch(rf"[a-z0-9]([-a-z0-9]*[a-z0-9])?\.{ns}\.svc(\.cluster\.local)?", host):
            return True
        if any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in self.allowed_hosts):
            return True
        if prometheus_url is not None:
            base = prometheus_url.split("/api/v1/", 1)[0].rstrip("/")
            return any(base == e.rstrip("/") for e in self.prometheus_endpoints)
        return False

    def _ip_refused(self, text: str, port: int) -> str:
        try:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return "not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if (str(ip), port) in self.api_servers:
            return "the Kubernetes API server"
        if any(ip in net for net in self.allowed_networks):
            return ""
        if str(ip) in METADATA_IPS:
            return "a cloud metadata address"
        for attr, why in (("is_loopback", "loopback"), ("is_link_local", "link-local, e.g. cloud metadata"),
                          ("is_unspecified", "unspecified"), ("is_multicast", "multicast"),
                          ("is_reserved", "reserved")):
            if getattr(ip, attr):
                return why
        return ""


def _api_server_addresses() -> frozenset[tuple[str, int]]:
    """Where the API server listens, as the operator sees it (kubeconfig / in-cluster env)."""
    found: set[tuple[str, int]] = set()
    candidates: list[tuple[str, int]] = []
    env_host, env_port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if env_host:
        candidates.append((env_host, int(env_port or 443)))
    from . import settings as settings_mod  # set at start-up from the client configuration

    if settings_mod.current.api_server_url:
        parts = urllib.parse.urlsplit(settings_mod.current.api_server_url)
        if parts.hostname:
            candidates.append((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    for host, port in candidates:
        try:
            for ip in getaddrinfo_resolver(host, port):
                found.add((str(ipaddress.ip_address(ip.split("%", 1)[0])), port))
        except (OSError, ValueError):
            continue
    return frozenset(found)


_policy_lock = threading.Lock()
_policy: UrlPolicy | None = None


def current_policy() -> UrlPolicy:
    """The policy from the operator's settings (built once; settings are fixed at start-up)."""
    global _policy
    with _policy_lock:
        if _policy is None:
            from . import settings

            cur = settings.current
            _policy = UrlPolicy(
                allowed_hosts=tuple(cur.analysis_allowed_hosts),
                prometheus_endpoints=tuple(cur.prometheus_endpoints),
                allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in cur.analysis_allowed_networks),
                api_servers=_api_server_addresses(),
            )
        return _policy


def reset_policy() -> None:
    global _policy
    with _policy_lock:
        _policy = None


# ---- HTTP and Prometheus ---------------------------------------------------------------------

Fetch = Callable[[Target, Mapping[str, str], float], tuple[int, bytes]]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._ip = target.ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self._ip = target.ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def pinned_fetch(target: Target, headers: Mapping[str, str], timeout: float) -> tuple[int, bytes]:
    """GET the checked address (no DNS lookup after the check), no redirects, at most MAX_BODY bytes."""
    conn: http.client.HTTPConnection = (
        _PinnedHTTPSConnection(target, timeout) if target.scheme == "https" else _PinnedHTTPConnection(target, timeout)
    )
    try:
        conn.request("GET", target.path, headers=dict(headers))
        resp = conn.getresponse()
        return int(resp.status), resp.read(MAX_BODY)
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP response: {type(exc).__name__}") from exc
    finally:
        conn.close()


def _stored_value(result: Any, extracted: bool) -> str:
    """Only a value a jsonPath extracted, or a scalar answer, is kept (clipped); never a body."""
    if extracted or result is None or isinstance(result, bool | int | float):
        return short(result, MAX_VALUE)
    return ""


def measure_http(p: HTTPProvider, metric: Metric, ctx: Mapping[str, str], now: datetime,
                 fetch: Fetch = pinned_fetch, policy: UrlPolicy | None = None) -> ro.Measurement:
    url = render(p.url, ctx)
    try:
        target = (policy or current_policy()).check(url, ctx.get("namespace", ""), f"metric {metric.name}: http.url")
        status, body = fetch(target, {h.name: render(h.value, ctx) for h in p.headers}, float(p.timeout_seconds))
        if 300 <= status < 400:
            raise ConditionError(f"HTTP {status} from {url}: redirects are not followed")
        if not (metric.success_condition or metric.failure_condition):
            # Without conditions the status code decides; an HTTP error is an answer, not an Error.
            phase = ro.MeasurementPhase.FAILED if status >= 400 else ro.MeasurementPhase.SUCCESSFUL
            return ro.Measurement(phase, now, f"HTTP {status}", f"HTTP {status} from {url}")
        try:
            data: Any = json.loads(body.decode() or "null")
        except ValueError:
            data = body.decode(errors="replace")
        result = json_path(data, p.json_path) if p.json_path else data
        phase, why = judge(result, metric.success_condition, metric.failure_condition)
        return ro.Measurement(phase, now, _stored_value(result, bool(p.json_path)), f"HTTP {status}: {why}")
    except ConditionError as exc:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, "", str(exc))
    except (OSError, TimeoutError) as exc:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, "", f"GET {url}: {short(str(exc), 200)}")


def prometheus_result(payload: Any) -> Any:
    """Vector → list of floats; scalar → float; matrix → list of lists of floats."""
    if not isinstance(payload, dict) or payload.get("status") != "success":
        err = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(err, str) and err:
            raise ConditionError(f"prometheus query failed: {short(err, 200)}")
        raise ConditionError("prometheus query failed: not a Prometheus API response")
    data = payload.get("data") or {}
    kind = data.get("resultType")
    res: Any = data.get("result")
    try:
        if kind == "vector":
            return [float(s["value"][1]) for s in res or []]
        if kind == "scalar":
            return float(res[1])
        if kind == "matrix":
            return [[float(v[1]) for v in s.get("values", [])] for s in res or []]
        if kind == "string":
            return str(res[1])
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ConditionError(f"unexpected prometheus {kind} result") from exc
    raise ConditionError(f"unexpected prometheus resultType {short(str(kind), 40)!r}")


def measure_prometheus(p: PrometheusProvider, metric: Metric, ctx: Mapping[str, str], now: datetime,
                       fetch: Fetch = pinned_fetch, policy: UrlPolicy | None = None) -> ro.Measurement:
    query = render(p.query, ctx)
    url = p.address.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        target = (policy or current_policy()).check(url, ctx.get("namespace", ""),
                                                    f"metric {metric.name}: prometheus.address", prometheus=True)
        status, body = fetch(target, {"Accept": "application/json"}, float(p.timeout_seconds))
        if 300 <= status < 400:
            raise ConditionError(f"prometheus answered HTTP {status}: redirects are not followed")
        try:
            payload = json.loads(body.decode() or "null")
        except ValueError as exc:
            raise ConditionError(f"prometheus answered HTTP {status} with non-JSON") from exc
        result = prometheus_result(payload)
        if isinstance(result, list) and not result and not metric.failure_condition:
            # An empty vector usually means the series does not exist yet: not a pass.
            return ro.Measurement(ro.MeasurementPhase.INCONCLUSIVE, now, "[]", f"query {query!r} returned no series")
        phase, why = judge(result, metric.success_condition, metric.failure_condition)
        return ro.Measurement(phase, now, short(result, MAX_VALUE), why)
    except ConditionError as exc:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, "", str(exc))
    except (OSError, TimeoutError) as exc:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, "", f"query {p.address}: {short(str(exc), 200)}")


# ---- tasks -----------------------------------------------------------------------------------


def measure_tasks(p: TasksProvider, metric: Metric, agent: str, stable: str | None, canary: str | None,
                  since: datetime, tasks: Iterable[Mapping[str, Any]], now: datetime) -> ro.Measurement:
    """Canary tasks against stable tasks since ``since`` (see ``taskoutcomes``); ``tasks`` come from the
    watch-fed cache. Fewer than ``minCount`` decided tasks on either side: Inconclusive."""
    if not stable or not canary or stable == canary:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, "",
                              f"metric {metric.name}: tasks compares a canary revision with a stable one; "
                              f"there is none (stable {stable or '-'}, canary {canary or '-'})")
    try:  # a typo is an Error now, not after the sample is complete (and the parser is built by then)
        for expr in (metric.success_condition, metric.failure_condition):
            if expr:
                compile_condition(expr)
    except ConditionError as exc:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, "", str(exc))
    cmp = taskoutcomes.compare(tasks, agent, stable, canary, since)
    result = cmp.result()
    # Our own figures, not a response body: kept whole (compact, rounded) for status.
    value = json.dumps({k: {f: round(v, 4) if isinstance(v, float) else v for f, v in side.items() if f != "revision"}
                        for k, side in result.items() if isinstance(side, dict)}, separators=(",", ":"))
    if min(cmp.canary.count, cmp.stable.count) < p.min_count:
        return ro.Measurement(ro.MeasurementPhase.INCONCLUSIVE, now, value,
                              f"too few decided tasks (need {p.min_count} each): {cmp.summary()}")
    try:
        phase, why = judge(result, metric.success_condition, metric.failure_condition)
    except ConditionError as exc:
        return ro.Measurement(ro.MeasurementPhase.ERROR, now, value, f"{exc}; {cmp.summary()}")
    return ro.Measurement(phase, now, value, f"{why}: {cmp.summary()}")


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
