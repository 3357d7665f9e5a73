"""Agent reconciliation: observe the cluster → build PlanInputs → rollout.plan → apply → status.

Everything that decides lives in ``rollout`` (pure) and ``agent_workload`` (pure manifests); this
module only reads and writes the API. Status is merge-patched with the keys this module owns, so
the task handler's activeTasks / tasksCompleted / lastActive are never overwritten.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError

from .. import agent_workload as wl
from .. import analysis as an
from .. import kube, names
from .. import rollout as ro
from .. import settings as settings_mod
from ..cache import listen, store
from ..conditions import set_condition
from ..mergepatch import merge_patch
from ..models.agent import AgentSpec
from ..runtime import register, watched
from . import external

log = logging.getLogger(__name__)
# Analysis outcomes and rollout steps as metrics, so dashboards and alerts need no log scraping.
MEASUREMENTS_TOTAL = Counter("agentops_analysis_measurements_total", "Analysis measurements", ["provider", "phase"])
ROLLOUT_EVENTS_TOTAL = Counter("agentops_rollout_events_total", "Rollout Events emitted, by reason", ["reason"])
PLURAL = "agents"
POLL_SECONDS = 5.0  # look again this often while pods or Jobs are pending (watch events come sooner)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, msg: str, *args: Any) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(msg, *args)


# ---- reading the cache -----------------------------------------------------------------------


def agents_in(ns: str) -> list[str]:
    return [a["metadata"]["name"] for a in store.list(PLURAL, ns)]


# Agents whose replicas follow their open tasks, by namespace: asked at every task move, so kept as an
# index (built from the cache at first use, then updated by the agents' cache listener) instead of a scan
# of every Agent of the namespace per task event.
_queue_scaled: dict[str, set[str]] | None = None
_queue_scaled_lock = threading.Lock()


def _scales_by_queue(agent: dict[str, Any] | None) -> bool:
    return bool(agent and ((agent.get("spec") or {}).get("autoscaling") or {}).get("queue"))


def queue_scaled_agents(ns: str) -> list[str]:
    """Agents whose replicas follow their open tasks (woken when tasks move)."""
    global _queue_scaled
    with _queue_scaled_lock:
        if _queue_scaled is None:
            _queue_scaled = {}
            for a in store.list(PLURAL):
                if _scales_by_queue(a):
                    _queue_scaled.setdefault(a["metadata"].get("namespace") or "", set()).add(a["metadata"]["name"])
        return sorted(_queue_scaled.get(ns, ()))


def _track_queue_scaled(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    """Agents' cache listener: keep the index current (set operations: a change seen twice is harmless)."""
    cur = new or old
    if cur is None:
        return
    ns, name = cur["metadata"].get("namespace") or "", cur["metadata"]["name"]
    with _queue_scaled_lock:
        if _queue_scaled is None:
            return  # built from the cache, which already holds this change, at first use
        names_ = _queue_scaled.setdefault(ns, set())
        if _scales_by_queue(new):
            names_.add(name)
        else:
            names_.discard(name)


listen(PLURAL, _track_queue_scaled)


# ---- config hierarchy ------------------------------------------------------------------------


_global_read: tuple[float, dict[str, str]] | None = None
GLOBAL_CONFIG_TTL = 30.0


def global_config() -> dict[str, str]:
    """The global ConfigMap: from the cache when the operator namespace is watched (a change wakes
    every Agent); otherwise read at most every GLOBAL_CONFIG_TTL seconds."""
    global _global_read
    cfg = settings_mod.current
    if watched(cfg.operator_namespace):
        cm = store.peek("configmaps", cfg.operator_namespace, cfg.global_config_map)
        return dict((cm or {}).get("data") or {})
    if _global_read and time.monotonic() - _global_read[0] < GLOBAL_CONFIG_TTL:
        return _global_read[1]
    try:
        data = dict((kube.read_config_map(cfg.operator_namespace, cfg.global_config_map) or {}).get("data") or {})
    except kube.ApiException as exc:
        if exc.status != 403:
            raise
        _warn_once("global-403", "cannot read global config %s/%s: forbidden", cfg.operator_namespace,
                   cfg.global_config_map)
        data = {}
    _global_read = (time.monotonic(), data)
    return data


