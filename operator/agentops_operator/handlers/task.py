"""AgentTask reconciliation."""

from __future__ import annotations

from typing import Any

from .. import kube
from ..conditions import set_condition
from ..lifecycle import Phase
from ..runtime import register


@register("agenttasks")
def reconcile(obj: dict[str, Any]) -> float | None:
    meta, status = obj["metadata"], obj.get("status") or {}
    gen = meta.get("generation")
    phase = status.get("phase") or Phase.BACKLOG.value
    conditions = set_condition(status.get("conditions"), "Accepted", True, "Valid", "task accepted", gen)
    new = {"phase": phase, "observedGeneration": gen, "conditions": conditions}
    if any(status.get(k) != v for k, v in new.items()):
        kube.patch_status("agenttasks", meta["namespace"], meta["name"], new, meta["resourceVersion"])
    return None
