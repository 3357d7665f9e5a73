"""Thin helpers over the kubernetes client: clients, status writes, Events, owner references."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from urllib3 import HTTPHeaderDict

from . import GROUP, VERSION

log = logging.getLogger(__name__)
_lock = threading.Lock()
_api: client.ApiClient | None = None
COMPONENT = "agentops-operator"


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
            _api = client.ApiClient()
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


def get_custom(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
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
    return custom().patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, body)


def replace_status(plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    """PUT status with the object's resourceVersion: optimistic concurrency for whole-status rewrites."""
    meta = obj["metadata"]
    return custom().replace_namespaced_custom_object_status(
        GROUP, VERSION, meta["namespace"], plural, meta["name"], obj
    )


def emit_event(obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """Record a core/v1 Event on the object. Failures are logged, never raised: events are best effort."""
    meta = obj["metadata"]
    now = datetime.now(UTC)
    body = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
        involved_object=client.V1ObjectReference(
            api_version=obj.get("apiVersion"),
            kind=obj.get("kind"),
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion"),
        ),
        reason=reason,
        message=message[:1024],
        type=type_,
        source=client.V1EventSource(component=COMPONENT),
        reporting_component=COMPONENT,
        reporting_instance=COMPONENT,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )
    try:
        core().create_namespaced_event(meta["namespace"], body)
    except ApiException as exc:
        log.warning("could not record event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc.reason)


def job_failure_detail(namespace: str, job: str, limit: int = 500) -> str:
    """Why a Job's pod failed: its termination message (or reason) and exit code; '' if unknown."""
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
