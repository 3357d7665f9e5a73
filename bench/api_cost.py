"""What each request a move needs costs the API server, etcd and the client, one type at a time.

On an idle cluster (no operator running), 200 sequential requests of each type against one AgentTask:
a raw status PATCH (near-empty status), a status PATCH as the operator writes it (conditions,
history), the user's spec PATCH that requests a move (through the admission policies), and an Event
POST. Prints rate and CPU milliseconds per request from /proc/<pid>/stat of kube-apiserver and etcd.
It explains the burst figure of bench_scale.py (README, "Where a move's CPU goes").

Usage: KUBECONFIG=.cluster/kubeconfig PYTHONPATH=operator .venv/bin/python bench/api_cost.py
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import GROUP, VERSION, apiserver_pid, cpu_s, etcd_pid, wait_gone

N = 200
STAMP = "2026-11-22T07:00:00Z"


def main() -> None:
    from agentops_operator.cli.common import current_user

    config.load_kube_config()
    api, core = client.CustomObjectsApi(), client.CoreV1Api()
    apiserver, etcd = apiserver_pid(), etcd_pid()
    assert apiserver and etcd, "kube-apiserver or etcd not found on this machine"
    ns = f"api-cost-{uuid.uuid4().hex[:4]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    me = current_user()
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentTask", "metadata": {"name": "t"},
            "spec": {"title": "t"}})
        history = [{"from": "Backlog", "to": "Assigned", "by": "x", "at": STAMP, "reason": "r"}] * 5
        conditions = [{"type": t, "status": "True", "reason": "R", "message": "m", "lastTransitionTime": STAMP,
                       "observedGeneration": 1} for t in ("Ready", "Blocked", "Stale")]

        def measure(label: str, fn: Callable[[int], object]) -> None:
            a0, e0, c0, t0 = cpu_s(apiserver), cpu_s(etcd), time.process_time(), time.monotonic()
            for i in range(N):
                fn(i)
            dt = time.monotonic() - t0
            print(f"{label:40s} {N / dt:6.1f}/s  apiserver {1000 * (cpu_s(apiserver) - a0) / N:5.2f} ms  "
                  f"etcd {1000 * (cpu_s(etcd) - e0) / N:5.2f} ms  "
                  f"client {1000 * (time.process_time() - c0) / N:5.2f} ms")

        measure("status PATCH (raw, near-empty)", lambda i: api.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "agenttasks", "t", {"status": {"transitions": i}}))
        measure("status PATCH (as the operator writes)", lambda i: api.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "agenttasks", "t", {"status": {
                "phase": "Assigned", "transitions": i, "history": history, "conditions": conditions,
                "assignee": "dev-0", "lastTransitionTime": STAMP}}, field_manager="agentops-operator"))
        measure("spec PATCH requesting a move", lambda i: api.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "agenttasks", "t", {"spec": {"title": f"t{i}", "requestedPhase": "InProgress",
                                                             "by": me}}))

        def event(i: int) -> object:
            return core.api_client.call_api(
                f"/api/v1/namespaces/{ns}/events", "POST", auth_settings=["BearerToken"],
                header_params={"Content-Type": "application/json"}, body={
                    "metadata": {"name": f"t.{i}", "namespace": ns},
                    "involvedObject": {"kind": "AgentTask", "name": "t", "namespace": ns,
                                       "apiVersion": f"{GROUP}/{VERSION}"},
                    "reason": "Transitioned", "message": "a -> b", "type": "Normal", "source": {"component": "x"},
                    "reportingComponent": "x", "reportingInstance": "x", "count": 1, "firstTimestamp": STAMP,
                    "lastTimestamp": STAMP})

        measure("Event POST", event)
    finally:
        core.delete_namespace(ns)
        wait_gone(core, ns)


if __name__ == "__main__":
    main()
