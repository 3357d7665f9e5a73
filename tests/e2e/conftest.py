"""One shared cluster and one operator per test session; a namespace per test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .kubeutil import ROOT, OperatorProcess, free_port, kubectl

pytestmark = pytest.mark.e2e
# Namespaces of this session share a prefix, and the session's operator watches only those, so
# two test sessions (or a developer's and CI's) can share one cluster without racing.
SESSION = uuid.uuid4().hex[:4]
NS_PREFIX = f"t{SESSION}-"
OPERATOR_NS = f"{NS_PREFIX}system"
ANALYSIS_ALLOW_LOOPBACK = ("--analysis-allow-host", "127.0.0.1", "--analysis-allow-network", "127.0.0.1/32")


@pytest.fixture(scope="session", autouse=True)
def cluster() -> None:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail("KUBECONFIG is not set: run the e2e tests through `make e2e` (or export KUBECONFIG)")
    proc = kubectl("get", "--raw", "/readyz", check=False)
    if proc.returncode != 0:
        pytest.fail(f"no reachable API server at KUBECONFIG={os.environ['KUBECONFIG']}: {proc.stderr}")
    # A cluster-wide demo operator would race the test operator for the same objects.
    subprocess.run([str(ROOT / "hack" / "operator-bg.sh"), "stop"], check=False, capture_output=True)


@pytest.fixture(scope="session")
def kwok_present() -> bool:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return any((n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake" for n in nodes)


@pytest.fixture(autouse=True)
def _needs_kwok(request: pytest.FixtureRequest) -> None:
    # Fake images, failure/not-ready/delay annotations: only kwok's stages give them meaning.
    if request.node.get_closest_marker("kwok") and not request.getfixturevalue("kwok_present"):
        pytest.skip("needs kwok's fake kubelet and hack/kwok stages (make cluster-up); this cluster has none")


@pytest.fixture(scope="session")
def operator() -> Iterator[OperatorProcess]:
    log_dir = ROOT / ".cluster"
    log_dir.mkdir(exist_ok=True)
    log_path = log_dir / "operator-e2e.log"
    log_path.write_bytes(b"")
    # The session's "operator namespace" (global config) is inside the watched prefix too.
    # The analysis tests' HTTP server and Prometheus listen on this host's loopback, which the
    # operator refuses by default (SSRF): allow exactly that, explicitly. The API server (also on
    # loopback here) stays refused.
    # The Alertmanager webhook receiver (tests/e2e/test_alerts.py): its own port and bearer token file.
    alert_token = log_dir / f"alert-token-{SESSION}"
    alert_token.write_text(uuid.uuid4().hex)
    op = OperatorProcess(log_path, extra_args=(
        "--namespace", f"{NS_PREFIX}*", "--operator-namespace", OPERATOR_NS,
        *ANALYSIS_ALLOW_LOOPBACK, "--alert-receiver-port", str(free_port()),
        "--alert-receiver-token-file", str(alert_token)))
    op.start()
    yield op
    op.stop()


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{NS_PREFIX}{base}-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "agentops.dev/test=true",
            "pod-security.kubernetes.io/enforce=restricted")
    # Pods need the default ServiceAccount, which the controller-manager creates asynchronously.
    for _ in range(100):
        if kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0:
            break
        time.sleep(0.2)
    yield name
    if os.environ.get("KEEP_NAMESPACES") != "1":
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def team(ns: str) -> str:
    """alice edits, bob may approve, mallory edits but may not approve; one agent, dev-1."""
    from .taskutil import make_team

    return make_team(ns)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
