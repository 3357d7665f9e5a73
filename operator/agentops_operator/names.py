"""Deterministic names and labels of the objects the operator creates (shared by all kinds)."""

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
