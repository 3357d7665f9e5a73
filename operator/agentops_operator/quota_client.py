"""Atomic Quota operations for the task operator, agents and clients.

Every operation is a read-modify-write of the Quota's status subresource under the API server's
optimistic concurrency: read the object, compute the new ledger with the pure `quotaledger`, send a
merge patch carrying the read `metadata.resourceVersion`, and on 409 Conflict read again and
recompute. A grant is therefore only reported after the write that records it succeeded (never
over-granted, never lost); a refusal writes nothing.

Agents and scripts:

    from agentops_operator import quota_client
    grant = quota_client.use("api-calls", amount=3)      # in-cluster or kubeconfig credentials
    if not grant.granted:
        print(grant.message, "retry after", grant.reset_at)

or `kubectl agentops quota use api-calls --amount 3` (exit 0 granted, 1 refused). The caller needs
`get` on quotas and `patch` on quotas/status (ClusterRole agentops-agent); the admission policy
agentops-quota-status lets anyone but the operator only add to a ledger (never start a window).

Reserve, commit and release are idempotent per holder, commits included: a holder already committed
is remembered (`status.committed`), so a caller that lost its record of a commit and starts over
charges nothing twice (`charge_for` does reserve + commit for a set of costs).
"""

from __future__ import annotations

import logging
import random
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from prometheus_client import Counter

from . import GROUP, VERSION
from . import quotaledger as ql

log = logging.getLogger(__name__)
PLURAL = "quotas"
MAX_CONFLICTS = 200  # a runaway guard: 20 writers on one object need a few dozen retries at worst
# Retry n sleeps uniform(0, min(CAP, BASE * 2**n)). Measured with 20 writers on one Quota (bench/
# bench_quota.py): a 100 ms first window halves the conflicts and the wall time of 2-10 ms ones.
BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0
# Only the operator may start a window (admission policy agentops-quota-status). A client whose call
# falls after resetAt, before the operator's reset, waits this long for it before being refused.
WINDOW_WAIT = 10.0
WINDOW_POLL = 0.25
OPERATOR_ONLY = "only the operator starts a window"  # in the admission policy's messages for window writes

OPS = Counter("agentops_quota_operations_total", "Quota operations by kind and outcome", ["op", "outcome"])
CONFLICTS = Counter("agentops_quota_conflicts_total", "resourceVersion conflicts retried by Quota operations")


class QuotaContention(RuntimeError):
    """Gave up after MAX_CONFLICTS conflicts in a row; nothing was granted or written."""


class QuotaWindowPending(RuntimeError):
    """The window ended and the operator has not started the next one yet (WINDOW_WAIT); nothing written."""


@dataclass(frozen=True)
class Grant:
    granted: bool
    used: int
    limit: int
    remaining: int
    reset_at: datetime | None
    message: str
    reserved: int = 0
    over_limit: bool = False  # Soft quotas grant over the limit and say so here
    conflicts: int = 0  # optimistic-concurrency retries this call needed


@dataclass(frozen=True)
class Outcome:
    """What one operation did: the ledger result and the object as written (or as read)."""

    result: ql.Result | None  # None: the Quota's spec is invalid
    obj: dict[str, Any]
    conflicts: int
    error: str = ""


def _backoff(attempt: int) -> float:
    # Full jitter: spreads the retrying writers out so fewer of them collide again.
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempt, 10)))


def _refused_window(exc: ApiException) -> bool:
    return exc.status in (403, 422) and OPERATOR_ONLY in str(exc.body or "")


