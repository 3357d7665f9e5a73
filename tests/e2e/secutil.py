"""Helpers for the security e2e tests: users bound to the shipped roles, refusals that name a field."""

from __future__ import annotations

import json
from typing import Any

from .kubeutil import kubectl, wait_for


def bind(ns: str, user: str, *cluster_roles: str) -> None:
    for role in cluster_roles:
        kubectl("create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}", "-n", ns)


def role(ns: str, user: str, name: str, verbs: str, resources: str) -> None:
    """A namespaced Role with one rule, bound to ``user`` (e.g. create jobs, but nothing else)."""
    kubectl("create", "role", name, f"--verb={verbs}", f"--resource={resources}", "-n", ns)
    kubectl("create", "rolebinding", name, f"--role={name}", f"--user={user}", "-n", ns)


def can(ns: str, user: str, verb: str, resource: str) -> bool:
    """RBAC caches settle within a moment; wait until the authorizer agrees with the bindings."""
    return kubectl("auth", "can-i", verb, resource, "-n", ns, as_user=user, check=False).stdout.strip() == "yes"


def settle(ns: str, user: str, verb: str, resource: str) -> None:
    wait_for(lambda: can(ns, user, verb, resource), timeout=20, what=f"{user} can {verb} {resource}")


def create(ns: str, body: dict[str, Any], user: str, groups: tuple[str, ...] = ()) -> tuple[bool, str]:
    proc = kubectl("create", "-n", ns, "-f", "-", input=json.dumps(body), as_user=user, as_groups=groups,
                   check=False)
    return proc.returncode == 0, proc.stderr.strip()


def patch(ns: str, kind: str, name: str, patch_: dict[str, Any], user: str,
          groups: tuple[str, ...] = ()) -> tuple[bool, str]:
    proc = kubectl("patch", kind, name, "-n", ns, "--type=merge", "-p", json.dumps(patch_), as_user=user,
                   as_groups=groups, check=False)
    return proc.returncode == 0, proc.stderr.strip()


def refused(result: tuple[bool, str], *needles: str) -> str:
    ok, err = result
    assert not ok, "the attack was accepted"
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def task_body(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "agentops.dev/v1alpha1", "kind": "AgentTask", "metadata": {"name": name},
            "spec": {"title": name, **spec}}


def agent_body(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "agentops.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name},
            "spec": {"role": "developer", "image": "registry.example/agents/coder:1", **spec}}
