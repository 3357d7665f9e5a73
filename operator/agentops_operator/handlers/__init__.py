"""kopf wiring: watch streams feed the cache; a change enqueues the keys it concerns, nothing more.

Each resource has its own module (agent, task, quota) that registers a reconcile function with the
runtime. Here: which watch events wake which keys, the start-up priming of the cache (one LIST per
kind, as an informer does before it watches), and the start/stop of the runtime's workers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import kopf
from prometheus_client import start_http_server

from .. import GROUP, VERSION, kube, metrics
from .. import settings as settings_mod
from ..cache import listen, notify, store
from ..runtime import RECONCILERS, runtime, watched
from . import agent, alertreceiver, deploy, handback, monitor, quota, stats, task, tokens  # noqa: F401  (registration side effects)

log = logging.getLogger(__name__)
audit = logging.getLogger("agentops.audit")
MANAGED = "app.kubernetes.io/managed-by=agentops-operator"
CONFIG_LABEL = "agentops.dev/config"
AGENT_LABEL = "agentops.dev/agent"

# What the cache holds, and how it is primed: (plural, LIST path without namespace, with namespace,
# label selector or None).
CACHED: list[tuple[str, str, str, str | None]] = [
    ("agents", f"/apis/{GROUP}/{VERSION}/agents", f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/agents", None),
    ("agenttasks", f"/apis/{GROUP}/{VERSION}/agenttasks", f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/agenttasks",
     None),
    ("quotas", f"/apis/{GROUP}/{VERSION}/quotas", f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/quotas", None),
    ("jobs", "/apis/batch/v1/jobs", "/apis/batch/v1/namespaces/{ns}/jobs", MANAGED),
    ("deployments", "/apis/apps/v1/deployments", "/apis/apps/v1/namespaces/{ns}/deployments", MANAGED),
    ("controllerrevisions", "/apis/apps/v1/controllerrevisions", "/apis/apps/v1/namespaces/{ns}/controllerrevisions",
     MANAGED),
    ("services", "/api/v1/services", "/api/v1/namespaces/{ns}/services", MANAGED),
    ("serviceaccounts", "/api/v1/serviceaccounts", "/api/v1/namespaces/{ns}/serviceaccounts", MANAGED),
    ("configmaps", "/api/v1/configmaps", "/api/v1/namespaces/{ns}/configmaps", MANAGED),
    ("configmaps", "/api/v1/configmaps", "/api/v1/namespaces/{ns}/configmaps", CONFIG_LABEL),
    ("configmaps", "/api/v1/configmaps", "/api/v1/namespaces/{ns}/configmaps", task.POLICY_LABEL),
    ("leases", "/apis/coordination.k8s.io/v1/leases", "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
     AGENT_LABEL),
]


def prime_cache() -> None:
    """Fill the cache before the workers start, so no reconcile acts on a partial view (an assignment
    pass that saw half the tasks would over-fill agents)."""
    namespaces = settings_mod.current.namespaces
    exact = namespaces and not any(ch in ns for ns in namespaces for ch in "*?[")
    for plural, cluster_path, ns_path, selector in CACHED:
        paths = [ns_path.format(ns=ns) for ns in namespaces] if exact else [cluster_path]
        for path in paths:
            # Paginated: each page is slimmed into the cache (store.upsert) before the next is read, so
            # the raw LIST of every task is never held at once.
            for page in kube.list_pages(path, selector):
                for item in page:
                    if watched(item["metadata"].get("namespace", "")):
                        store.upsert(plural, item)
        store.mark_synced(plural)
    kube.release_memory()
    log.info("cache primed: %d objects", store.count())


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base, for an operator without change handlers (on.create/update/resume): kopf builds
    it for every watch event anyway (a deep copy of the body, then a diff), which was a sixth of the
    operator's CPU during a burst of moves. Nothing is stored on the objects, nothing is compared."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def uses_change_handlers(registry: kopf.OperatorRegistry) -> bool:
    return bool(registry._changing.get_all_handlers() or registry._spawning.get_all_handlers())


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Events are written by kube.emit_event; kopf's own per-handler events are noise.
    settings.posting.level = logging.WARNING
    if not uses_change_handlers(kopf.get_default_registry()):
        settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = [1, 2, 5, 10]
    # The watches' initial listings in pages too (kopf's default is one LIST of everything): at most one
    # page of raw JSON is held at once, not the whole namespace's tasks.
    settings.watching.chunk_size = kube.LIST_PAGE
    cfg = settings_mod.current
    cfg.api_server_url = kube.api_client().configuration.host
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port)
    await asyncio.to_thread(prime_cache)
    deploy.after_prime()
    stats.stats.start(store.namespaces("agents"))
    runtime.start(cfg.workers)
    alertreceiver.start()
    threading.Thread(target=_release_after_first_pass, name="agentops-release-memory", daemon=True).start()
    log.info("agentops operator started; reconcilers: %s; %d workers", ", ".join(sorted(RECONCILERS)), cfg.workers)


def _release_after_first_pass(quiet_s: float = 2.0, at_least_s: float = 5.0, limit_s: float = 600.0) -> None:
    """Once the watches' initial listings are consumed and the start-up reconciles done (the queue quiet
    for `quiet_s`), return their garbage to the OS once: it is the bulk of the RSS right after a restart."""
    started, quiet_since = time.monotonic(), None
    while time.monotonic() - started < limit_s:
        time.sleep(0.5)
        if runtime.queue.depth() or not all(store.synced(kind) for kind, *_ in CACHED):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s and time.monotonic() - started >= at_least_s:
            break
    kube.release_memory()


@kopf.on.cleanup()
async def _cleanup(**_: Any) -> None:
    alertreceiver.stop()
    runtime.stop()
    stats.stats.stop()
    await asyncio.to_thread(kube.flush_events)


# ---- feeding the cache -----------------------------------------------------------------------

def _feed(plural: str, event: dict[str, Any]) -> None:
    """One watch event into the cache; listeners (below) decide which keys it wakes."""
    obj = event.get("object") or {}
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    if not meta.get("name") or not watched(ns):
        return
    if event.get("type") == "DELETED":
        old = store.delete(plural, ns, meta["name"])
        notify(plural, old or obj, None, False)
        return
    changed, old = store.upsert(plural, obj)
    if changed:
        notify(plural, old, obj, False)


def _owner_keys(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    ns = obj["metadata"].get("namespace") or ""
    plural = {"AgentTask": "agenttasks", "Agent": "agents"}
    return [(plural[r["kind"]], ns, r["name"]) for r in obj["metadata"].get("ownerReferences") or []
            if r.get("kind") in plural and str(r.get("apiVersion", "")).startswith(GROUP)]


def _wake_owners(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool = False) -> None:
    if own:  # written by the owner's own reconcile
        return
    for key in {*(_owner_keys(old) if old else []), *(_owner_keys(new) if new else [])}:
        runtime.enqueue(*key)


def _spec_changed(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """A change the object's own reconcile must see: not just status written by someone else."""
    if old is None or new is None:
        return True
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    return (om.get("generation") != nm.get("generation") or om.get("labels") != nm.get("labels")
            or om.get("annotations") != nm.get("annotations") or om.get("uid") != nm.get("uid")
            or om.get("deletionTimestamp") != nm.get("deletionTimestamp"))


