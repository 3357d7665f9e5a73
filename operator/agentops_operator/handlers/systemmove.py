"""Moves the operator makes itself: an alert that rolls a task back, an Agent that rolled back the
revision a task deployed. The operator never writes spec, so the request is status
(`status.systemRequest`); the task reconcile carries it out like a user's move (legality, gates of the
transition, quota costs), records it in history with its `key`, and clears it.

One move per key: a key already in history, or already pending, is a duplicate and writes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from .. import kube
from ..cache import store
from ..lifecycle import Phase, is_legal
from ..models.task import SystemRequest
from ..runtime import runtime

log = logging.getLogger(__name__)
PLURAL = "agenttasks"
REQUESTED = "requested"
DUPLICATE = "duplicate"
_ATTEMPTS = 4


def _judge(obj: dict[str, Any] | None, phase: Phase, key: str) -> str | None:
    """None when the move can be requested; else what to answer."""
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return "refused: task not found"
    st = obj.get("status") or {}
    if any(h.get("key") == key for h in st.get("history") or []):
        return DUPLICATE
    pending = st.get("systemRequest") or {}
    if pending.get("key") == key:
        return DUPLICATE
    if pending:
        return f"refused: another system move is pending (key {pending.get('key')})"
    recorded = Phase(st.get("phase") or Phase.BACKLOG.value)
    if not is_legal(recorded, phase):
        return f"refused: cannot move from {recorded.value} to {phase.value}"
    return None


def request_system_move(ns: str, name: str, phase: str, *, by: str, reason: str, key: str) -> str:
    """Ask the operator to move task ns/name to `phase` itself. Returns "requested", "duplicate" or
    "refused: <why>". Safe to call again with the same key (idempotent), from any thread."""
    target = Phase(phase)
    request = SystemRequest(phase=target, by=by, reason=reason[:4096], key=key[:256],
                            requested_at=datetime.now(UTC))
    obj = store.get(PLURAL, ns, name)
    fresh = obj is None
    if fresh:
        obj = kube.get_custom(PLURAL, ns, name)
    for _ in range(_ATTEMPTS):
        answer = _judge(obj, target, request.key)
        if answer is not None and not fresh:
            # The cache may be behind (a move just recorded, a request just carried out): say no
            # only on what the API server has now.
            obj, fresh = kube.get_custom(PLURAL, ns, name), True
            answer = _judge(obj, target, request.key)
        if answer is not None:
            return answer
        assert obj is not None
        try:
            kube.patch_status(PLURAL, ns, name, {"systemRequest": request.model_dump(by_alias=True, mode="json",
                                                                                     exclude_none=True)},
                              obj["metadata"]["resourceVersion"])
        except kube.ApiException as exc:
            if exc.status == 404:
                return "refused: task not found"
            if exc.status != 409:
                raise
            obj = kube.get_custom(PLURAL, ns, name)  # the cache was behind: judge the newest version
            continue
        log.info("system move of %s/%s to %s requested by %s (key %s)", ns, name, target.value, by, key)
        runtime.enqueue(PLURAL, ns, name)
        return REQUESTED
    return "refused: the task kept changing; try again"
