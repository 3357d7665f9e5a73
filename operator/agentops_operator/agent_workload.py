"""Pure builders for everything an Agent owns, and the Agent spec as the planner sees it.

No I/O here: manifests are plain dicts the handler applies; ``strategy_spec`` turns the pydantic
strategy into ``rollout`` dataclasses; ``observations`` reads Deployments for the planner. Names
and labels are in ``names``, the command codec in ``rollout.commands``, and the rollout state needs
no conversion: ``rollout.RolloutState`` is the status schema.

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
import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import names, podsecurity
from . import rollout as ro
from .lifecycle import Phase as TaskPhase
from .models.agent import AgentSpec, Analysis, Metric, RollingStrategy, Strategy
from .taskflow import ACTIVE_PHASES

CONFIG_DIR = "/etc/agentops/config"
SERVICE_PORT = 80


def agent_labels(spec: AgentSpec, current: Mapping[str, str] | None) -> dict[str, str | None]:
    """Labels to merge-patch onto the Agent for discovery (role, capabilities); None removes stale ones."""
    want: dict[str, str | None] = {names.LABEL_ROLE: spec.role}
    want.update({f"{names.CAPABILITY_LABEL_PREFIX}{tag}": "true" for tag in spec.capabilities})
    for key in current or {}:
        if key.startswith(names.CAPABILITY_LABEL_PREFIX) and key not in want:
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
    labels = {**spec.pod_labels, **names.child_labels(agent), names.LABEL_ROLE: spec.role}
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
    name = names.deployment_name(agent, revision, role)
    pod = json.loads(json.dumps(template))  # deep copy; the template is shared with the revision
    pod["metadata"]["labels"].update({names.LABEL_DEPLOYMENT: name, names.LABEL_REVISION: revision})
    for vol in pod["spec"]["volumes"]:
        if vol["name"] == "config":
            vol["configMap"]["name"] = names.config_map_name(agent, revision)
    for container in pod["spec"]["containers"]:
        # The worker library stamps the tasks it works on with it (taskoutcomes, the `tasks` analysis).
        env = [e for e in container.get("env") or [] if e.get("name") != names.REVISION_ENV]
        container["env"] = [*env, {"name": names.REVISION_ENV, "value": revision}]
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
        "metadata": _meta(obj, name, {**names.child_labels(agent), names.LABEL_REVISION: revision,
                                      names.LABEL_DEPLOYMENT: name}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {names.LABEL_DEPLOYMENT: name}},
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
        "metadata": _meta(obj, names.config_map_name(agent, revision),
                          {**names.child_labels(agent), names.LABEL_REVISION: revision}),
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
        "metadata": _meta(obj, names.controller_revision_name(agent, revision),
                          {**names.child_labels(agent), names.LABEL_REVISION: revision}),
        "data": {"template": template, "config": dict(config)},
        "revision": number,
    }


def service(obj: Mapping[str, Any], kind: str, revision: str | None, port: int = SERVICE_PORT) -> dict[str, Any]:
    """A Service selecting the agent's pods; with a revision, only that revision's pods."""
    agent = obj["metadata"]["name"]
    selector = {names.LABEL_AGENT: agent}
    if revision:
        selector[names.LABEL_REVISION] = revision
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(obj, names.service_name(agent, kind), names.child_labels(agent)),
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
            **_meta(obj, names.agent_service_account(agent), names.child_labels(agent)),
            "annotations": dict(spec.service_account.annotations),
        },
        "automountServiceAccountToken": spec.service_account.automount_token,
    }


def with_applied_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp a hash of the manifest so unchanged objects are not re-applied every reconcile."""
    manifest["metadata"].setdefault("annotations", {})
    manifest["metadata"]["annotations"].pop(names.APPLIED_HASH, None)
    manifest["metadata"]["annotations"][names.APPLIED_HASH] = names.short_hash(ro.canonical_json(manifest), length=16)
    return manifest


def needs_apply(desired: Mapping[str, Any], existing: Mapping[str, Any] | None) -> bool:
    if existing is None:
        return True
    want = desired["metadata"]["annotations"][names.APPLIED_HASH]
    have = ((existing.get("metadata") or {}).get("annotations") or {}).get(names.APPLIED_HASH)
    if want != have:
        return True
    # Someone scaled our Deployment by hand (kubectl scale deploy): put it back.
    return bool("replicas" in desired.get("spec", {})
                and (existing.get("spec") or {}).get("replicas") != desired["spec"]["replicas"])


# ---- observations ----------------------------------------------------------------------------


def observe_deployment(dep: Mapping[str, Any]) -> ro.DeploymentObservation | None:
    labels = (((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    revision = labels.get(names.LABEL_REVISION)
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


# ---- queue-depth autoscaling -----------------------------------------------------------------


def open_tasks_for(agent: str, role: str, tasks: Sequence[Mapping[str, Any]]) -> int:
    """Open tasks assigned to the agent, plus backlog tasks that wait for an agent of its role."""
    active = {p.value for p in ACTIVE_PHASES}
    count = 0
    for t in tasks:
        st, spec = t.get("status") or {}, t.get("spec") or {}
        phase = st.get("phase") or TaskPhase.BACKLOG.value
        if st.get("assignee") == agent and phase in active:
            count += 1
        elif phase == TaskPhase.BACKLOG.value and not st.get("assignee"):
            wanted = spec.get("assignee")
            stage_roles = [s.get("role") for s in spec.get("pipeline") or []
                           if TaskPhase.ASSIGNED.value in (s.get("phases") or [])]
            if wanted == agent or (not wanted and (spec.get("role") == role or role in stage_roles)):
                count += 1
    return count
