"""Level-triggered reconciliation fed by the watch: cache → queue → workers.

kopf's watch streams keep `cache.store` current (see `handlers/__init__.py`); a change enqueues the
object's key and nothing else. A bounded pool of worker threads takes keys from one de-duplicating
queue (`workqueue.WorkQueue`), reads the object from the cache, and calls the kind's reconcile,
which returns seconds until it must run again (deadlines, pauses, window ends) or None. A key is
never worked on twice at once, and a key changed while in flight runs once more afterwards.
Failures back off per key, exponentially. A periodic resync re-queues from the cache (no LIST) at a
lower priority than watch events, and only objects not yet reconciled at their resourceVersion
(a full pass every `FULL_RESYNC_EVERY` periods catches anything that depends on time or on objects
outside the cache).

We avoid kopf timers and daemons because they put a finalizer on every object.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from . import kube
from . import settings as settings_mod
from .cache import rv_int, store
from .workqueue import HIGH, LOW, WorkQueue

log = logging.getLogger(__name__)

Reconcile = Callable[[dict[str, Any]], float | None]
Work = Callable[[str, str], float | None]
Key = tuple[str, str, str]
RECONCILERS: dict[str, Reconcile] = {}
WORK: dict[str, Work] = {}
FULL_RESYNC_EVERY = 20

RECONCILE_TOTAL = Counter("agentops_reconcile_total", "Reconciles by kind and outcome", ["kind", "outcome"])
RECONCILE_SECONDS = Histogram("agentops_reconcile_seconds", "Reconcile duration by kind", ["kind"])
QUEUE_DEPTH = Gauge("agentops_workqueue_depth", "Keys waiting in the work queue")
QUEUE_ADDS = Counter("agentops_workqueue_adds_total", "Keys added to the work queue, by priority", ["priority"])
CACHED_OBJECTS = Gauge("agentops_cache_objects", "Objects held in the watch-fed cache, by kind", ["kind"])


def register(plural: str) -> Callable[[Reconcile], Reconcile]:
    """A reconcile for one kind of object: `fn(obj) -> requeue_after | None`."""
    def deco(fn: Reconcile) -> Reconcile:
        RECONCILERS[plural] = fn
        return fn

    return deco


def register_work(kind: str) -> Callable[[Work], Work]:
    """A named unit of work that is not one object (e.g. a namespace's assignment pass):
    `fn(namespace, name) -> requeue_after | None`, queued and de-duplicated like objects."""
    def deco(fn: Work) -> Work:
        WORK[kind] = fn
        return fn

    return deco


class Runtime:
    def __init__(self) -> None:
        self.queue = WorkQueue()
        self._errors: dict[Key, str] = {}
        self._reconciled_rv: dict[Key, int | None] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._outage = False
        self._outage_lock = threading.Lock()

    # ---- enqueueing ------------------------------------------------------------------------
    def enqueue(self, kind: str, namespace: str, name: str, delay: float = 0.0, priority: int = HIGH) -> None:
        QUEUE_ADDS.labels("high" if priority == HIGH else "low").inc()
        self.queue.add((kind, namespace, name), priority, delay)

    def schedule(self, plural: str, namespace: str, name: str, delay: float) -> None:
        """Run the object's reconcile after `delay` seconds (0: as soon as a worker is free)."""
        self.enqueue(plural, namespace, name, delay)

    def forget(self, plural: str, namespace: str, name: str) -> None:
        """Drop the bookkeeping of a deleted object, so a long-running operator does not grow."""
        key = (plural, namespace, name)
        self.queue.forget(key)
        self._errors.pop(key, None)
        self._reconciled_rv.pop(key, None)

    # ---- working ---------------------------------------------------------------------------
    def process(self, key: Key) -> None:
        """Work on one key (blocking; called by a worker thread)."""
        kind, namespace, name = key
        started = time.monotonic()
        outcome = "ok"
        requeue: float | None = None
        obj: dict[str, Any] | None = None
        try:
            if kind in WORK:
                requeue = WORK[kind](namespace, name)
            else:
                obj = store.get(kind, namespace, name)
                if obj is None or obj["metadata"].get("deletionTimestamp"):
                    return
                self._reconciled_rv[key] = rv_int(obj)
                requeue = RECONCILERS[kind](obj)
            self._recovered()
            self.queue.forget_failures(key)
            if self._errors.pop(key, None) is not None and obj is not None:
                kube.emit_event(obj, "Normal", "Reconciled", "reconciling succeeds again")
        except Exception as exc:
            self._reconciled_rv.pop(key, None)
            why = kube.failure(exc)
            if why is kube.Failure.NAMESPACE_ENDING:
                log.debug("reconcile %s %s/%s skipped: namespace is going away", kind, namespace, name)
                outcome = "gone"
                return
            if why is kube.Failure.GONE and obj is not None:
                outcome = "gone"  # deleted under us; the watch's DELETED event follows
                return
            outcome = "conflict" if why is kube.Failure.CONFLICT else "error"
            if why is kube.Failure.UNAVAILABLE:
                self._outage_seen(kube.error_message(exc))
            elif why is None:  # not the API: a bug; logged with its traceback once per distinct error
                if key not in self._errors:
                    log.exception("reconcile %s %s/%s crashed", kind, namespace, name)
                self._report(key, obj, kube.error_message(exc))
            elif why is not kube.Failure.CONFLICT:  # someone wrote first: the watch brings it; retry soon
                self._report(key, obj, kube.error_message(exc))
            requeue = self.queue.backoff(key)
        finally:
            RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)
            RECONCILE_TOTAL.labels(kind, outcome).inc()
        if requeue is not None:
            self.enqueue(kind, namespace, name, requeue)

    def _report(self, key: Key, obj: dict[str, Any] | None, message: str) -> None:
        """Surface a failing reconcile on the object itself, once per distinct error, not only in logs."""
        if self._errors.get(key) == message:
            return
        self._errors[key] = message
        log.warning("reconcile %s %s/%s failed: %s", *key, message)
        if obj is not None:
            kube.emit_event(obj, "Warning", "ReconcileFailed", f"{message[:900]}; retrying with backoff")

    def _outage_seen(self, what: str) -> None:
        """One warning per API-server outage, however many reconciles fail during it."""
        with self._outage_lock:
            if self._outage:
                return
            self._outage = True
        log.warning("the API server is unreachable (%s); retrying with backoff, quietly until it answers", what)

    def _recovered(self) -> None:
        if not self._outage:
            return
        with self._outage_lock:
            if not self._outage:
                return
            self._outage = False
        log.warning("the API server answers again")

    def _worker(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                self.process(key)  # type: ignore[arg-type]
            finally:
                self.queue.done(key)
                QUEUE_DEPTH.set(self.queue.depth())

    # ---- resync ----------------------------------------------------------------------------
    def resync_once(self, full: bool) -> int:
        """Re-queue (LOW) what the cache holds: every object on a full pass, else those not yet
        reconciled at their current resourceVersion. Returns how many keys were queued."""
        queued = 0
        for kind in list(RECONCILERS):
            for obj in store.list(kind):
                meta = obj["metadata"]
                key = (kind, meta.get("namespace") or "", meta["name"])
                if not watched(key[1]):
                    continue
                if full or self._reconciled_rv.get(key, -1) != rv_int(obj):
                    self.enqueue(*key, priority=LOW)
                    queued += 1
            CACHED_OBJECTS.labels(kind).set(store.count(kind))
        return queued

    def _resync_loop(self) -> None:
        n = 0
        while not self._stop.wait(settings_mod.current.resync_seconds):
            n += 1
            try:
                self.resync_once(full=n % FULL_RESYNC_EVERY == 0)
                if not self.queue.depth():  # a quiet moment: the one full collection of the period
                    kube.release_memory()
            except Exception:  # never let the resync thread die
                log.exception("resync failed")

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, workers: int) -> None:
        if self._threads:
            return
        self._stop.clear()
        for i in range(max(1, workers)):
            t = threading.Thread(target=self._worker, name=f"agentops-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._resync_loop, name="agentops-resync", daemon=True)
        t.start()
        self._threads.append(t)
        self.resync_once(full=True)
        kube.events_yield_to(lambda: self.queue.depth() > 0)

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()


def watched(namespace: str) -> bool:
    """Whether the operator is configured to act in this namespace."""
    namespaces = settings_mod.current.namespaces
    return not namespaces or any(fnmatch.fnmatchcase(namespace, pat) for pat in namespaces)


runtime = Runtime()
