"""Pure builders for everything an Agent owns, and conversions between the CRD and the planner.

No I/O here: manifests are plain dicts the handler applies; conversions turn the pydantic spec and
the status dict into ``rollout`` dataclasses and back.

Objects of Agent ``a`` (all with an ownerReference to the Agent and deterministic names):

* ServiceAccount ``agent-a`` (names.agent_service_account).
* Deployment ``a`` (rolling strategy: one Deployment re-templated per revision) or ``a-<revision>``
  (canary / blue-green: one Deployment per live revision, so promotion never restarts pods).
* ConfigMap ``a-config-<revision>``: the merged config of that revision, immutable, mounted at
  /etc/agentops/config. Per revision, so a canary never changes the config the stable pods read.
* Service ``a`` (serving pods; blue-green: the active revision), ``a-preview`` (blue-green) and
  ``a-canary`` (canary pods, the target of HTTP analysis).
* ControllerRevision ``a-<revision>`` holding the pod template and config of each revision, so
  rollback and undo rebuild the exact pods even after the spec moved on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from . import names, podsecurity
from . import rollout as ro
from .models.agent import AgentSpec, Analysis, Metric, RollingStrategy, Strategy

LABEL_AGENT = "agentops.dev/agent"
LABEL_REVISION = "agentops.dev/revision"
LABEL_DEPLOYMENT = "agentops.dev/deployment"
LABEL_ROLE = "agentops.dev/role"
LABEL_ANALYSIS_RUN = "agentops.dev/analysis-run"
LABEL_METRIC = "agentops.dev/metric"
CAPABILITY_LABEL_PREFIX = "capability.agentops.dev/"
ENV_CONFIG_LABEL = "agentops.dev/config"
ENV_CONFIG_VALUE = "environment"
APPLIED_HASH = "agentops.dev/applied-hash"
COMMAND_PREFIX = "agentops.dev/"
CONFIG_DIR = "/etc/agentops/config"
SERVICE_PORT = 80
CLUSTER_DOMAIN = "cluster.local"

# ---- names -----------------------------------------------------------------------------------


def deployment_name(agent: str, revision: str, role: ro.Role) -> str:
    return agent if role is ro.Role.ROLLING else f"{agent}-{revision}"


def config_map_name(agent: str, revision: str) -> str:
    return f"{agent}-config-{revision}"


def controller_revision_name(agent: str, revision: str) -> str:
    return f"{agent}-{revision}"


def service_name(agent: str, kind: str = "") -> str:
    return f"{agent}-{kind}" if kind else agent


def service_dns(agent: str, namespace: str, kind: str = "") -> str:
    return f"{service_name(agent, kind)}.{namespace}.svc.{CLUSTER_DOMAIN}"


def analysis_job_name(agent: str, run_id: str, metric: str, index: int) -> str:
    """Deterministic per (run, metric, measurement): a restart adopts the Job instead of re-running it."""
    return f"{agent}-a{names.short_hash(run_id, metric, length=8)}-{index}"


def pod_selector(agent: str) -> str:
    return f"{LABEL_AGENT}={agent}"


def base_labels(agent: str) -> dict[str, str]:
    return {**names.MANAGED_BY, LABEL_AGENT: agent}


def agent_labels(spec: AgentSpec, current: Mapping[str, str] | None) -> dict[str, str | None]:
    """Labels to merge-patch onto the Agent for discovery (role, capabilities); None removes stale ones."""
    want: dict[str, str | None] = {LABEL_ROLE: spec.role}
    want.update({f"{CAPABILITY_LABEL_PREFIX}{tag}": "true" for tag in spec.capabilities})
    for key in current or {}:
        if key.startswith(CAPABILITY_LABEL_PREFIX) and key not in want:
            want[key] = None
    return {k: v for k, v in want.items() if (current or {}).get(k) != v}


# ---- config hierarchy ------------------------------------------------------------------------


def instance_config(spec: AgentSpec) -> dict[str, str]:
    """The Agent's own config level: spec.config plus model.* and runtime.* keys."""
    out: dict[str, str] = {}
    if spec.model:
        for key in ("provider", "name", "endpoint"):
            value = getattr(spec.model, key)
            if value:
                out[f"model.{key}"] = value
        out.update({f"model.{k}": v for k, v in spec.model.parameters.items()})
    out.update({f"runtime.{k}": v for k, v in spec.runtime.items()})
    out.update(spec.config)  # explicit config keys win over the structured fields
    return out


