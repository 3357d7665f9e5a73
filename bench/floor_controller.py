"""The least any operator must do per move, as a reference for the burst figure of bench_scale.py.

Watches one namespace's AgentTasks and, for every task whose spec.requestedPhase differs from its
status.phase, PATCHes status.phase (4 threads, the kubernetes client, as the operator uses it). No
planning, no admission of the move, no Events, no history, no conditions: whatever rate this records
is a ceiling for a Python operator on the same API server and machine.

Usage: python bench/floor_controller.py <namespace>   (runs until killed)
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config, watch

GROUP, VERSION = "agentops.dev", "v1alpha1"


def main(ns: str) -> None:
    config.load_kube_config()
    api = client.CustomObjectsApi()
    pool = ThreadPoolExecutor(4)

    def record(obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "agenttasks", meta["name"],
            {"metadata": {"resourceVersion": meta["resourceVersion"]},
             "status": {"phase": obj["spec"]["requestedPhase"]}})

    rv = api.list_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", limit=1)["metadata"]["resourceVersion"]
    while True:
        for ev in watch.Watch().stream(api.list_namespaced_custom_object, GROUP, VERSION, ns, "agenttasks",
                                       resource_version=rv, timeout_seconds=300):
            obj = ev["object"]
            rv = obj["metadata"]["resourceVersion"]
            want = (obj.get("spec") or {}).get("requestedPhase")
            if ev["type"] == "MODIFIED" and want and want != (obj.get("status") or {}).get("phase"):
                pool.submit(record, obj)


if __name__ == "__main__":
    main(sys.argv[1])