def environment_config(ns: str) -> dict[str, str]:
    """ConfigMaps labelled agentops.dev/config=environment in the Agent's namespace, by name order."""
    cms = store.labelled("configmaps", ns, names.ENV_CONFIG_LABEL, names.ENV_CONFIG_VALUE)
    return ro.merge_config(*(dict(cm.get("data") or {}) for cm in sorted(cms, key=lambda c: c["metadata"]["name"])))


# ---- reconcile -------------------------------------------------------------------------------


@register(PLURAL)
def reconcile(obj: dict[str, Any]) -> float | None:
    now = datetime.now(UTC)
    meta = obj["metadata"]
    status = obj.get("status") or {}
    try:
        spec = AgentSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _write_invalid(obj, "InvalidSpec", f"spec.{where}: {first.get('msg')}")

    _sync_agent_labels(obj, spec)
    sa = wl.with_applied_hash(wl.service_account(obj, spec))
    _apply_if_changed(sa, store.peek("serviceaccounts", meta["namespace"], sa["metadata"]["name"]))
    if spec.image is None:  # external agent: no workload, readiness from its heartbeat Lease
        return external.reconcile(obj, spec, now)

    layers = [("global", global_config()), ("environment", environment_config(meta["namespace"])),
              ("instance", wl.instance_config(spec))]
    merged = ro.merge_config(*(layer for _, layer in layers))
    bad = wl.invalid_config_keys(merged)
    if bad:
        return _write_invalid(obj, "InvalidConfig", f"config keys not allowed in a ConfigMap: {', '.join(bad)}")
    desired, template = wl.desired_revision(meta["name"], spec, merged)

    ctx = _Observed.load(obj)
    history = ctx.ensure_revision(desired, template, merged)
    strategy = wl.strategy_spec(spec.strategy)
    total, queue = _total_replicas(obj, spec)
    state = ro.RolloutState.model_validate(status)
    commands = ro.pending_commands(meta.get("annotations"), state.acknowledged_commands, state.system_commands)
    inputs = ro.PlanInputs(
        now=now, strategy=strategy, desired_revision=desired, replicas=total,
        state=state, deployments=wl.observations(ctx.deployments, meta["name"], strategy.type),
        commands=tuple(commands), history=history, poll_seconds=POLL_SECONDS,
    )
    result = ro.step(inputs, apply=lambda p: ctx.apply(p, spec),
                     measure=lambda p: _measure(obj, spec, p, datetime.now(UTC)), clock=lambda: datetime.now(UTC))
    plan = result.plan
    ctx.prune(plan, spec, desired)
    _write_status(obj, plan, ctx, layers, total, queue, now)
    for e in result.events:
        ROLLOUT_EVENTS_TOTAL.labels(e.reason).inc()
        kube.emit_event(obj, e.type, e.reason, e.message)
    return plan.requeue_after


def _apply_if_changed(manifest: dict[str, Any], existing: dict[str, Any] | None) -> None:
    if wl.needs_apply(manifest, existing):
        kube.apply(manifest)


def _sync_agent_labels(obj: dict[str, Any], spec: AgentSpec) -> None:
    """role and capability labels on the Agent, so `kubectl get agents -l capability.agentops.dev/x`."""
    patch = wl.agent_labels(spec, obj["metadata"].get("labels"))
    if patch:
        meta = obj["metadata"]
        kube.patch_labels(PLURAL, meta["namespace"], meta["name"], patch)


def _total_replicas(obj: dict[str, Any], spec: AgentSpec) -> tuple[int, dict[str, int] | None]:
    q = spec.autoscaling.queue if spec.autoscaling else None
    if q is None:
        return spec.replicas, None
    tasks = store.list("agenttasks", obj["metadata"]["namespace"])
    open_tasks = wl.open_tasks_for(obj["metadata"]["name"], spec.role, tasks)
    want = ro.queue_depth_replicas(open_tasks, q.tasks_per_replica, q.min_replicas, max(q.max_replicas, q.min_replicas))
    return want, {"openTasks": open_tasks, "desiredReplicas": want}


