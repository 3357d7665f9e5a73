"""The one door to the Kubernetes API: clients, reads the cache cannot answer, and every write.

Every write carries one field manager (`agentops-operator`) and feeds its response into the
watch-fed cache (`cache.store`), so the next reconcile sees our own write without waiting for the
watch. 404/409 handling lives here once: `read_or_none`, `create_or_adopt`, `delete_if_exists`, and
`failure(exc)` / `error_message(exc)`, which say what a failed call means to whoever called it.
Every request has a timeout and is counted (`agentops_api_requests_total{verb,resource}`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from prometheus_client import Counter
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import HTTPError as Urllib3Error

from . import GROUP, VERSION
from .cache import notify, store
from .timeutil import format_time

log = logging.getLogger(__name__)
_lock = threading.Lock()
_api: client.ApiClient | None = None
COMPONENT = "agentops-operator"
FIELD_MANAGER = "agentops-operator"
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read (seconds)
API_REQUESTS = Counter("agentops_api_requests_total", "Requests the operator sent to the API server",
                       ["verb", "resource"])
_RESOURCE = re.compile(r"^/apis?/(?:[^/]+/)?v[^/]+/(?:namespaces/[^/]+/)?([a-z]+)(?:/[^/?]+)?(/status|/scale)?")

# (apiVersion, kind) → (plural used in the cache, URL path template)
_PATHS = {
    ("apps/v1", "Deployment"): ("deployments", "/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
    ("apps/v1", "ControllerRevision"): ("controllerrevisions",
                                        "/apis/apps/v1/namespaces/{ns}/controllerrevisions/{name}"),
    ("v1", "Service"): ("services", "/api/v1/namespaces/{ns}/services/{name}"),
    ("v1", "ServiceAccount"): ("serviceaccounts", "/api/v1/namespaces/{ns}/serviceaccounts/{name}"),
    ("v1", "ConfigMap"): ("configmaps", "/api/v1/namespaces/{ns}/configmaps/{name}"),
    ("batch/v1", "Job"): ("jobs", "/apis/batch/v1/namespaces/{ns}/jobs/{name}"),
}


class _ApiClient(client.ApiClient):
    """Adds a default timeout to every request and counts requests by verb and resource."""

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = REQUEST_TIMEOUT
        path = url.split("://", 1)[-1]
        path = path[path.find("/"):] if "/" in path else path
        m = _RESOURCE.match(path)
        resource = (m.group(1) + (m.group(2) or "")) if m else "other"
        API_REQUESTS.labels(method, resource).inc()
        return super().request(method, url, *args, **kwargs)


def load_config() -> None:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def api_client() -> client.ApiClient:
    global _api
    with _lock:
        if _api is None:
            load_config()
            _api = _ApiClient()
        return _api


def impersonate(user: str, groups: list[str] | None = None) -> None:
    """Act as another user (kubectl --as / --as-group); the API server checks we may impersonate.

    Each group is its own ``Impersonate-Group`` header line, as kubectl sends them: the API server
    reads every line and does not split values on commas. The generated client keeps headers in a
    plain dict (one value per name), so the headers are added below it, where urllib3 sends a
    multi-valued ``HTTPHeaderDict`` as repeated lines.
    """
    rest = api_client().rest_client
    rest.pool_manager = _Impersonating(rest.pool_manager, user, tuple(groups or ()))


class _Impersonating:
    """A urllib3 pool manager that adds the impersonation headers to every request."""

    def __init__(self, pool: Any, user: str, groups: tuple[str, ...]) -> None:
        self._pool = getattr(pool, "_pool", pool)  # impersonating twice replaces, never stacks
        self._user = user
        self._groups = groups

    def request(self, method: str, url: str, *args: Any, headers: Any = None, **kwargs: Any) -> Any:
        merged = HTTPHeaderDict(headers or {})
        for name in ("Impersonate-User", "Impersonate-Group"):
            merged.discard(name)
        merged["Impersonate-User"] = self._user
        for group in self._groups:
            merged.add("Impersonate-Group", group)
        return self._pool.request(method, url, *args, headers=merged, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def batch() -> client.BatchV1Api:
    return client.BatchV1Api(api_client())


def apps() -> client.AppsV1Api:
    return client.AppsV1Api(api_client())


def plain(obj: Any) -> dict[str, Any]:
    """A generated-client model as the plain dict the API sent (camelCase keys)."""
    if isinstance(obj, dict):
        return obj
    return api_client().sanitize_for_serialization(obj)


def _observe(plural: str, obj: Any) -> dict[str, Any]:
    body = plain(obj)
    if isinstance(body, dict) and body.get("metadata"):
        changed, old = store.upsert(plural, body)
        if changed:
            notify(plural, old, body, True)
    return body


# ---- what a failed call means ---------------------------------------------------------------


class Failure(Enum):
    """What a failed API call means to its caller (`failure(exc)`)."""

    GONE = "gone"  # 404: the object is gone (its DELETED event follows)
    CONFLICT = "conflict"  # 409: someone wrote first; the watch brings the newer version
    NAMESPACE_ENDING = "namespace-ending"  # the namespace is being deleted (or already is)
    UNAVAILABLE = "unavailable"  # no answer: connection refused or reset, timeout, 5xx
    REFUSED = "refused"  # any other API error: the request itself is wrong (422, 403, ...)


_UNAVAILABLE_STATUS = (0, 500, 502, 503, 504, None)


def failure(exc: BaseException) -> Failure | None:
    """Classify an exception raised by a call through this module; None: not an API failure (a bug)."""
    if isinstance(exc, ApiException):
        body = exc.body if isinstance(exc.body, str) else ""
        if (exc.status == 403 and "being terminated" in body) or (exc.status == 404 and '"kind":"namespaces"' in body):
            return Failure.NAMESPACE_ENDING
        if exc.status == 404:
            return Failure.GONE
        if exc.status == 409:
            return Failure.CONFLICT
        if exc.status in _UNAVAILABLE_STATUS:
            return Failure.UNAVAILABLE
        return Failure.REFUSED
    if isinstance(exc, Urllib3Error | OSError | TimeoutError):
        return Failure.UNAVAILABLE
    return None


def error_message(exc: BaseException) -> str:
    """`API error 422 Unprocessable Entity: spec.template...image: Required value` — the field named."""
    if not isinstance(exc, ApiException):
        return f"{type(exc).__name__}: {exc}"
    text = f"API error {exc.status} {exc.reason}"
    try:
        body = json.loads(exc.body) if isinstance(exc.body, str | bytes) else {}
    except ValueError:
        body = {}
    causes = ((body.get("details") or {}).get("causes") or []) if isinstance(body, dict) else []
    if causes:
        return text + ": " + "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}" for c in causes[:5])
    if isinstance(body, dict) and body.get("message"):
        return f"{text}: {str(body['message'])[:500]}"
    return text


# ---- custom resources ------------------------------------------------------------------------


def get_custom(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """Read from the API (not the cache): for clients and the rare read the cache cannot answer."""
    try:
        return custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def list_custom(plural: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
    kwargs: dict[str, Any] = {}
    if label_selector:
        kwargs["label_selector"] = label_selector
    if namespace:
        res = custom().list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **kwargs)
    else:
        res = custom().list_cluster_custom_object(GROUP, VERSION, plural, **kwargs)
    return list(res.get("items", []))


def patch_status(
    plural: str, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
) -> dict[str, Any]:
    """Merge-patch status; with resource_version the write fails with 409 if the object moved on."""
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    out = custom().patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, body,
                                                         field_manager=FIELD_MANAGER)
    return _observe(plural, out)


def replace_status(plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    """PUT status with the object's resourceVersion: optimistic concurrency for whole-status rewrites."""
    meta = obj["metadata"]
    out = custom().replace_namespaced_custom_object_status(
        GROUP, VERSION, meta["namespace"], plural, meta["name"], obj, field_manager=FIELD_MANAGER
    )
    return _observe(plural, out)


