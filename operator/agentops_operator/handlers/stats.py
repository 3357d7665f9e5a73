"""Agent statistics (activeTasks, tasksCompleted, lastActive), kept incrementally from the watched tasks.

Each task's contribution to its agents' figures (`taskflow.task_statistics`) is remembered per task;
a task change (a cache listener, `task_changed`) replaces that contribution and applies the
difference to per-agent counters, marking only the agents whose figures changed. A flusher writes
those agents' status at most once a second (no LIST, no pass over all tasks), and only when the figures
differ from what the Agent's status already says. `start` counts once from the primed cache.
These keys have this one writer; the Agent's own reconcile never writes them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from .. import kube, taskflow
from ..cache import rv_int, store

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0
AgentKey = tuple[str, str]  # (namespace, agent)
TaskKey = tuple[str, str]  # (namespace, task)


class AgentStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per task: the resourceVersion its contribution was taken at, and the contribution (only tasks
        # that contribute anything are kept).
        self._tasks: dict[TaskKey, tuple[int | None, taskflow.Contribution]] = {}
        self._counts: dict[AgentKey, list[int]] = {}  # [active, completed]
        self._last: dict[AgentKey, str] = {}  # lastActive only moves forward
        self._dirty: set[AgentKey] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.writes = 0

    # ---- keeping the figures ---------------------------------------------------------------
    def task_changed(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """A cache listener's delta: `new` None for a deletion."""
        cur = new or old
        if cur is None:
            return
        meta = cur["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        with self._lock:
            if new is None:
                self._set(key, None, ())
            else:
                self._set(key, rv_int(new), taskflow.task_statistics(new.get("status") or {}))

    def _set(self, key: TaskKey, rv: int | None, contribution: taskflow.Contribution) -> None:
        """Replace a task's contribution (caller holds the lock); an older version than the one counted
        is ignored, so a late write-through and its watch event never count twice."""
        before_rv, before = self._tasks.get(key, (None, ()))
        if rv is not None and before_rv is not None and rv < before_rv:
            return
        if before == contribution:
            if contribution:
                self._tasks[key] = (rv, contribution)
            return
        ns = key[0]
        for agent, active, completed, _ in before:
            # An Agent forgotten while its figures were [0, 0] (deleted before its tasks) is not counted.
            c = self._counts.setdefault((ns, agent), [0, 0])
            c[0] -= active
            c[1] -= completed
            self._dirty.add((ns, agent))
        for agent, active, completed, last in contribution:
            c = self._counts.setdefault((ns, agent), [0, 0])
            c[0] += active
            c[1] += completed
            if last is not None and last > self._last.get((ns, agent), ""):
                self._last[(ns, agent)] = last
            self._dirty.add((ns, agent))
        if contribution:
            self._tasks[key] = (rv, contribution)
        else:
            self._tasks.pop(key, None)

    def rebuild(self, tasks: Iterable[dict[str, Any]]) -> None:
        """Count from scratch (start-up, from the primed cache); every agent is written if it differs."""
        with self._lock:
            self._dirty.update(self._counts)
            self._tasks.clear()
            self._counts.clear()
            for t in tasks:
                meta = t["metadata"]
                self._set((meta.get("namespace") or "", meta["name"]), rv_int(t),
                          taskflow.task_statistics(t.get("status") or {}))

    def figures(self, namespace: str, agent: str) -> taskflow.AgentStatistics:
        with self._lock:
            active, completed = self._counts.get((namespace, agent), (0, 0))
            return taskflow.AgentStatistics(active, completed, self._last.get((namespace, agent)))

    def touch(self, namespace: str, agents: Iterable[str | None]) -> None:
        """Check these agents' figures at the next flush (e.g. a new Agent: write its zeros)."""
        with self._lock:
            self._dirty.update((namespace, a) for a in agents if a)

    def forget(self, namespace: str, agent: str) -> None:
        with self._lock:
            self._dirty.discard((namespace, agent))
            self._last.pop((namespace, agent), None)
            c = self._counts.get((namespace, agent))
            if c is not None and c == [0, 0]:
                del self._counts[(namespace, agent)]

    # ---- writing ---------------------------------------------------------------------------
    def flush_once(self) -> int:
        """Write the figures of the agents that changed; returns the number of status writes."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        writes = 0
        for ns, name in sorted(dirty):
            agent = store.peek("agents", ns, name)
            if agent is None or agent["metadata"].get("deletionTimestamp"):
                continue
            want = self.figures(ns, name).as_status()
            have = agent.get("status") or {}
            # lastActive has a second source (an external agent's heartbeat, handlers/external.py):
            # it only ever moves forward.
            if have.get("lastActive") and (want["lastActive"] is None or have["lastActive"] > want["lastActive"]):
                want["lastActive"] = have["lastActive"]
            if all(have.get(k) == v for k, v in want.items()):
                continue
            try:
                kube.patch_status("agents", ns, name, want)
                writes += 1
            except Exception as exc:
                why = kube.failure(exc)
                if why is kube.Failure.GONE:
                    continue
                report = log.debug if why is kube.Failure.UNAVAILABLE else log.warning
                report("could not update statistics of agent %s/%s: %s", ns, name, kube.error_message(exc))
                self.touch(ns, [name])  # try again at the next flush
        self.writes += writes
        return writes

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush_once()
            except Exception:
                log.exception("agent statistics flush failed")

    def start(self, namespaces: Iterable[str]) -> None:
        self.rebuild(store.list("agenttasks"))
        for ns in namespaces:
            self.touch(ns, (a["metadata"]["name"] for a in store.list("agents", ns)))
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="agentops-agent-stats", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()


stats = AgentStats()
