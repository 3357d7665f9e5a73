"""Helpers for AgentTask e2e tests: the CLI as a user runs it, waiting on phases and conditions."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .kubeutil import ROOT, apply, kget, kubectl, wait_for

EDITOR, APPROVER, OUTSIDER = "alice", "bob", "mallory"


def cli(ns: str, *args: str, as_user: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "agentops_operator.cli", "-n", ns]
    if as_user:
        cmd += ["--as", as_user]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} as {as_user}: {proc.stderr}")
    return proc


def make_team(ns: str) -> str:
    """alice edits and may run workloads (built-in edit: Jobs, Deployments, Secrets), bob may approve,
    mallory edits tasks but may run nothing and may not approve; one agent, dev-1."""
    for user, role in ((EDITOR, "agentops-editor"), (EDITOR, "edit"), (APPROVER, "agentops-approver"),
                       (OUTSIDER, "agentops-editor")):
        kubectl("create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}", "-n", ns)
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: dev-1, namespace: {ns}}}
spec: {{role: developer, image: registry.example/dev:1, maxConcurrentTasks: 5}}
""")
    return ns


def task(ns: str, name: str, extra: str = "") -> None:
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: {name}, namespace: {ns}}}
spec:
  title: {name}
  assignee: dev-1
{extra}
""", as_user=EDITOR)


def phase_is(ns: str, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: (t := kget("agenttask", name, ns)).get("status", {}).get("phase") == phase and t,
                    timeout=timeout, what=f"{name} to reach {phase}")


def blocked(ns: str, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        t = kget("agenttask", name, ns)
        for c in t.get("status", {}).get("conditions", []):
            if c["type"] == "TransitionBlocked" and c["status"] == "True" and c["reason"] == reason:
                return c
        return None

    return wait_for(check, timeout=timeout, what=f"{name} blocked with {reason}")


def events(ns: str, name: str) -> list[dict[str, Any]]:
    out = kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json")
    return json.loads(out.stdout)["items"]