def patch_labels(plural: str, namespace: str, name: str, labels: dict[str, str | None]) -> dict[str, Any]:
    """Merge-patch metadata.labels of a custom object (never its spec)."""
    out = custom().patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name,
                                                  {"metadata": {"labels": labels}}, field_manager=FIELD_MANAGER)
    return _observe(plural, out)


# ---- built-in children -----------------------------------------------------------------------


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply as the operator's field manager (force: the operator owns its children)."""
    meta = manifest["metadata"]
    plural, path = _PATHS[(manifest["apiVersion"], manifest["kind"])]
    out = api_client().call_api(
        path.format(ns=meta["namespace"], name=meta["name"]), "PATCH",
        query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=manifest, response_type="object", auth_settings=["BearerToken"], _return_http_data_only=True,
    )
    return _observe(plural, out)


_CREATE = {
    "Job": lambda ns, body: batch().create_namespaced_job(ns, body, field_manager=FIELD_MANAGER),
    "ConfigMap": lambda ns, body: core().create_namespaced_config_map(ns, body, field_manager=FIELD_MANAGER),
    "ControllerRevision": lambda ns, body: apps().create_namespaced_controller_revision(
        ns, body, field_manager=FIELD_MANAGER),
}
_DELETE = {
    "Job": lambda ns, name: batch().delete_namespaced_job(name, ns, propagation_policy="Background"),
    "Deployment": lambda ns, name: apps().delete_namespaced_deployment(name, ns, propagation_policy="Background"),
    "ConfigMap": lambda ns, name: core().delete_namespaced_config_map(name, ns),
    "Service": lambda ns, name: core().delete_namespaced_service(name, ns),
    "ControllerRevision": lambda ns, name: apps().delete_namespaced_controller_revision(name, ns),
}
_PLURAL = {kind: plural for (_, kind), (plural, _) in _PATHS.items()}


