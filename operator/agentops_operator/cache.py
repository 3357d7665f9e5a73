"""The operator's view of the cluster: the latest body of every watched object, kept from the watch.

Reconciles read from here instead of calling the API (as controller-runtime's informer cache does):
kopf's watch streams feed `Store.upsert`/`Store.delete`, and every write the operator makes feeds its
response back (`kube` calls `store.observe`), so a reconcile that runs right after our own write
already sees it. No I/O here.

Objects are kept as plain dicts. `get` returns a deep copy (safe to change); `list`/`owned` return
the stored dicts themselves, which callers must treat as read-only.
"""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]


def rv_int(obj: Obj | None) -> int | None:
    """resourceVersion as an integer when it is one (etcd revisions are); None otherwise."""
    rv = ((obj or {}).get("metadata") or {}).get("resourceVersion")
    try:
        return int(rv) if rv is not None else None
    except (TypeError, ValueError):
        return None


# Not needed by any reconcile and large: server-side apply's field ownership, and kubectl's copy of
# the whole last-applied spec. Dropped from what the cache keeps (as controller-runtime can strip
# managed fields), which is most of an AgentTask's size when users `kubectl apply` them.
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def slim(obj: Obj) -> Obj:
    """The object as the cache keeps it: without metadata.managedFields and the last-applied
    annotation. The caller's dict is not changed."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return obj
    annotations = meta.get("annotations") or {}
    dropped = any(k in annotations for k in _DROPPED_ANNOTATIONS)
    if "managedFields" not in meta and not dropped:
        return obj
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    if dropped:
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS}
    return {**obj, "metadata": meta}


def owner_uids(obj: Obj) -> builtins.list[str]:
    return [r["uid"] for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if r.get("uid")]


class Store:
    """kind → namespace → name → body, plus an owner-uid index. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objs: dict[str, dict[str, dict[str, Obj]]] = {}
        self._owned: dict[tuple[str, str], set[tuple[str, str]]] = {}  # (kind, owner uid) → {(ns, name)}
        self._synced: set[str] = set()

    # ---- writes (watch events and our own API responses) -----------------------------------
    def upsert(self, kind: str, obj: Obj) -> tuple[bool, Obj | None]:
        """Store a newer body. Returns (changed, previous): unchanged when the stored copy is the same
        resourceVersion (the echo of our own write) or newer (a late watch event)."""
        obj = slim(obj)
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace") or "", meta.get("name") or ""
        with self._lock:
            by_ns = self._objs.setdefault(kind, {}).setdefault(ns, {})
            old = by_ns.get(name)
            if old is not None:
                new_rv, old_rv = rv_int(obj), rv_int(old)
                same_object = (old.get("metadata") or {}).get("uid") == meta.get("uid")
                if same_object and new_rv is not None and old_rv is not None and new_rv <= old_rv:
                    return False, old
                for uid in owner_uids(old):
                    self._owned.get((kind, uid), set()).discard((ns, name))
            by_ns[name] = obj
            for uid in owner_uids(obj):
                self._owned.setdefault((kind, uid), set()).add((ns, name))
            return True, old

    def delete(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            by_ns = self._objs.get(kind, {}).get(namespace or "", {})
            old = by_ns.pop(name, None)
            if old is not None:
                for uid in owner_uids(old):
                    owned = self._owned.get((kind, uid))
                    if owned is not None:
                        owned.discard((namespace or "", name))
                        if not owned:
                            del self._owned[(kind, uid)]
                if not by_ns:
                    self._objs.get(kind, {}).pop(namespace or "", None)
            return old

    def mark_synced(self, kind: str) -> None:
        with self._lock:
            self._synced.add(kind)

    def synced(self, kind: str) -> bool:
        with self._lock:
            return kind in self._synced

    # ---- reads -----------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            obj = self._objs.get(kind, {}).get(namespace or "", {}).get(name)
            return copy.deepcopy(obj) if obj is not None else None

    def peek(self, kind: str, namespace: str, name: str) -> Obj | None:
        """The stored body itself (read-only)."""
        with self._lock:
            return self._objs.get(kind, {}).get(namespace or "", {}).get(name)

    def list(self, kind: str, namespace: str | None = None,
             where: Callable[[Obj], bool] | None = None) -> builtins.list[Obj]:
        with self._lock:
            spaces: Iterable[dict[str, Obj]]
            if namespace is None:
                spaces = list(self._objs.get(kind, {}).values())
            else:
                spaces = [self._objs.get(kind, {}).get(namespace, {})]
            out = [o for space in spaces for o in space.values()]
        return [o for o in out if where(o)] if where else out

    def labelled(self, kind: str, namespace: str | None, label: str, value: str | None = None) -> builtins.list[Obj]:
        def match(o: Obj) -> bool:
            labels = (o.get("metadata") or {}).get("labels") or {}
            return label in labels and (value is None or labels[label] == value)

        return self.list(kind, namespace, match)

    def owned(self, kind: str, owner_uid: str) -> builtins.list[Obj]:
        with self._lock:
            keys = sorted(self._owned.get((kind, owner_uid), ()))
            space = self._objs.get(kind, {})
            return [o for ns, name in keys if (o := space.get(ns, {}).get(name)) is not None]

    def namespaces(self, kind: str) -> builtins.list[str]:
        with self._lock:
            return sorted(self._objs.get(kind, {}))

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            kinds = [kind] if kind else list(self._objs)
            return sum(len(space) for k in kinds for space in self._objs.get(k, {}).values())


Listener = Callable[[Obj | None, Obj | None, bool], None]
_listeners: dict[str, list[Listener]] = {}


def listen(kind: str, fn: Listener) -> None:
    """Call `fn(old, new, own)` after every change of a `kind` object in the cache: new is None for a
    deletion; own is True when the change is the operator's own write (fed back by `kube`)."""
    _listeners.setdefault(kind, []).append(fn)


def notify(kind: str, old: Obj | None, new: Obj | None, own: bool) -> None:
    for fn in _listeners.get(kind, ()):
        fn(old, new, own)


store = Store()