def run(
    api: client.CustomObjectsApi,
    namespace: str,
    name: str,
    op: ql.Op,
    first: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Apply `op` atomically; `first` saves the initial GET when the caller has just read the object.

    A caller the admission policy does not allow to start windows (anyone but the operator) learns it
    from the first refusal, then waits up to WINDOW_WAIT for the operator's reset before refusing.
    """
    kind = type(op).__name__.lower()
    obj = first
    conflicts = 0
    may_roll = True
    waited_since: float | None = None
    while True:
        if obj is None:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        at = now or datetime.now(UTC)
        try:
            v = ql.view(obj)
        except ValueError as exc:
            OPS.labels(kind, "invalid").inc()
            return Outcome(None, obj, conflicts, error=f"quota {namespace}/{name} is invalid: {exc}")
        status = obj.get("status") or {}
        res = ql.apply(v, status, op, at, may_roll=may_roll)
        if not may_roll and res.message.startswith("WindowPending"):
            waited_since = waited_since if waited_since is not None else time.monotonic()
            if now is None and time.monotonic() - waited_since < WINDOW_WAIT:
                time.sleep(WINDOW_POLL)
                obj = None
                continue
        if not res.patch:
            OPS.labels(kind, "granted" if res.granted else "refused").inc()
            return Outcome(res, obj, conflicts)
        body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": res.patch}
        try:
            written = api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, body)
        except ApiException as exc:
            if may_roll and _refused_window(exc):
                may_roll = False  # not the operator: compute without starting windows from now on
                obj = None
                continue
            if exc.status != 409:
                raise  # outcome unknown on other errors: surface it rather than retry a possible grant
            conflicts += 1
            CONFLICTS.inc()
            if conflicts >= MAX_CONFLICTS:
                OPS.labels(kind, "contention").inc()
                raise QuotaContention(f"quota {namespace}/{name}: gave up after {conflicts} conflicts") from exc
            time.sleep(_backoff(conflicts))
            obj = None
            continue
        OPS.labels(kind, "granted" if res.granted else "refused").inc()
        return Outcome(res, written, conflicts)


def _grant(out: Outcome) -> Grant:
    limit = int((out.obj.get("spec") or {}).get("limit", 0))
    if out.result is None:
        return Grant(False, 0, limit, 0, None, out.error, conflicts=out.conflicts)
    r = out.result
    return Grant(
        granted=r.granted,
        used=r.used,
        limit=limit,
        remaining=r.remaining,
        reset_at=r.reset_at,
        message=r.message,
        reserved=r.reserved,
        over_limit=r.over_limit,
        conflicts=out.conflicts,
    )


def _positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
        raise ValueError(f"amount must be a positive integer, got {amount!r}")


def consume(api: client.CustomObjectsApi, namespace: str, name: str, amount: int, by: str = "") -> Grant:
    """Take `amount` units now, or learn that they are refused (Hard quota) and when it resets."""
    _positive(amount)
    return _grant(run(api, namespace, name, ql.Consume(amount, by)))


def check(api: client.CustomObjectsApi, namespace: str, name: str, amount: int = 1) -> Grant:
    """Would `amount` be granted now? Reads only."""
    _positive(amount)
    return _grant(run(api, namespace, name, ql.Check(amount)))


def whoami(api: client.CustomObjectsApi) -> str:
    """The username the API server sees for `api`'s credentials (one SelfSubjectReview per client)."""
    known = _usernames.get(api.api_client)
    if known is None:
        review = client.AuthenticationV1Api(api.api_client).create_self_subject_review(
            client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"))
        known = _usernames[api.api_client] = str(review.status.user_info.username)
    return known


_usernames: weakref.WeakKeyDictionary[client.ApiClient, str] = weakref.WeakKeyDictionary()


def reserve(
    api: client.CustomObjectsApi, namespace: str, name: str, holder: str, amount: int, reason: str = "",
    by: str | None = None,
) -> Grant:
    """Hold `amount` units for `holder` until commit or release; again for the same holder returns the hold.

    A holder that is not an AgentTask's is bound to the identity that reserves it (`by`, default: who
    the API server says the caller is): admission lets only that identity, or the operator, commit or
    release it, and another identity reserving the same holder is refused (HolderTaken)."""
    _positive(amount)
    if not holder:
        raise ValueError("holder must not be empty")
    if by is None:
        by = "" if holder.startswith(ql.TASK_HOLDER) else whoami(api)
    return _grant(run(api, namespace, name, ql.Reserve(holder, amount, reason, by)))


def _settle_reservation(api: client.CustomObjectsApi, namespace: str, name: str, op: ql.Op) -> None:
    try:
        out = run(api, namespace, name, op)
    except ApiException as exc:
        if exc.status == 404:
            log.info("quota %s/%s is gone; nothing to %s", namespace, name, type(op).__name__.lower())
            return
        raise
    if out.result is None:
        log.warning("%s", out.error)
    elif out.result.message.startswith("WindowPending"):
        raise QuotaWindowPending(f"quota {namespace}/{name}: {out.result.message}")


def commit(api: client.CustomObjectsApi, namespace: str, name: str, holder: str) -> None:
    """Turn `holder`'s reservation into usage (idempotent: no reservation, nothing to do)."""
    _settle_reservation(api, namespace, name, ql.Commit(holder))


def release(api: client.CustomObjectsApi, namespace: str, name: str, holder: str) -> None:
    """Drop `holder`'s reservation (idempotent)."""
    _settle_reservation(api, namespace, name, ql.Release(holder))


def settle(api: client.CustomObjectsApi, obj: dict[str, Any], now: datetime | None = None) -> Outcome:
    """The operator's write: initialise, roll over (reset) or reshape the window if due."""
    meta = obj["metadata"]
    return run(api, meta["namespace"], meta["name"], ql.Settle("operator"), first=obj, now=now)


def forget(api: client.CustomObjectsApi, obj: dict[str, Any], holders: tuple[str, ...]) -> Outcome:
    """The operator's write: drop remembered commits no retry can reach (see quotaledger.forgettable)."""
    meta = obj["metadata"]
    return run(api, meta["namespace"], meta["name"], ql.Forget(holders), first=obj)


def _default_namespace() -> str:
    sa_ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if sa_ns.exists():
        return sa_ns.read_text().strip()
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts()
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, FileNotFoundError):
        return "default"


def use(name: str, amount: int = 1, namespace: str | None = None, by: str = "") -> Grant:
    """The helper for agents: consume from Quota `name` with the pod's (or kubeconfig's) credentials."""
    from . import kube

    return consume(kube.custom(), namespace or _default_namespace(), name, amount, by=by)


@dataclass(frozen=True)
class Charge:
    """What charging a set of costs did: all charged (ok) or none (the first refusal's message)."""

    ok: bool
    message: str = ""
    charged: tuple[tuple[str, str, int], ...] = ()  # (quota, resource, amount)
    reset_at: datetime | None = None


def charge_for(
    api: client.CustomObjectsApi,
    namespace: str,
    labels: dict[str, str],
    holder: str,
    costs: list[tuple[str, int]],
    reason: str = "",
    quotas: list[dict[str, Any]] | None = None,
) -> Charge:
    """Charge `costs` ((resource, amount) pairs) to every Quota of the namespace that selects `labels`, once
    per holder: all reserved first, then all committed, or all released when one is refused. A retry
    with the same holder (its caller lost the record of the charge) charges nothing again."""
    from . import selectors

    if not costs:
        return Charge(True)
    if quotas is None:
        quotas = list(api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL).get("items", []))
    targets = [
        (q["metadata"]["name"], resource, amount)
        for resource, amount in costs
        for q in quotas
        if (q.get("spec") or {}).get("resource") == resource and selectors.matches(q["spec"].get("selector"), labels)
    ]
    taken: list[str] = []
    for qname, _, amount in targets:
        if qname in taken:
            continue  # one hold per holder and quota
        grant = reserve(api, namespace, qname, holder, amount, reason)
        if not grant.granted:
            for q in taken:
                release(api, namespace, q, holder)
            return Charge(False, f"quota {qname}: {grant.message}", reset_at=grant.reset_at)
        taken.append(qname)
    for qname in taken:
        commit(api, namespace, qname, holder)
    return Charge(True, charged=tuple(targets))