def create(manifest: dict[str, Any]) -> dict[str, Any]:
    """Create a child; raises ApiException (409 when it exists)."""
    ns = manifest["metadata"]["namespace"]
    return _observe(_PLURAL[manifest["kind"]], _CREATE[manifest["kind"]](ns, manifest))


def create_or_adopt(manifest: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """Create a child with a deterministic name; (object or None, created). A 409 means it was made
    before (a restart, a stale cache): it is adopted, not made twice."""
    try:
        return create(manifest), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    meta = manifest["metadata"]
    return store.get(_PLURAL[manifest["kind"]], meta["namespace"], meta["name"]), False


def delete_if_exists(kind: str, namespace: str, name: str) -> bool:
    """Delete a child; False when it was already gone."""
    try:
        _DELETE[kind](namespace, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        store.delete(_PLURAL[kind], namespace, name)
        return False
    store.delete(_PLURAL[kind], namespace, name)
    return True


def scale_deployment(namespace: str, name: str, replicas: int) -> None:
    apps().patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}},
                                             field_manager=FIELD_MANAGER)


_READ = {
    "ServiceAccount": lambda ns, name: core().read_namespaced_service_account(name, ns),
    "PersistentVolumeClaim": lambda ns, name: core().read_namespaced_persistent_volume_claim(name, ns),
}