def invalid_config_keys(config: Mapping[str, Any]) -> list[str]:
    """ConfigMap keys must match [-._a-zA-Z0-9]+ (and values must be strings)."""
    import re

    bad = [k for k in config if not re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", k)]
    bad += [k for k, v in config.items() if not isinstance(v, str) and k not in bad]
    return sorted(bad)


# ---- pod template and revision ---------------------------------------------------------------

POD_SECURITY_CONTEXT = podsecurity.POD_SECURITY_CONTEXT
CONTAINER_SECURITY_CONTEXT = podsecurity.CONTAINER_SECURITY_CONTEXT


def _probe(p: Any) -> dict[str, Any] | None:
    if p is None:
        return None
    out: dict[str, Any] = {
        "initialDelaySeconds": p.initial_delay_seconds,
        "periodSeconds": p.period_seconds,
        "timeoutSeconds": p.timeout_seconds,
        "failureThreshold": p.failure_threshold,
    }
    if p.http_get:
        out["httpGet"] = {"path": p.http_get.path, "port": p.http_get.port}
    elif p.tcp_socket:
        out["tcpSocket"] = {"port": p.tcp_socket.port}
    elif p.exec:
        out["exec"] = {"command": list(p.exec.command)}
    return out


def revision_template(agent: str, spec: AgentSpec) -> dict[str, Any]:
    """The pod template of the spec, without anything that names a revision (that would be circular).

    This plus the merged config is what the revision hash covers and what a ControllerRevision stores.
    """
    env: list[dict[str, Any]] = [
        {"name": "AGENTOPS_AGENT_NAME", "value": agent},
        {"name": "AGENTOPS_AGENT_ROLE", "value": spec.role},
        {"name": "AGENTOPS_AGENT_VERSION", "value": spec.version},
        {"name": "AGENTOPS_CONFIG_DIR", "value": CONFIG_DIR},
        {"name": "AGENTOPS_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    env += [{"name": e.name, "value": e.value} for e in spec.env]
    env += [
        {"name": s.name, "valueFrom": {"secretKeyRef": {"name": s.secret_name, "key": s.key, "optional": s.optional}}}
        for s in spec.secret_env
    ]
    container: dict[str, Any] = {
        "name": "agent",
        "image": spec.image,
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": env,
        "securityContext": dict(CONTAINER_SECURITY_CONTEXT),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    resources = {k: dict(v) for k, v in (("requests", spec.resources.requests), ("limits", spec.resources.limits))
                 if v}
    if resources:
        container["resources"] = resources
    for key, probe in (("readinessProbe", spec.readiness_probe), ("livenessProbe", spec.liveness_probe)):
        rendered = _probe(probe)
        if rendered:
            container[key] = rendered
    labels = {**spec.pod_labels, **base_labels(agent), LABEL_ROLE: spec.role}
    if spec.version:
        labels["app.kubernetes.io/version"] = spec.version
    return {
        "metadata": {"labels": labels, "annotations": dict(spec.pod_annotations)},
        "spec": {
            "serviceAccountName": names.agent_service_account(agent),
            "automountServiceAccountToken": spec.service_account.automount_token,
            "securityContext": dict(POD_SECURITY_CONTEXT),
            "containers": [container],
            "volumes": [{"name": "config", "configMap": {"name": ""}}],  # name set per revision
        },
    }


def desired_revision(agent: str, spec: AgentSpec, merged_config: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    template = revision_template(agent, spec)
    return ro.revision_hash(template, merged_config), template


def _meta(obj: Mapping[str, Any], name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """Metadata of a child object: in the Agent's namespace, owned by it."""
    return {
        "name": name,
        "namespace": obj["metadata"]["namespace"],
        "labels": dict(labels),
        "ownerReferences": [names.owner_reference({"kind": "Agent", **obj})],
    }


def _int_or_percent(value: str) -> int | str:
    return value if value.endswith("%") else int(value)


def deployment(
    obj: Mapping[str, Any],
    revision: str,
    template: Mapping[str, Any],
    replicas: int,
    role: ro.Role,
    progress_deadline_seconds: int,
    rolling: RollingStrategy | None = None,
) -> dict[str, Any]:
    agent = obj["metadata"]["name"]
    name = deployment_name(agent, revision, role)
    pod = json.loads(json.dumps(template))  # deep copy; the template is shared with the revision
    pod["metadata"]["labels"].update({LABEL_DEPLOYMENT: name, LABEL_REVISION: revision})
    for vol in pod["spec"]["volumes"]:
        if vol["name"] == "config":
            vol["configMap"]["name"] = config_map_name(agent, revision)
    strategy: dict[str, Any] = {"type": "RollingUpdate"}
    if role is ro.Role.ROLLING:
        r = rolling or RollingStrategy()
        surge, unavailable = _int_or_percent(r.max_surge), _int_or_percent(r.max_unavailable)
        if str(surge).rstrip("%") == "0" and str(unavailable).rstrip("%") == "0":
            surge = 1  # both zero is invalid for a Deployment; surge is the safe side
        strategy["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(obj, name, {**base_labels(agent), LABEL_REVISION: revision, LABEL_DEPLOYMENT: name}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {LABEL_DEPLOYMENT: name}},
            "revisionHistoryLimit": 2,  # our history is in ControllerRevisions
            "progressDeadlineSeconds": max(progress_deadline_seconds, 1),
            "strategy": strategy,
            "template": pod,
        },
    }


def config_map(obj: Mapping[str, Any], revision: str, config: Mapping[str, str]) -> dict[str, Any]:
    agent = obj["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(obj, config_map_name(agent, revision), {**base_labels(agent), LABEL_REVISION: revision}),
        "immutable": True,
        "data": dict(config),
    }


def controller_revision(
    obj: Mapping[str, Any], revision: str, number: int, template: Mapping[str, Any], config: Mapping[str, str]
) -> dict[str, Any]:
    agent = obj["metadata"]["name"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": _meta(obj, controller_revision_name(agent, revision),
                          {**base_labels(agent), LABEL_REVISION: revision}),
        "data": {"template": template, "config": dict(config)},
        "revision": number,
    }


def service(obj: Mapping[str, Any], kind: str, revision: str | None, port: int = SERVICE_PORT) -> dict[str, Any]:
    """A Service selecting the agent's pods; with a revision, only that revision's pods."""
    agent = obj["metadata"]["name"]
    selector = {LABEL_AGENT: agent}
    if revision:
        selector[LABEL_REVISION] = revision
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(obj, service_name(agent, kind), base_labels(agent)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def service_account(obj: Mapping[str, Any], spec: AgentSpec) -> dict[str, Any]:
    agent = obj["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            **_meta(obj, names.agent_service_account(agent), base_labels(agent)),
            "annotations": dict(spec.service_account.annotations),
        },
        "automountServiceAccountToken": spec.service_account.automount_token,
    }


def with_applied_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp a hash of the manifest so unchanged objects are not re-applied every reconcile."""
    manifest["metadata"].setdefault("annotations", {})
    manifest["metadata"]["annotations"].pop(APPLIED_HASH, None)
    manifest["metadata"]["annotations"][APPLIED_HASH] = names.short_hash(ro.canonical_json(manifest), length=16)
    return manifest


def needs_apply(desired: Mapping[str, Any], existing: Mapping[str, Any] | None) -> bool:
    if existing is None:
        return True
    want = desired["metadata"]["annotations"][APPLIED_HASH]
    have = ((existing.get("metadata") or {}).get("annotations") or {}).get(APPLIED_HASH)
    if want != have:
        return True
    # Someone scaled our Deployment by hand (kubectl scale deploy): put it back.
    return bool("replicas" in desired.get("spec", {})
                and (existing.get("spec") or {}).get("replicas") != desired["spec"]["replicas"])


# ---- observations ----------------------------------------------------------------------------


def observe_deployment(dep: Mapping[str, Any]) -> ro.DeploymentObservation | None:
    labels = (((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    revision = labels.get(LABEL_REVISION)
    if not revision:
        return None
    st = dep.get("status") or {}
    return ro.DeploymentObservation(
        revision=revision,
        spec_replicas=int((dep.get("spec") or {}).get("replicas", 1)),
        replicas=int(st.get("replicas") or 0),
        updated_replicas=int(st.get("updatedReplicas") or 0),
        ready_replicas=int(st.get("readyReplicas") or 0),
        available_replicas=int(st.get("availableReplicas") or 0),
        generation=int(dep["metadata"].get("generation") or 1),
        observed_generation=int(st.get("observedGeneration") or 0),
    )


def observations(deployments: Sequence[Mapping[str, Any]], agent: str,
                 strategy: ro.StrategyType) -> dict[str, ro.DeploymentObservation]:
    """Observations keyed by revision; where two Deployments run one revision (after a strategy
    switch), the one named as the current strategy names it wins."""
    out: dict[str, ro.DeploymentObservation] = {}
    preferred: set[str] = set()
    for dep in deployments:
        obs = observe_deployment(dep)
        if obs is None:
            continue
        rolling = strategy is ro.StrategyType.ROLLING
        is_preferred = (dep["metadata"]["name"] == agent) == rolling
        if obs.revision in out and (obs.revision in preferred or not is_preferred):
            continue
        out[obs.revision] = obs
        if is_preferred:
            preferred.add(obs.revision)
    return out


# ---- strategy --------------------------------------------------------------------------------


def metric_spec(m: Metric) -> ro.MetricSpec:
    return ro.MetricSpec(
        name=m.name, count=m.count, interval_seconds=float(m.interval_seconds), failure_limit=m.failure_limit,
        inconclusive_limit=m.inconclusive_limit, consecutive_error_limit=m.consecutive_error_limit,
        initial_delay_seconds=float(m.initial_delay_seconds),
    )


def analysis_spec(a: Analysis | None) -> ro.AnalysisSpec | None:
    return None if a is None else ro.AnalysisSpec(tuple(metric_spec(m) for m in a.metrics))


def strategy_spec(s: Strategy) -> ro.StrategySpec:
    steps: list[ro.Step] = []
    for step in (s.canary.steps if s.canary else []):
        if step.set_weight is not None:
            steps.append(ro.SetWeightStep(step.set_weight))
        elif step.pause is not None:
            d = step.pause.duration_seconds
            steps.append(ro.PauseStep(None if d is None else float(d)))
        elif step.analysis is not None:
            spec = analysis_spec(step.analysis)
            assert spec is not None
            steps.append(ro.AnalysisStep(spec))
    bg = s.blue_green
    return ro.StrategySpec(
        type=ro.StrategyType(s.type),
        progress_deadline_seconds=float(s.progress_deadline_seconds),
        canary=ro.CanarySpec(tuple(steps)),
        blue_green=ro.BlueGreenSpec(
            auto_promotion_enabled=bg.auto_promotion_enabled,
            auto_promotion_seconds=None if bg.auto_promotion_seconds is None else float(bg.auto_promotion_seconds),
            preview_replica_count=bg.preview_replica_count,
            scale_down_delay_seconds=float(bg.scale_down_delay_seconds),
            pre_promotion_analysis=analysis_spec(bg.pre_promotion_analysis),
            post_promotion_analysis=analysis_spec(bg.post_promotion_analysis),
        ) if bg else ro.BlueGreenSpec(),
        rolling=ro.RollingSpec(analysis_spec(s.rolling.analysis if s.rolling else None)),
    )


def analysis_for_run(s: Strategy, run_id: str) -> Analysis | None:
    """The spec's analysis a run id (``<revision>/<key>/<attempt>``) belongs to."""
    parts = run_id.split("/")
    if len(parts) < 3:
        return None
    key = parts[1]
    if key.startswith("step-") and s.canary:
        idx = int(key.removeprefix("step-"))
        return s.canary.steps[idx].analysis if idx < len(s.canary.steps) else None
    if key == "pre" and s.blue_green:
        return s.blue_green.pre_promotion_analysis
    if key == "post":
        if s.type == "blueGreen" and s.blue_green:
            return s.blue_green.post_promotion_analysis
        if s.type == "rolling" and s.rolling:
            return s.rolling.analysis
    return None


# ---- commands (verbs as annotations) ---------------------------------------------------------


def command_annotation(verb: ro.Verb) -> str:
    return f"{COMMAND_PREFIX}{verb.value}"


def encode_command(nonce: str, *, full: bool = False, to_revision: int | None = None) -> str:
    body: dict[str, Any] = {"id": nonce}
    if full:
        body["full"] = True
    if to_revision is not None:
        body["toRevision"] = to_revision
    return json.dumps(body, separators=(",", ":"))


def parse_command(verb: ro.Verb, raw: str) -> ro.Command:
    """``{"id": ..., "full": true, "toRevision": 3}`` (what the CLI writes) or a bare id."""
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("id"):
            to = body.get("toRevision")
            return ro.Command(verb, str(body["id"]), full=bool(body.get("full")),
                              to_revision=int(to) if isinstance(to, int | str) and str(to).isdigit() else None)
    return ro.Command(verb, raw)


def pending_commands(annotations: Mapping[str, str] | None, acks: Sequence[Mapping[str, Any]]) -> list[ro.Command]:
    """Commands whose id the status has not acknowledged yet."""
    done = {a.get("verb"): a.get("id") for a in acks}
    out = []
    for verb in (ro.Verb.ABORT, ro.Verb.RETRY, ro.Verb.UNDO, ro.Verb.PROMOTE):
        raw = (annotations or {}).get(command_annotation(verb))
        if not raw or not raw.strip():
            continue
        cmd = parse_command(verb, raw)
        if done.get(verb.value) != cmd.nonce:
            out.append(cmd)
    return out


def merge_acks(old: Sequence[Mapping[str, Any]], new: Sequence[ro.CommandAck], now: datetime) -> list[dict[str, Any]]:
    by_verb = {a["verb"]: dict(a) for a in old if a.get("verb")}
    for ack in new:
        by_verb[ack.verb.value] = {"verb": ack.verb.value, "id": ack.nonce, "applied": ack.applied,
                                   "message": ack.message[:1024], "at": ts(now)}
    return [by_verb[v.value] for v in ro.Verb if v.value in by_verb]


# ---- status <-> planner state ----------------------------------------------------------------


def ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _run_from_status(d: Mapping[str, Any] | None) -> ro.AnalysisRunState | None:
    if not d or not d.get("runId") or not d.get("startedAt"):
        return None
    metrics = []
    for m in d.get("metrics") or []:
        metrics.append(ro.MetricState(
            name=m["name"],
            successful=int(m.get("successful", 0)),
            failed=int(m.get("failed", 0)),
            inconclusive=int(m.get("inconclusive", 0)),
            errors=int(m.get("errors", 0)),
            consecutive_errors=int(m.get("consecutiveErrors", 0)),
            last_measured_at=parse_ts(m.get("lastMeasuredAt")),
            measurements=tuple(
                ro.Measurement(ro.MeasurementPhase(x["phase"]), parse_ts(x["at"]) or datetime.now(UTC),
                               x.get("value", ""), x.get("message", ""))
                for x in m.get("measurements") or []
            ),
        ))
    started = parse_ts(d["startedAt"])
    assert started is not None
    return ro.AnalysisRunState(d["runId"], started, tuple(metrics))


def run_to_status(run: ro.AnalysisRunState | None, spec: ro.AnalysisSpec | None, phase: str | None,
                  message: str) -> dict[str, Any] | None:
    if run is None:
        return None
    specs = {m.name: m for m in spec.metrics} if spec else {}
    metrics = []
    for m in sorted(run.metrics, key=lambda x: x.name):
        mspec = specs.get(m.name)
        metrics.append({
            "name": m.name,
            "phase": ro.metric_verdict(mspec, m, run.started_at).phase.value if mspec else None,
            "successful": m.successful, "failed": m.failed, "inconclusive": m.inconclusive, "errors": m.errors,
            "consecutiveErrors": m.consecutive_errors, "lastMeasuredAt": ts(m.last_measured_at),
            "measurements": [{"phase": x.phase.value, "at": ts(x.at), "value": x.value[:1024],
                              "message": x.message[:2048]} for x in m.measurements],
        })
    return {"runId": run.run_id, "startedAt": ts(run.started_at), "phase": phase, "message": message[:4096],
            "metrics": metrics}


def state_from_status(status: Mapping[str, Any]) -> ro.RolloutState:
    r = status.get("rollout") or {}
    last = status.get("lastAnalysis") or {}
    last_phase = last.get("phase")
    return ro.RolloutState(
        stable_revision=status.get("stableRevision"),
        current_revision=r.get("currentRevision"),
        step_index=int(r.get("stepIndex") or 0),
        step_started_at=parse_ts(r.get("stepStartedAt")),
        attempt=int(r.get("attempt") or 0),
        rejected_revision=r.get("rejectedRevision"),
        override_revision=r.get("overrideRevision"),
        reason=r.get("reason"),
        message=r.get("message") or "",
        ready_at=parse_ts(r.get("readyAt")),
        switched_at=parse_ts(r.get("switchedAt")),
        scale_down_revision=r.get("scaleDownRevision"),
        scale_down_at=parse_ts(r.get("scaleDownAt")),
        stalled=bool(r.get("stalled")),
        passed=tuple(r.get("passed") or ()),
        analysis=_run_from_status(status.get("analysis")),
        last_analysis=_run_from_status(last),
        last_analysis_phase=ro.AnalysisPhase(last_phase) if last_phase in set(ro.AnalysisPhase) else None,
        last_analysis_message=last.get("message") or "",
    )


def bookkeeping(state: ro.RolloutState) -> dict[str, Any]:
    """status.rollout with explicit nulls: a merge patch must delete what the planner forgot."""
    return {
        "currentRevision": state.current_revision,
        "stepIndex": state.step_index,
        "stepStartedAt": ts(state.step_started_at),
        "attempt": state.attempt,
        "rejectedRevision": state.rejected_revision,
        "overrideRevision": state.override_revision,
        "reason": state.reason,
        "message": state.message[:4096],
        "readyAt": ts(state.ready_at),
        "switchedAt": ts(state.switched_at),
        "scaleDownRevision": state.scale_down_revision,
        "scaleDownAt": ts(state.scale_down_at),
        "stalled": state.stalled,
        "passed": list(state.passed[-20:]),
    }


# ---- queue-depth autoscaling -----------------------------------------------------------------


def open_tasks_for(agent: str, role: str, tasks: Sequence[Mapping[str, Any]]) -> int:
    """Open tasks assigned to the agent, plus backlog tasks that wait for an agent of its role."""
    active = {"Assigned", "InProgress", "Review", "Rejected"}
    count = 0
    for t in tasks:
        st, spec = t.get("status") or {}, t.get("spec") or {}
        phase = st.get("phase") or "Backlog"
        if st.get("assignee") == agent and phase in active:
            count += 1
        elif phase == "Backlog" and not st.get("assignee"):
            wanted = spec.get("assignee")
            stage_roles = [s.get("role") for s in spec.get("pipeline") or [] if "Assigned" in (s.get("phases") or [])]
            if wanted == agent or (not wanted and (spec.get("role") == role or role in stage_roles)):
                count += 1
    return count
