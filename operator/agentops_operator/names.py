"""Deterministic names and labels of the objects the operator creates (shared by all kinds), and the
label and annotation keys it reads. Pure: no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

MANAGED_BY = {"app.kubernetes.io/managed-by": "agentops-operator"}
OPERATOR_USER = "system:agentops-operator"
AGENT_SA_PREFIX = "agent-"


def short_hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def agent_service_account(agent: str) -> str:
    """ServiceAccount an Agent's pods run as; the admission policy recognises agents by this prefix."""
    return f"{AGENT_SA_PREFIX}{agent}"


def agent_sa_username(namespace: str, agent: str) -> str:
    return f"system:serviceaccount:{namespace}:{agent_service_account(agent)}"


def gate_job_name(task: str, transition: str, gate: str, round_: int, attempt: int) -> str:
    """One Job per gate attempt; stable across operator restarts, within the 63-char label limit."""
    return f"{task[:36].rstrip('-')}-g{short_hash(transition, gate, str(round_))}-{attempt}"


def owner_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The controller ownerReference every child carries, so garbage collection follows the owner."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj.get("apiVersion", "agentops.dev/v1alpha1"),
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


# ---- Agent children ----------------------------------------------------------------------------

LABEL_AGENT = "agentops.dev/agent"
LABEL_REVISION = "agentops.dev/revision"
# The revision a pod runs, in its environment (set per Deployment, outside the hashed template).
REVISION_ENV = "AGENTOPS_AGENT_REVISION"
LABEL_DEPLOYMENT = "agentops.dev/deployment"
LABEL_ROLE = "agentops.dev/role"
LABEL_ANALYSIS_RUN = "agentops.dev/analysis-run"
LABEL_METRIC = "agentops.dev/metric"
CAPABILITY_LABEL_PREFIX = "capability.agentops.dev/"
ENV_CONFIG_LABEL = "agentops.dev/config"
ENV_CONFIG_VALUE = "environment"
APPLIED_HASH = "agentops.dev/applied-hash"
CLUSTER_DOMAIN = "cluster.local"


def deployment_name(agent: str, revision: str, role: str) -> str:
    """``a`` for the rolling strategy's one in-place Deployment (role ``rolling``), else ``a-<revision>``."""
    return agent if role == "rolling" else f"{agent}-{revision}"


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
    return f"{agent}-a{short_hash(run_id, metric, length=8)}-{index}"


def pod_selector(agent: str) -> str:
    return f"{LABEL_AGENT}={agent}"


def child_labels(agent: str) -> dict[str, str]:
    """Labels every child of Agent ``agent`` carries."""
    return {**MANAGED_BY, LABEL_AGENT: agent}
