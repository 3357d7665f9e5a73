"""Level-triggered reconciliation on top of kopf's watches.

kopf delivers watch events; every resource kind registers one `reconcile(obj) -> requeue_after`
function here. Reconciles of one object are serialised, can ask to run again after a delay
(timers, deadlines, quota resets) and a periodic re-list catches anything a watch missed.
We avoid kopf timers and daemons because they put a finalizer on every object.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException
from prometheus_client import Counter, Histogram

from . import kube
from . import settings as settings_mod

log = logging.getLogger(__name__)

Reconcile = Callable[[dict[str, Any]], float | None]
RECONCILERS: dict[str, Reconcile] = {}

RECONCILE_TOTAL = Counter(
    "agentops_reconcile_total", "Reconciles by kind and outcome", ["kind", "outcome"]
)
RECONCILE_SECONDS = Histogram("agentops_reconcile_seconds", "Reconcile duration by kind", ["kind"])


def register(plural: str) -> Callable[[Reconcile], Reconcile]:
    def deco(fn: Reconcile) -> Reconcile:
        RECONCILERS[plural] = fn
        return fn

    return deco


class Runtime:
    def __init__(self) -> None:
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._heap: list[tuple[float, tuple[str, str, str]]] = []
        self._due: dict[tuple[str, str, str], float] = {}
        self._heap_guard = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._errors: dict[tuple[str, str, str], str] = {}

    def _lock_for(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def reconcile(self, plural: str, namespace: str, name: str) -> None:
        """Run the kind's reconcile for one object (blocking; call from a worker thread)."""
        key = (plural, namespace, name)
        fn = RECONCILERS[plural]
        with self._lock_for(key):
            # A watch body may be stale by the time we hold the lock: read the latest.
            obj = kube.get_custom(plural, namespace, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return
            started = time.monotonic()
            outcome = "ok"
            try:
                requeue = fn(obj)
            except ApiException as exc:
                if _namespace_going_away(exc):
                    # Children cannot be created in a terminating namespace; the object goes with it.
                    log.debug("reconcile %s %s/%s skipped: namespace is going away", plural, namespace, name)
                    RECONCILE_TOTAL.labels(plural, "gone").inc()
                    return
                # 409: someone wrote first; re-read and try again shortly.
                outcome = "conflict" if exc.status == 409 else "error"
                if exc.status != 409:
                    log.warning("reconcile %s %s/%s failed: %s %s", plural, namespace, name, exc.status, exc.reason)
                    self._report(key, obj, f"API error {exc.status} {exc.reason}")
                requeue = 0.5 if exc.status == 409 else 5.0
            except Exception as exc:
                outcome = "error"
                log.exception("reconcile %s %s/%s crashed", plural, namespace, name)
                self._report(key, obj, f"{type(exc).__name__}: {exc}")
                requeue = 10.0
            else:
                self._errors.pop(key, None)
            finally:
                RECONCILE_SECONDS.labels(plural).observe(time.monotonic() - started)
            RECONCILE_TOTAL.labels(plural, outcome).inc()
        if requeue is not None:
            self.schedule(plural, namespace, name, requeue)

    def forget(self, plural: str, namespace: str, name: str) -> None:
        """Drop the bookkeeping of a deleted object, so a long-running operator does not grow."""
        key = (plural, namespace, name)
        with self._locks_guard:
            self._locks.pop(key, None)
        with self._heap_guard:
            self._due.pop(key, None)  # a stale heap entry is skipped when its due time no longer matches
        self._errors.pop(key, None)

    def _report(self, key: tuple[str, str, str], obj: dict[str, Any], message: str) -> None:
        """Surface a failing reconcile on the object itself (once per distinct error), not only in logs."""
        if self._errors.get(key) == message:
            return
        self._errors[key] = message
        kube.emit_event(obj, "Warning", "ReconcileFailed", f"{message[:900]}; retrying")

    def schedule(self, plural: str, namespace: str, name: str, delay: float) -> None:
        key = (plural, namespace, name)
        when = time.monotonic() + max(0.0, delay)
        with self._heap_guard:
            if key in self._due and self._due[key] <= when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
        if self._loop and self._wake:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run_scheduler(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            ready: list[tuple[str, str, str]] = []
            with self._heap_guard:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    when, key = heapq.heappop(self._heap)
                    if self._due.get(key) == when:
                        del self._due[key]
                        ready.append(key)
                timeout = (self._heap[0][0] - now) if self._heap else 60.0
            for plural, ns, name in ready:
                t = asyncio.create_task(asyncio.to_thread(self.reconcile, plural, ns, name))
                self._inflight.add(t)
                t.add_done_callback(self._inflight.discard)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, timeout))

    async def run_resync(self) -> None:
        period = settings_mod.current.resync_seconds
        while True:
            for plural in list(RECONCILERS):
                try:
                    items = await asyncio.to_thread(self.list_watched, plural)
                except ApiException as exc:
                    log.warning("resync list of %s failed: %s", plural, exc.reason)
                    continue
                for obj in items:
                    meta = obj["metadata"]
                    self.schedule(plural, meta["namespace"], meta["name"], 0)
            await asyncio.sleep(period)

    @staticmethod
    def list_watched(plural: str) -> list[dict[str, Any]]:
        """All objects of a kind in the namespaces this operator watches."""
        namespaces = settings_mod.current.namespaces
        if not namespaces:
            return kube.list_custom(plural)
        if any(ch in ns for ns in namespaces for ch in "*?["):
            # Globs (as kopf accepts them): list everywhere, keep the matching namespaces.
            return [o for o in kube.list_custom(plural) if watched(o["metadata"]["namespace"])]
        return [o for ns in namespaces for o in kube.list_custom(plural, ns)]


def _namespace_going_away(exc: ApiException) -> bool:
    body = exc.body if isinstance(exc.body, str) else ""
    return (exc.status == 403 and "being terminated" in body) or (exc.status == 404 and '"kind":"namespaces"' in body)


def watched(namespace: str) -> bool:
    """Whether the operator is configured to act in this namespace."""
    namespaces = settings_mod.current.namespaces
    return not namespaces or any(fnmatch.fnmatchcase(namespace, pat) for pat in namespaces)


runtime = Runtime()