def exists(kind: str, namespace: str, name: str) -> bool:
    """Whether an object the cache does not hold exists (one GET; 403 counts as existing: the
    operator cannot tell, and the Job will say)."""
    try:
        _READ[kind](namespace, name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        if exc.status == 403:
            return True
        raise
    return True


def read_config_map(namespace: str, name: str) -> dict[str, Any] | None:
    """A ConfigMap the cache does not hold (outside the watched namespaces); None if absent."""
    try:
        return plain(core().read_namespaced_config_map(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


# ---- Events ----------------------------------------------------------------------------------


_events: queue.Queue[tuple[dict[str, Any], float]] = queue.Queue(maxsize=10000)
_event_thread: threading.Thread | None = None
EVENTS_DROPPED = Counter("agentops_events_dropped_total", "Events not recorded because the queue was full")
# Events yield to reconciles: while `_busy()` says work is waiting, an Event waits too, at most this long.
EVENT_MAX_DELAY = 5.0
_busy: Callable[[], bool] = lambda: False  # noqa: E731


def events_yield_to(busy: Callable[[], bool]) -> None:
    """Post Events only when `busy()` is false (or an Event has waited EVENT_MAX_DELAY seconds).

    A status write is the record of a move; its Event is the informational copy. On a CPU-bound
    machine the two compete for the same cores (the Event was 5.5 ms of the operator's 14.8 ms per move
    and 2-3 ms of the API server's), so during a burst the Events are sent after the moves."""
    global _busy
    _busy = busy


def _event_worker() -> None:
    while True:
        body, queued_at = _events.get()
        try:
            while _busy() and time.monotonic() - queued_at < EVENT_MAX_DELAY:
                time.sleep(0.05)
            _post_event(body)
        finally:
            _events.task_done()


def flush_events(timeout: float = 5.0) -> None:
    """Wait (bounded) until queued Events are sent, e.g. before the process exits."""
    deadline = time.monotonic() + timeout
    events_yield_to(lambda: False)
    while _events.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.05)


def event_body(obj: dict[str, Any], type_: str, reason: str, message: str, name: str | None = None,
               now: datetime | None = None) -> dict[str, Any]:
    """A core/v1 Event about `obj`, as the API takes it (a plain dict: building the generated client's
    models and reading them back cost more CPU than the rest of a move)."""
    meta = obj["metadata"]
    stamp = format_time(now or datetime.now(UTC))
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"namespace": meta["namespace"], **({"name": name} if name else
                                                         {"generateName": f"{meta['name']}."})},
        "involvedObject": {k: v for k, v in (("apiVersion", obj.get("apiVersion")), ("kind", obj.get("kind")),
                                             ("name", meta["name"]), ("namespace", meta["namespace"]),
                                             ("uid", meta.get("uid")),
                                             ("resourceVersion", meta.get("resourceVersion"))) if v},
        "reason": reason, "message": message[:1024], "type": type_,
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT, "reportingInstance": COMPONENT,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


def emit_event(obj: dict[str, Any], type_: str, reason: str, message: str, name: str | None = None) -> None:
    """Record a core/v1 Event on the object, asynchronously (as client-go's event recorder does): a
    reconcile does not wait for its Events. Failures are logged, never raised: events are best effort.

    With `name`, the Event has that deterministic name, so emitting it again (after a restart that
    lost track of whether it was emitted) is a no-op 409 instead of a duplicate."""
    global _event_thread
    body = event_body(obj, type_, reason, message, name)
    with _lock:
        if _event_thread is None:
            _event_thread = threading.Thread(target=_event_worker, name="agentops-events", daemon=True)
            _event_thread.start()
    try:
        _events.put_nowait((body, time.monotonic()))
    except queue.Full:
        EVENTS_DROPPED.inc()


def _post_event(body: dict[str, Any]) -> None:
    ns, reason = body["metadata"]["namespace"], body["reason"]
    obj_name = body["involvedObject"]["name"]
    try:
        # No response_type: the answer is read (the connection goes back to the pool) but not decoded.
        api_client().call_api(f"/api/v1/namespaces/{ns}/events", "POST",
                              query_params=[("fieldManager", FIELD_MANAGER)],
                              header_params={"Content-Type": "application/json", "Accept": "application/json"},
                              body=body, auth_settings=["BearerToken"], _return_http_data_only=True)
    except ApiException as exc:
        if exc.status == 409 and body["metadata"].get("name"):
            return
        log.warning("could not record event %s on %s/%s: %s", reason, ns, obj_name, exc.reason)
    except Exception as exc:  # unreachable API server: Events are best effort
        log.debug("could not record event %s on %s/%s: %s", reason, ns, obj_name, exc)


def job_failure_detail(namespace: str, job: str, limit: int = 500) -> str:
    """Why a Job's pod failed: its termination message (or reason) and exit code; '' if unknown.
    Pods are not cached (the operator does not own them): one LIST, only when a gate failed."""
    try:
        pods = core().list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}")
    except ApiException:
        return ""
    for pod in pods.items:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            term = cs.state.terminated if cs.state else None
            if term and term.exit_code:
                detail = (term.message or term.reason or "").strip()
                return f"exit code {term.exit_code}" + (f": {detail[-limit:]}" if detail else "")
    return ""


# ---- priming the cache -----------------------------------------------------------------------


LIST_PAGE = 500  # items per LIST page when priming: bounds the JSON held at once (a 10,000-task LIST is ~26 MB)


def list_pages(path: str, label_selector: str | None = None,
               limit: int = LIST_PAGE) -> Iterator[list[dict[str, Any]]]:
    """A LIST in pages of `limit` (`continue` tokens): each page's items as plain dicts, with apiVersion
    and kind filled in. The caller keeps what it needs of a page before the next one is read."""
    token: str | None = None
    while True:
        query: list[tuple[str, Any]] = [("limit", limit)]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if token:
            query.append(("continue", token))
        out = api_client().call_api(path, "GET", query_params=query, header_params={"Accept": "application/json"},
                                    response_type="object", auth_settings=["BearerToken"],
                                    _return_http_data_only=True)
        items = list(out.get("items") or [])
        api_version = out.get("apiVersion", "")
        kind = (out.get("kind") or "").removesuffix("List")
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        token = (out.get("metadata") or {}).get("continue") or None
        del out
        yield items
        if not token:
            return


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc's malloc_trim): after priming, the pages'
    JSON and the watch's initial listing are garbage that would otherwise stay in the process's RSS.

    What survives (the cache: every object's body, and the modules) is then frozen out of the cyclic
    collector's view (`gc.freeze`): the collector's automatic full collections walked every cached
    object, a pause of 43 ms at 5,000 cached tasks and 128 ms at 10,000 that could land in any move.
    Frozen objects are still freed by reference counting when the cache replaces them. Each call first
    unfreezes and collects everything once, so garbage cycles among objects frozen last time (a
    finished asyncio task, an exception) are reclaimed now: nothing frozen lives longer than one period.
    Called after priming, after the first pass, and by the resync loop when no work is queued."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