class _Observed:
    """The Agent's children as listed at the start of a reconcile, and how to change them."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.ns = obj["metadata"]["namespace"]
        self.name = obj["metadata"]["name"]
        self.uid = obj["metadata"]["uid"]
        self.deployments: list[dict[str, Any]] = []
        self.revisions: dict[str, dict[str, Any]] = {}  # revision hash → ControllerRevision
        self.config_maps: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}

    @classmethod
    def load(cls, obj: dict[str, Any]) -> _Observed:
        o = cls(obj)
        o.deployments = store.owned("deployments", o.uid)
        for cr in store.owned("controllerrevisions", o.uid):
            rev = cr["metadata"]["labels"].get(names.LABEL_REVISION)
            if rev:
                o.revisions[rev] = cr
                data = cr.get("data") or {}
                o.sources[rev] = (data.get("template") or {}, data.get("config") or {})
        for cm in store.owned("configmaps", o.uid):
            o.config_maps[cm["metadata"]["name"]] = cm
        for svc in store.owned("services", o.uid):
            o.services[svc["metadata"]["name"]] = svc
        return o

    # -- revisions ---------------------------------------------------------------------------
    def history(self) -> tuple[ro.RevisionRecord, ...]:
        records = (ro.RevisionRecord(int(cr.get("revision") or 0), rev) for rev, cr in self.revisions.items())
        return tuple(sorted(records, key=lambda r: r.number))

    def ensure_revision(self, desired: str, template: dict[str, Any], config: dict[str, str]) -> tuple[
            ro.RevisionRecord, ...]:
        """A ControllerRevision for the desired revision; an old one coming back is renumbered newest."""
        self.sources[desired] = (template, config)
        record, changed = ro.record_revision(self.history(), desired)
        if changed:
            manifest = wl.controller_revision(self.obj, desired, record.number, template, config)
            name = manifest["metadata"]["name"]
            if desired in self.revisions:
                # Renumbering by patch is refused: the API server compares `data` byte for byte and a
                # patch re-serialises it. The data is the same by construction, so re-create it.
                kube.delete_if_exists("ControllerRevision", self.ns, name)
            try:
                created = kube.create(manifest)
            except kube.ApiException as exc:
                if exc.status != 409:
                    raise
                # Left by an earlier Agent of the same name (garbage collection pending): replace it.
                kube.delete_if_exists("ControllerRevision", self.ns, name)
                created = kube.create(manifest)
            self.revisions[desired] = created
        return self.history()

    # -- apply -------------------------------------------------------------------------------
    def apply(self, plan: ro.Plan, spec: AgentSpec) -> None:
        by_name = {d["metadata"]["name"]: d for d in self.deployments}
        planned: set[str] = set()
        for target in plan.deployments:
            dname = names.deployment_name(self.name, target.revision, target.role)
            existing = by_name.get(dname)
            if existing is None and target.replicas == 0:
                continue  # nothing to keep at zero
            planned.add(dname)
            source = self.sources.get(target.revision)
            if source is None:
                # History pruned under us: we can still scale what exists, not rebuild it.
                if existing and (existing.get("spec") or {}).get("replicas") != target.replicas:
                    kube.scale_deployment(self.ns, dname, target.replicas)
                continue
            template, config = source
            self._ensure_config_map(target.revision, config)
            manifest = wl.with_applied_hash(wl.deployment(
                self.obj, target.revision, template, target.replicas, target.role,
                spec.strategy.progress_deadline_seconds, spec.strategy.rolling))
            if wl.needs_apply(manifest, existing):
                by_name[dname] = kube.apply(manifest)
        self._apply_services(plan)
        # Leftovers (old revisions, a strategy switch) go once everything planned is available.
        settled = all(
            int(((by_name.get(names.deployment_name(self.name, t.revision, t.role)) or {}).get("status") or {})
                .get("availableReplicas") or 0) >= t.replicas
            for t in plan.deployments if t.replicas and t.role is not ro.Role.RETIRED
        )
        for dname, dep in list(by_name.items()):
            if dname in planned:
                continue
            if settled or int((dep.get("spec") or {}).get("replicas") or 0) == 0:
                kube.delete_if_exists("Deployment", self.ns, dname)
                del by_name[dname]
        self.deployments = list(by_name.values())

    def _ensure_config_map(self, revision: str, config: dict[str, str]) -> None:
        name = names.config_map_name(self.name, revision)
        if name in self.config_maps:
            return
        manifest = wl.config_map(self.obj, revision, config)
        kube.create_or_adopt(manifest)
        self.config_maps[name] = manifest

    def _apply_services(self, plan: ro.Plan) -> None:
        wanted = {"": plan.active_revision, "preview": plan.preview_revision, "canary": plan.canary_revision}
        for kind, revision in wanted.items():
            name = names.service_name(self.name, kind)
            if kind and revision is None:
                if name in self.services:
                    kube.delete_if_exists("Service", self.ns, name)
                    del self.services[name]
                continue
            manifest = wl.with_applied_hash(wl.service(self.obj, kind, revision))
            if wl.needs_apply(manifest, self.services.get(name)):
                self.services[name] = kube.apply(manifest)

    # -- prune -------------------------------------------------------------------------------
    def prune(self, plan: ro.Plan, spec: AgentSpec, desired: str) -> None:
        s = plan.state
        running = {o.revision for d in self.deployments if (o := wl.observe_deployment(d))}
        live = running | {d.revision for d in plan.deployments} | {
            r for r in (desired, s.stable_revision, s.rollout.current_revision, s.rollout.rejected_revision,
                        s.rollout.override_revision, s.rollout.scale_down_revision) if r}
        for rev in ro.revisions_to_prune(self.history(), spec.revision_history_limit, live):
            kube.delete_if_exists("ControllerRevision", self.ns, self.revisions[rev]["metadata"]["name"])
            del self.revisions[rev]
        for name, cm in list(self.config_maps.items()):
            cm_rev = (cm["metadata"].get("labels") or {}).get(names.LABEL_REVISION)
            if cm_rev and cm_rev not in running and cm_rev not in {d.revision for d in plan.deployments}:
                kube.delete_if_exists("ConfigMap", self.ns, name)
                del self.config_maps[name]


# ---- analysis measurements -------------------------------------------------------------------


def _measure(obj: dict[str, Any], spec: AgentSpec, plan: ro.Plan, now: datetime) -> ro.AnalysisRunState:
    run = plan.state.analysis
    assert run is not None
    model = wl.analysis_for_run(spec.strategy, run.run_id)
    if model is None:
        return run
    meta = obj["metadata"]
    ctx = an.template_context(meta["name"], meta["namespace"], plan.target_revision or plan.desired_revision)
    for metric_name in plan.measure:
        metric = next((m for m in model.metrics if m.name == metric_name), None)
        if metric is None:
            continue
        m: ro.Measurement | None
        if metric.job:
            m = _job_measurement(obj, metric.job, run, metric_name, ctx, now)
        elif metric.http:
            m = an.measure_http(metric.http, metric, ctx, now)
        elif metric.prometheus:
            m = an.measure_prometheus(metric.prometheus, metric, ctx, now)
        elif metric.tasks:  # read from the watch-fed cache, never a LIST
            m = an.measure_tasks(metric.tasks, metric, meta["name"], plan.state.stable_revision,
                                 plan.target_revision, run.started_at, store.list("agenttasks", meta["namespace"]),
                                 now)
        else:
            m = None
        if m is not None:
            provider = ("job" if metric.job else "http" if metric.http else "tasks" if metric.tasks
                        else "prometheus")
            MEASUREMENTS_TOTAL.labels(provider, m.phase.value).inc()
            log.info("agent %s/%s analysis %s %s: %s %s", meta["namespace"], meta["name"], run.run_id, metric_name,
                     m.phase.value, m.message)
            run = run.with_measurement(metric_name, m)
    return run


def _job_measurement(obj: dict[str, Any], job: Any, run: ro.AnalysisRunState, metric: str, ctx: dict[str, str],
                     now: datetime) -> ro.Measurement | None:
    """Create the measurement's Job, or read its verdict once it finished (None while it runs)."""
    state = run.metric(metric)
    index = state.taken + state.errors + 1
    manifest = an.analysis_job(obj, job, run.run_id, metric, index, ctx)
    name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    existing = store.peek("jobs", ns, name)
    if existing is None:
        try:
            existing, created = kube.create_or_adopt(manifest)
        except kube.ApiException as exc:
            return ro.Measurement(ro.MeasurementPhase.ERROR, now, "", f"creating job {name}: {exc.reason}")
        if created or existing is None:
            return None
    return an.job_measurement(existing, now, kube.job_failure_detail(ns, name, limit=300))


