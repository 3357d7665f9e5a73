"""Replica maths: weight → (canary, stable) without a mesh, and queue-depth autoscaling."""

from __future__ import annotations

import math


def split_replicas(total: int, weight_percent: int) -> tuple[int, int]:
    """Split ``total`` replicas into ``(canary, stable)`` for a canary weight without a mesh.

    Rules (weight = canary replicas / total, as Argo Rollouts does without a traffic router):

    * canary = ceil(total * weight / 100): any non-zero weight with total >= 1 gets >= 1 canary.
    * weight 0 → (0, total); weight 100 → (total, 0).
    * Surge rule: for 0 < weight < 100 the stable revision keeps at least one replica, so with a
      small total (e.g. 1 replica at 50%) the sum is ``total + 1``. That is the only case where
      ``canary + stable != total``; the sum never exceeds ``total + 1``.
    """
    if total < 0:
        raise ValueError(f"total replicas must be >= 0, got {total}")
    if not 0 <= weight_percent <= 100:
        raise ValueError(f"weight must be within 0..100, got {weight_percent}")
    canary = (total * weight_percent + 99) // 100  # integer ceil: no float rounding surprises
    stable = total - canary
    if 0 < weight_percent < 100 and total > 0 and stable == 0:
        stable = 1  # keep the stable revision serving until the weight reaches 100
    return canary, stable


def effective_weight(canary_replicas: int, stable_replicas: int) -> int:
    """The traffic share (percent, rounded down) the canary actually gets from replica counts."""
    total = canary_replicas + stable_replicas
    return 0 if total <= 0 else (100 * canary_replicas) // total


def queue_depth_replicas(open_tasks: int, tasks_per_replica: int, min_replicas: int, max_replicas: int) -> int:
    """Replicas for queue-depth autoscaling: ceil(open / per-replica), clamped to [min, max]."""
    if tasks_per_replica < 1:
        raise ValueError("tasksPerReplica must be >= 1")
    if min_replicas < 0 or max_replicas < min_replicas:
        raise ValueError(f"need 0 <= minReplicas <= maxReplicas, got {min_replicas}..{max_replicas}")
    wanted = math.ceil(max(open_tasks, 0) / tasks_per_replica)
    return max(min_replicas, min(max_replicas, wanted))


def canary_replicas(total: int, weight: int, canary_available: int) -> tuple[int, int]:
    """Desired (canary, stable) while shifting weight: stable never drops below what keeps
    ``total`` pods available, so a canary that never gets ready costs no capacity."""
    canary, stable = split_replicas(total, weight)
    keep = max(0, total - min(canary_available, canary))
    return canary, min(total, max(stable, keep))
