"""Agent reconciliation (workloads and rollouts land here)."""

from __future__ import annotations

from typing import Any

from .. import kube
from ..conditions import set_condition
from ..runtime import register


@register("agents")
def reconcile(obj: dict[str, Any]) -> float | None:
    meta, status = obj["metadata"], obj.get("status") or {}
    gen = meta.get("generation")
    conditions = set_condition(
        status.get("conditions"), "Ready", False, "NotDeployed",
        "nothing is deployed yet: workload reconciliation is not implemented", gen,
    )
    new = {"phase": status.get("phase") or "Pending", "observedGeneration": gen, "conditions": conditions}
    if any(status.get(k) != v for k, v in new.items()):
        kube.patch_status("agents", meta["namespace"], meta["name"], new, meta["resourceVersion"])
    return None
