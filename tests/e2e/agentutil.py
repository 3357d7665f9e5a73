"""Helpers for the Agent rollout e2e tests: manifests, fast polling, CLI, timing records."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client, config

from .kubeutil import ROOT, apply, kubectl, wait_for

IMAGE = "registry.example/agents/coder"
FAIL = {"agentops.dev/kwok-fail": "true"}
NOT_READY = {"agentops.dev/kwok-not-ready": "true"}
TIMINGS = ROOT / ".cluster" / "agent-rollback-timings.json"

_api: client.ApiClient | None = None
_lock = threading.Lock()


def api() -> client.ApiClient:
    """A direct client: polling through kubectl costs ~100 ms a call, too coarse for timings."""
    global _api
    with _lock:
        if _api is None:
            config.load_kube_config()
            _api = client.ApiClient()
        return _api


def apps() -> client.AppsV1Api:
    return client.AppsV1Api(api())


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api())


def batch() -> client.BatchV1Api:
    return client.BatchV1Api(api())


def job_metric(name: str = "smoke", fail: bool = False, message: str = "", **extra: Any) -> dict[str, Any]:
    ann = dict(FAIL) if fail else {}
    if message:
        ann["agentops.dev/kwok-fail-message"] = message
    return {"name": name, "job": {"image": "busybox:1.36", "command": ["sh", "-c", "exit 0"],
                                  "podAnnotations": ann}, **extra}


def analysis(*metrics: dict[str, Any]) -> dict[str, Any]:
    return {"metrics": list(metrics)}


def create_agent(ns: str, name: str, strategy: dict[str, Any], *, tag: str = "1.0", replicas: int = 2,
                 pod_annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "agentops.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"role": "developer", "image": f"{IMAGE}:{tag}", "replicas": replicas, "strategy": strategy,
                 "podAnnotations": pod_annotations or {}, **spec},
    }
    apply(json.dumps(body), ns)
    return wait_agent(ns, name, lambda a: a["status"].get("phase") == "Healthy", what=f"{name} first Healthy")


def get_agent(ns: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api()).get_namespaced_custom_object("agentops.dev", "v1alpha1", ns, "agents", name)
    obj.setdefault("status", {})
    return obj  # type: ignore[no-any-return]


def wait_agent(ns: str, name: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 90,
               what: str = "") -> dict[str, Any]:
    return wait_for(lambda: (a := get_agent(ns, name)) and pred(a) and a, timeout=timeout, interval=0.2,
                    what=what or f"agent {name}")


def patch_spec(ns: str, name: str, patch: dict[str, Any]) -> None:
    kubectl("patch", "agent", name, "-n", ns, "--type=merge", "-p", json.dumps({"spec": patch}))


def deployments(ns: str, name: str) -> dict[str, Any]:
    res = apps().list_namespaced_deployment(ns, label_selector=f"agentops.dev/agent={name}")
    return {d.metadata.name: d for d in res.items}


def replicas_by_revision(ns: str, name: str) -> dict[str, int]:
    return {d.spec.template.metadata.labels["agentops.dev/revision"]: d.spec.replicas
            for d in deployments(ns, name).values()}


def pod_uids(ns: str, name: str, revision: str) -> set[str]:
    pods = core().list_namespaced_pod(ns, label_selector=f"agentops.dev/agent={name},agentops.dev/revision={revision}")
    return {p.metadata.uid for p in pods.items if not p.metadata.deletion_timestamp}


def cli(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "agentops_operator.cli", "-n", ns, *args],
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"agentops {' '.join(args)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc


def event_reasons(ns: str, name: str) -> list[str]:
    evs = core().list_namespaced_event(ns, field_selector=f"involvedObject.name={name},involvedObject.kind=Agent")
    return [e.reason for e in evs.items]


def wait_events(ns: str, name: str, *reasons: str, timeout: float = 15) -> list[str]:
    """Events are written after the status that they describe: wait for them, don't race them."""
    deadline = time.monotonic() + timeout
    seen = event_reasons(ns, name)
    while not set(reasons) <= set(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = event_reasons(ns, name)
    assert set(reasons) <= set(seen), f"missing events {set(reasons) - set(seen)}; seen {sorted(set(seen))}"
    return seen


def condition(agent: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in agent["status"].get("conditions", []) if c["type"] == type_)


def failed_analysis_job(ns: str, name: str) -> bool:
    jobs = batch().list_namespaced_job(ns, label_selector=f"agentops.dev/agent={name}")
    return any(c.type == "Failed" and c.status == "True"
               for j in jobs.items for c in (j.status.conditions or []))


def time_failure_to_rollback(ns: str, name: str, rolled_back: Callable[[], bool], timeout: float = 90) -> float:
    """Seconds from the moment the analysis Job is seen Failed to the moment the rollback is seen.

    Both are polled every 50 ms through the API, so the figure includes up to ~50 ms of polling
    error and measures what a user watching the cluster would see.
    """
    t_fail: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if t_fail is None and failed_analysis_job(ns, name):
            t_fail = time.monotonic()
        if rolled_back():
            now = time.monotonic()
            if t_fail is None:
                # Both changed between two polls: the delay is below our resolution.
                assert failed_analysis_job(ns, name), "rolled back, but no analysis Job failed"
                return 0.0
            return now - t_fail
        time.sleep(0.05)
    raise AssertionError(f"no rollback within {timeout}s (job failed seen: {t_fail is not None})")


def record_timing(key: str, seconds: float) -> None:
    """Keep the measured figures of this run in .cluster/ for the note (and print them)."""
    TIMINGS.parent.mkdir(exist_ok=True)
    with _lock:
        data = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
        data[key] = round(seconds, 3)
        TIMINGS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"\n[timing] {key}: {seconds:.3f}s")


class Switch:
    """A value a test flips while a local server serves it."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.hits = 0


@contextmanager
def serve(path_handlers: dict[str, Callable[[], tuple[int, str, str]]]) -> Any:
    """A small HTTP server on 127.0.0.1 (the operator runs on this host, so it can reach it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fn = path_handlers.get(self.path.split("?")[0])
            code, ctype, body = fn() if fn else (404, "text/plain", "not found")
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def prometheus_binary() -> str | None:
    for candidate in ("/usr/bin/prometheus", "/usr/local/bin/prometheus"):
        if Path(candidate).exists():
            return candidate
    return None


def roll_out_never_ready(ns: str, strategy: dict[str, Any], label: str, **create: Any) -> tuple[dict[str, Any], str]:
    """Create a Healthy Agent, then roll out pods that never become Ready; wait for Degraded and
    record the time it took. Returns (the Degraded agent, the stable revision before the change)."""
    first = create_agent(ns, "coder", strategy, **create)
    old = first["status"]["stableRevision"]
    started = time.monotonic()
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:hang", "podAnnotations": NOT_READY})
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Degraded", timeout=60,
                   what="progress deadline rollback")
    record_timing(f"{label}: pods never Ready, progress deadline 6s -> rolled back after (s)",
                  time.monotonic() - started)
    return a, old


def worker_process(ns: str, agent: str, kubeconfig: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`examples/agent_worker.py` as the agent runs it: only its own kubeconfig (no KUBECONFIG, no
    revision from the test's environment), JSON lines to `log`."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "AGENTOPS_AGENT_REVISION")}
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, str(root / "examples" / "agent_worker.py"), "--agent", agent, "--namespace", ns,
         "--kubeconfig", str(kubeconfig), *args],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"}, cwd=root)


def json_lines(log: Path) -> list[dict]:
    """The JSON records of a worker's log (other lines skipped)."""
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
