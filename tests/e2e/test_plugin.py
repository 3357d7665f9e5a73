"""`kubectl agentops` through kubectl's plugin mechanism (the `make plugin` link in .cluster/bin)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .kubeutil import ROOT, apply

PLUGIN_DIR = ROOT / ".cluster" / "bin"
PLUGIN = PLUGIN_DIR / "kubectl-agentops"


@pytest.fixture(scope="module")
def plugin_env() -> dict[str, str]:
    if not PLUGIN.exists():
        pytest.fail(f"{PLUGIN} is missing: run `make plugin` (make e2e does)")
    # Only the linked plugin may satisfy `kubectl agentops`: drop the venv's bin from PATH, so a
    # broken link cannot hide behind the console script there.
    venv_bin = Path(sys.executable).parent.resolve()
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != venv_bin]
    return dict(os.environ, PATH=os.pathsep.join([str(PLUGIN_DIR), *rest]))


def kubectl_plugin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
    return proc


def test_kubectl_finds_the_plugin(plugin_env: dict[str, str]) -> None:
    proc = subprocess.run(["kubectl", "plugin", "list"], capture_output=True, text=True, env=plugin_env, timeout=60)
    assert str(PLUGIN) in proc.stdout, proc.stdout + proc.stderr
    out = kubectl_plugin(plugin_env, "agentops", "--help").stdout
    assert out.startswith("usage: kubectl agentops")
    for group in ("task", "quota", "agent", "dashboard"):
        assert group in out


def test_kubectl_agentops_dashboard(plugin_env: dict[str, str], ns: str) -> None:
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: plugin-task, namespace: {ns}}}
spec: {{title: Seen through the plugin}}
---
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: plugin-quota, namespace: {ns}}}
spec: {{resource: publish, limit: 7, window: daily}}
""")
    out = kubectl_plugin(plugin_env, "agentops", "dashboard", "-n", ns).stdout
    for header in ("== Agents (", "== Tasks (", "== Quotas ("):
        assert header in out
    lines = out.splitlines()
    task = next(line for line in lines if ns in line and "plugin-task" in line)
    assert "Seen through the plugin" in task
    quota = next(line for line in lines if ns in line and "plugin-quota" in line)
    assert "publish" in quota and "/7" in quota
