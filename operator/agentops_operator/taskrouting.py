"""Which revision of an Agent works on a task during a canary (pure, used by the worker library).

Tasks assigned to an Agent are spread across its revisions by the canary weight, so the canary and
the stable revision see comparable work (what the ``tasks`` analysis compares). There is no central
dispatcher: every worker decides for itself, the same way, from the same inputs:

- the task's uid hashes to a bucket 0..99 (``bucket``); buckets below the Agent's
  ``status.canaryWeight`` belong to the canary revision (``status.currentRevision``), the others to
  the stable revision (``status.stableRevision``);
- a task already stamped with a revision of this Agent that still serves stays with it (rework after
  a rejection returns to the revision that did the work);
- without a canary in flight (no weight, or current == stable), or for a worker that does not know
  its revision (an external agent process), every worker may take every task.

A worker of revision R acts on a task only when ``owner(...) in (None, R)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

BUCKETS = 100


def bucket(uid: str) -> int:
    """A stable bucket 0..99 of a task uid (uniform: the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") % BUCKETS


def owner(uid: str, stamped: str | None, agent_status: Mapping[str, Any]) -> str | None:
    """The revision that should work on the task, or None when any revision may."""
    stable = agent_status.get("stableRevision")
    canary = agent_status.get("currentRevision")
    weight = agent_status.get("canaryWeight")
    if not isinstance(weight, int) or not stable or not canary or canary == stable:
        return None
    weight = max(0, min(BUCKETS, weight))
    # A stamped task stays with its revision while that revision has a share of the work.
    if (stamped == canary and weight > 0) or (stamped == stable and weight < BUCKETS):
        return str(stamped)
    return str(canary) if bucket(uid) < weight else str(stable)


def mine(uid: str, stamped: str | None, agent_status: Mapping[str, Any], revision: str | None) -> bool:
    """Whether a worker of ``revision`` should act on the task."""
    if not revision:
        return True
    want = owner(uid, stamped, agent_status)
    return want is None or want == revision