# ---- AgentTasks ------------------------------------------------------------------------------


def _task_changed(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    cur = new or old
    assert cur is not None
    meta = cur["metadata"]
    ns, name = meta.get("namespace") or "", meta["name"]
    o_st, n_st = (old or {}).get("status") or {}, (new or {}).get("status") or {}
    if new is None:
        runtime.forget("agenttasks", ns, name)
        task.forget(meta.get("uid") or "")
        audit.info(json.dumps({"event": "AgentTaskDeleted", "namespace": ns, "name": name, "uid": meta.get("uid"),
                               "phase": o_st.get("phase"), "history": o_st.get("history") or []},
                              separators=(",", ":"), default=str))
    elif not own:  # our own write was computed by that very reconcile: nothing new to see
        runtime.enqueue("agenttasks", ns, name)
    stats.stats.task_changed(old, new)
    moved = (o_st.get("phase"), o_st.get("assignee"), o_st.get("completedBy"), o_st.get("lastTransitionTime")) != (
        n_st.get("phase"), n_st.get("assignee"), n_st.get("completedBy"), n_st.get("lastTransitionTime"))
    if new is None or old is None or moved:
        if task.assignment_relevant(old, new):
            runtime.enqueue(task.ASSIGN, ns, "", delay=task.ASSIGN_DEBOUNCE_SECONDS)
        for agent_name in agent.queue_scaled_agents(ns):
            runtime.enqueue("agents", ns, agent_name)


listen("agenttasks", _task_changed)


@kopf.on.event(GROUP, VERSION, "agenttasks", id="cache-agenttasks")
async def _task_event(event: dict[str, Any], **_: Any) -> None:
    _feed("agenttasks", event)


# ---- Agents ----------------------------------------------------------------------------------


def _agent_changed(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    cur = new or old
    assert cur is not None
    ns, name = cur["metadata"].get("namespace") or "", cur["metadata"]["name"]
    if new is None:
        runtime.forget("agents", ns, name)
        stats.stats.forget(ns, name)
        handback.wake_tasks_of(ns, name)  # its open tasks go back to the queue
        runtime.enqueue(task.ASSIGN, ns, "", delay=task.ASSIGN_DEBOUNCE_SECONDS)
        return
    if _spec_changed(old, new):
        runtime.enqueue("agents", ns, name)
    if old is None or task.agent_available(old) != task.agent_available(new) or _spec_changed(old, new):
        # Readiness or capacity changed: waiting tasks may now fit.
        runtime.enqueue(task.ASSIGN, ns, "", delay=task.ASSIGN_DEBOUNCE_SECONDS)
    if old is None:
        stats.stats.touch(ns, {name})


listen("agents", _agent_changed)


@kopf.on.event(GROUP, VERSION, "agents", id="cache-agents")
async def _agent_event(event: dict[str, Any], **_: Any) -> None:
    _feed("agents", event)


# ---- Quotas ----------------------------------------------------------------------------------


def _quota_changed(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    cur = new or old
    assert cur is not None
    ns, name = cur["metadata"].get("namespace") or "", cur["metadata"]["name"]
    if new is None:
        runtime.forget("quotas", ns, name)
        return
    if not own:
        runtime.enqueue("quotas", ns, name)
    o_st, n_st = (old or {}).get("status") or {}, new.get("status") or {}
    freed = int(n_st.get("used") or 0) + int(n_st.get("reserved") or 0) < \
        int(o_st.get("used") or 0) + int(o_st.get("reserved") or 0)
    if freed or _spec_changed(old, new):
        # Finding the waiting tasks scans the namespace: a worker does it, not the event loop.
        runtime.enqueue(task.WAKE_QUOTA_WAITERS, ns, "")
        runtime.enqueue(task.ASSIGN, ns, "", delay=task.ASSIGN_DEBOUNCE_SECONDS)


listen("quotas", _quota_changed)


@kopf.on.event(GROUP, VERSION, "quotas", id="cache-quotas")
async def _quota_event(event: dict[str, Any], **_: Any) -> None:
    _feed("quotas", event)


# ---- children --------------------------------------------------------------------------------

def _child(plural: str, group: str, version: str) -> None:
    @kopf.on.event(group, version, plural, labels={"app.kubernetes.io/managed-by": "agentops-operator"},
                   id=f"cache-{plural}")
    async def handler(event: dict[str, Any], **_: Any) -> None:
        _feed(plural, event)

    listen(plural, _wake_owners)


for _plural, _group, _version in (("jobs", "batch", "v1"), ("deployments", "apps", "v1"),
                                  ("controllerrevisions", "apps", "v1"), ("services", "", "v1"),
                                  ("serviceaccounts", "", "v1")):
    _child(_plural, _group, _version)


def _lease_changed(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    """An external agent's heartbeat Lease changed: the Agent may be Ready again (expiry is a timer)."""
    cur = new or old
    assert cur is not None
    owner = (cur["metadata"].get("labels") or {}).get(AGENT_LABEL)
    if owner:
        runtime.enqueue("agents", cur["metadata"].get("namespace") or "", owner)


listen("leases", _lease_changed)


@kopf.on.event("coordination.k8s.io", "v1", "leases", labels={AGENT_LABEL: kopf.PRESENT}, id="cache-leases")
async def _lease_event(event: dict[str, Any], **_: Any) -> None:
    _feed("leases", event)


def _config_map_changed(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    cur = new or old
    assert cur is not None
    meta = cur["metadata"]
    ns, name = meta.get("namespace") or "", meta["name"]
    labels = {**((old or {}).get("metadata", {}).get("labels") or {}), **(meta.get("labels") or {})}
    if labels.get("app.kubernetes.io/managed-by") == "agentops-operator":
        _wake_owners(old, new, own)
    kind = labels.get(CONFIG_LABEL)
    cfg = settings_mod.current
    if kind == "environment":
        for agent_name in agent.agents_in(ns):
            runtime.enqueue("agents", ns, agent_name)
    elif kind == "global" and name == cfg.global_config_map and ns == cfg.operator_namespace:
        for agent_obj in store.list("agents"):
            runtime.enqueue("agents", agent_obj["metadata"]["namespace"], agent_obj["metadata"]["name"])
    if labels.get(task.POLICY_LABEL) == "true":
        runtime.enqueue(task.WAKE_PENDING_MOVES, ns, "")
        runtime.enqueue(monitor.WAKE_TASKS, ns, "")  # stale thresholds may have changed


def _config_maps(label: str, value: Any) -> None:
    @kopf.on.event("", "v1", "configmaps", labels={label: value}, id=f"cache-configmaps-{label}")
    async def handler(event: dict[str, Any], **_: Any) -> None:
        _feed("configmaps", event)


for _label, _value in (("app.kubernetes.io/managed-by", "agentops-operator"), (CONFIG_LABEL, kopf.PRESENT),
                       (task.POLICY_LABEL, kopf.PRESENT)):
    _config_maps(_label, _value)
listen("configmaps", _config_map_changed)
metrics.install()  # state gauges read the cache at scrape time; histograms listen to changes
