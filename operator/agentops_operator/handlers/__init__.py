"""kopf wiring: watch events and start-up hooks feed the level-triggered runtime.

Each resource has its own module (agent, task, quota) that registers a reconcile function.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from .. import GROUP, VERSION
from .. import settings as settings_mod
from ..runtime import RECONCILERS, runtime
from . import agent, handback, quota, task  # noqa: F401  (registration side effects)

log = logging.getLogger(__name__)
_background: list[asyncio.Task[None]] = []


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Events are written by kube.emit_event; kopf's own per-handler events are noise.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = [1, 2, 5, 10]
    cfg = settings_mod.current
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port)
    _background.append(asyncio.create_task(runtime.run_scheduler()))
    _background.append(asyncio.create_task(runtime.run_resync()))
    log.info("agentops operator started; reconcilers: %s", ", ".join(sorted(RECONCILERS)))


@kopf.on.cleanup()
async def _cleanup(**_: Any) -> None:
    for t in _background:
        t.cancel()


def _on_event(plural: str) -> None:
    @kopf.on.event(GROUP, VERSION, plural, id=f"watch-{plural}")
    async def handler(type: str | None, name: str, namespace: str, **_: Any) -> None:
        if type == "DELETED":
            runtime.forget(plural, namespace, name)
            if plural == "agents":  # its open tasks go back to the queue
                await asyncio.to_thread(handback.wake_tasks_of, namespace, name)
            return
        await asyncio.to_thread(runtime.reconcile, plural, namespace, name)


for _plural in ("agents", "agenttasks", "quotas"):
    _on_event(_plural)


@kopf.on.event("batch", "v1", "jobs", labels={"agentops.dev/task-uid": kopf.PRESENT}, id="watch-gate-jobs")
async def _gate_job_event(body: kopf.Body, namespace: str, **_: Any) -> None:
    """A gate Job changed: wake its task instead of waiting for the next poll."""
    for ref in body.metadata.get("ownerReferences") or []:
        if ref.get("kind") == "AgentTask":
            runtime.schedule("agenttasks", namespace, ref["name"], 0)


def _wake_owner_agent(body: kopf.Body, namespace: str) -> None:
    for ref in body.metadata.get("ownerReferences") or []:
        if ref.get("kind") == "Agent":
            runtime.schedule("agents", namespace, ref["name"], 0)


@kopf.on.event("apps", "v1", "deployments", labels={"agentops.dev/agent": kopf.PRESENT},
               id="watch-agent-deployments")
async def _agent_deployment_event(body: kopf.Body, namespace: str, **_: Any) -> None:
    """Pods of an Agent revision became ready (or not): wake the Agent's rollout."""
    _wake_owner_agent(body, namespace)


@kopf.on.event("batch", "v1", "jobs", labels={"agentops.dev/analysis-run": kopf.PRESENT},
               id="watch-analysis-jobs")
async def _analysis_job_event(body: kopf.Body, namespace: str, **_: Any) -> None:
    """An analysis Job finished: record the measurement now, not at the next poll."""
    _wake_owner_agent(body, namespace)


@kopf.on.event("coordination.k8s.io", "v1", "leases", labels={"agentops.dev/agent": kopf.PRESENT},
               id="watch-agent-heartbeats")
async def _heartbeat_event(body: kopf.Body, namespace: str, **_: Any) -> None:
    """An external agent's heartbeat Lease changed: the Agent may be Ready again (expiry is a timer)."""
    owner = (body.metadata.get("labels") or {}).get("agentops.dev/agent")
    if owner:
        runtime.schedule("agents", namespace, owner, 0)


@kopf.index(GROUP, VERSION, "agents")  # handlers receive it as `agents_by_namespace`
def agents_by_namespace(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[str, tuple[str, bool]]:
    """Agents per namespace, kept in memory from the watch, so that events of other kinds (tasks,
    ConfigMaps) find the Agents to wake without an API call each: (name, queue-autoscaled)."""
    return {namespace: (name, bool((spec.get("autoscaling") or {}).get("queue")))}


@kopf.on.event("v1", "configmaps", labels={"agentops.dev/config": "environment"}, id="watch-environment-config")
async def _environment_config_event(namespace: str, agents_by_namespace: kopf.Index, **_: Any) -> None:
    """Environment-level config changed: every Agent of the namespace may get a new revision."""
    for agent_name, _queue in agents_by_namespace.get(namespace, []):
        runtime.schedule("agents", namespace, agent_name, 0)


@kopf.on.event("v1", "configmaps", labels={"agentops.dev/config": "global"}, id="watch-global-config")
async def _global_config_event(name: str, namespace: str, agents_by_namespace: kopf.Index, **_: Any) -> None:
    """Global config changed: every Agent the operator watches may get a new revision."""
    cfg = settings_mod.current
    if name != cfg.global_config_map or namespace != cfg.operator_namespace:
        return
    for ns, store in agents_by_namespace.items():
        for agent_name, _queue in store:
            runtime.schedule("agents", ns, agent_name, 0)


@kopf.on.event(GROUP, VERSION, "agenttasks", id="wake-queue-scaled-agents")
async def _queue_event(namespace: str, agents_by_namespace: kopf.Index, **_: Any) -> None:
    """Open tasks changed: Agents with queue-depth autoscaling recompute their replicas."""
    for agent_name, queue in agents_by_namespace.get(namespace, []):
        if queue:
            runtime.schedule("agents", namespace, agent_name, 0)
