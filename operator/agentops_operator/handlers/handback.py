"""Hand an open task back to the queue (I/O around the pure `handback.decide`).

Called from the task reconcile (`handlers.task.reconcile`) with the status under construction;
the decision and the new holder's choice reuse `taskflow.pick_agent` like auto-assignment.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import handback, taskflow
from ..cache import store
from ..runtime import runtime
from ..timeutil import format_time

log = logging.getLogger(__name__)
PLURAL = "agenttasks"


def apply(pend: Any, spec: Any) -> None:
    """Reassign the task in `pend.status` if its holder asked to give it back, is gone, or has had no
    heartbeat past its grace; else, while the grace runs, look again when it ends."""
    from . import task as th  # the task handler imports this module

    st = pend.status
    holder = st.get("assignee")
    phase = st.get("phase") or "Backlog"
    if not holder or phase not in handback.HOLDING_PHASES:
        return
    meta = pend.obj["metadata"]
    ns = meta["namespace"]
    agent = store.get("agents", ns, holder)
    d = handback.decide({**pend.obj, "status": st}, agent, pend.now)
    if d.reason is None:
        if d.wait is not None:
            runtime.schedule(PLURAL, ns, meta["name"], d.wait + 0.5)
        return
    stage = taskflow.stage_for(spec.pipeline, phase)
    role = (stage.role if stage and stage.role else None) or spec.role or ((agent or {}).get("spec") or {}).get("role")
    if agent is None and role is None:
        return  # pinned to an Agent by name (not yet created, or gone) with no role to pick another by
    agents = store.list("agents", ns)
    views = [v for v in th.agent_views(agents, store.list(PLURAL, ns)) if v.name != holder]
    chosen = taskflow.pick_agent(views, role, frozenset(spec.capabilities))
    if chosen is None:
        pend.condition("HandedBack", False, "NoAgentAvailable",
                       f"{d.reason}; no other Ready agent with role {role or '(any)'} can take it yet", "Warning")
        runtime.schedule(PLURAL, ns, meta["name"], th.BACKLOG_POLL_SECONDS)
        return
    outputs = sorted({h["output"] for h in st.get("history") or [] if h.get("output")})[-10:]
    record: dict[str, Any] = {"stage": st.get("stage") or (stage.name if stage else "-"), "fromAgent": holder,
                              "toAgent": chosen.name, "at": format_time(pend.now), "outputs": outputs,
                              "notes": th._clip(d.reason)}
    st["handoffs"] = [*(st.get("handoffs") or []), record][-th.MAX_HANDOFFS:]
    st["assignee"] = chosen.name
    pend.condition("HandedBack", True, "HandedBack", f"{d.reason}; now held by {chosen.name}", "Warning")


def wake_tasks_of(ns: str, agent: str) -> None:
    """Reconcile the open tasks an Agent holds (it was deleted, or its grace ran out)."""
    for t in store.list(PLURAL, ns):
        st = t.get("status") or {}
        if st.get("assignee") == agent and (st.get("phase") or "Backlog") in handback.HOLDING_PHASES:
            runtime.schedule(PLURAL, ns, t["metadata"]["name"], 0)