# ---- status ----------------------------------------------------------------------------------


def _write_status(obj: dict[str, Any], plan: ro.Plan, ctx: _Observed, layers: list[tuple[str, dict[str, str]]],
                  total: int, queue: dict[str, int] | None, now: datetime) -> None:
    meta = obj["metadata"]
    old = obj.get("status") or {}
    gen = meta.get("generation")
    obs = {o.revision: o for d in ctx.deployments if (o := wl.observe_deployment(d))}
    serving = {t.revision for t in plan.deployments if t.role in (ro.Role.STABLE, ro.Role.CANARY, ro.Role.ROLLING)}
    s = plan.state
    conditions = old.get("conditions") or []
    for c in plan.conditions:
        conditions = set_condition(conditions, c.type, c.status, c.reason, c.message[:2048], gen, now)
    new: dict[str, Any] = {
        "phase": plan.phase.value,
        "reason": plan.reason,
        "message": plan.message[:4096],
        "observedGeneration": gen,
        "replicas": sum(o.replicas for o in obs.values()),
        "desiredReplicas": total,
        "readyReplicas": sum(o.ready_replicas for r, o in obs.items() if r in serving),
        "availableReplicas": sum(o.available_replicas for r, o in obs.items() if r in serving),
        "updatedReplicas": obs[plan.desired_revision].available_replicas if plan.desired_revision in obs else 0,
        "selector": names.pod_selector(meta["name"]),
        "endpoint": names.service_dns(meta["name"], meta["namespace"]),
        "desiredRevision": plan.desired_revision,
        "currentRevision": plan.target_revision,
        "currentStep": plan.current_step or None,
        "currentStepIndex": plan.step_index,
        "stepCount": plan.step_count or None,
        "canaryWeight": plan.canary_weight,
        "activeRevision": plan.active_revision,
        "previewRevision": plan.preview_revision,
        **s.status(),  # stableRevision, rollout, analysis, lastAnalysis, acknowledgedCommands, systemCommands
        "configSources": ro.config_provenance(layers),
        "queue": queue,
        "conditions": conditions,
    }
    changed = merge_patch(old, new)
    if changed:  # an unchanged plan writes nothing (no watch-event loop, nothing while idle)
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], changed)


def _write_invalid(obj: dict[str, Any], reason: str, message: str) -> float | None:
    """Leave the running pods alone and say why nothing new is rolled out."""
    meta, old = obj["metadata"], obj.get("status") or {}
    gen = meta.get("generation")
    conditions = set_condition(old.get("conditions"), "Progressing", False, reason, message, gen)
    conditions = set_condition(conditions, "Healthy", False, reason, message, gen)
    if not any(c.get("type") == "Ready" for c in conditions):
        conditions = set_condition(conditions, "Ready", False, reason, message, gen)
    new = {"phase": "Degraded", "reason": reason, "message": message, "observedGeneration": gen,
           "conditions": conditions, "selector": names.pod_selector(meta["name"])}
    changed = merge_patch(old, new)
    if changed:
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], changed)
        kube.emit_event(obj, "Warning", reason, message)
    return None
