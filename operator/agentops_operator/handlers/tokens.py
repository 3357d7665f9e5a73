"""Per-agent token use, from what the Quota ledgers record (not from what agents say about themselves).

Agents charge their LLM usage to the `tokens` / `tokens/<model>` Quotas under holders
`Tokens/<agent>/...` (`tokenexport`); the admission policy agentops-quota-status lets only the
ServiceAccount agent-<agent> add such a holder. A watch event of a Quota whose `status.committed`
gained such holders adds their amounts to `agentops_agent_tokens_total` - once per holder in the
namespace, although one charge commits to several Quotas (`tokens` and `tokens/<model>`).

Labels, bounded: namespace x agent x type (input/output/other) x model, where `model` is the model
only when a Quota `tokens/<model>` in the namespace names it (an admin's choice), else `other`; so an
agent cannot mint label values. Commits already in the ledgers when the operator starts (primed
cache) are not counted again: the counter covers charges committed while this process watches.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from prometheus_client import Counter

from .. import settings as settings_mod
from .. import tokenusage as tu
from ..cache import listen, store

TOKENS = Counter(
    "agentops_agent_tokens",
    "LLM tokens charged to token Quotas per Agent (from the Quota ledgers' committed charges)",
    ["namespace", "agent", "type", "model"],
)
REMEMBER = 100_000  # holders counted recently (dedup across the Quotas one charge commits to)

_lock = threading.Lock()
_counted: OrderedDict[tuple[str, str], None] = OrderedDict()


def _committed(obj: dict[str, Any] | None) -> dict[str, int]:
    if not obj:
        return {}
    return {c["holder"]: int(c.get("amount") or 0) for c in (obj.get("status") or {}).get("committed") or []
            if str(c.get("holder", "")).startswith(tu.HOLDER_PREFIX)}


def _model_label(ns: str, model: str) -> str:
    scoped = f"{tu.RESOURCE}/{model}"
    if model and any((q.get("spec") or {}).get("resource") == scoped for q in store.list("quotas", ns)):
        return model
    return "other"


def observe(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool = False) -> int:
    """Count the token charges `new` committed since `old`; returns the tokens counted."""
    added = _committed(new)
    if not added:
        return 0
    before = _committed(old)
    ns = new["metadata"]["namespace"] if new else ""
    total = 0
    for holder, amount in added.items():
        if holder in before or amount <= 0:
            continue
        info = tu.parse_holder(holder)
        if info is None:
            continue
        with _lock:
            if (ns, holder) in _counted:
                continue
            _counted[(ns, holder)] = None
            while len(_counted) > REMEMBER:
                _counted.popitem(last=False)
        # --metrics-agent-label=false: an empty label value, which Prometheus treats as no label.
        agent = info.agent if settings_mod.current.metrics_agent_label else ""
        TOKENS.labels(ns, agent, info.token_type, _model_label(ns, info.model)).inc(amount)
        total += amount
    return total


def _quota_changed(old: dict[str, Any] | None, new: dict[str, Any] | None, own: bool) -> None:
    observe(old, new, own)


listen("quotas", _quota_changed)
