"""Agent statistics (activeTasks, tasksCompleted, lastActive), kept from the watched tasks.

Task moves mark the agents they concern; a flusher computes the figures from the cache (no LIST)
at most once a second per namespace, and writes an Agent's status only when its figures changed.
These keys have this one writer; the Agent's own reconcile never writes them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from .. import kube, taskflow
from ..cache import store

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0


class AgentStats:
    def __init__(self) -> None:
        self._dirty: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.writes = 0

    def touch(self, namespace: str, agents: Iterable[str | None]) -> None:
        names = {a for a in agents if a}
        if not names:
            return
        with self._lock:
            self._dirty.setdefault(namespace, set()).update(names)

    def forget(self, namespace: str, agent: str) -> None:
        with self._lock:
            self._dirty.get(namespace, set()).discard(agent)

    def flush_once(self) -> int:
        """Write the figures that changed; returns the number of status writes."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
        writes = 0
        for ns, agents in dirty.items():
            figures = taskflow.agent_statistics([t.get("status") or {} for t in store.list("agenttasks", ns)])
            for name in sorted(agents):
                agent = store.peek("agents", ns, name)
                if agent is None or agent["metadata"].get("deletionTimestamp"):
                    continue
                want = figures.get(name, taskflow.AgentStatistics()).as_status()
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
                except kube.ApiException as exc:
                    if exc.status != 404:
                        log.warning("could not update statistics of agent %s/%s: %s", ns, name, exc.reason)
                        self.touch(ns, [name])
                except Exception as exc:  # API unreachable: try again at the next flush
                    log.debug("could not update statistics of agent %s/%s: %s", ns, name, exc)
                    self.touch(ns, [name])
        self.writes += writes
        return writes

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush_once()
            except Exception:
                log.exception("agent statistics flush failed")

    def start(self, namespaces: Iterable[str]) -> None:
        for ns in namespaces:
            self.touch(ns, (a["metadata"]["name"] for a in store.list("agents", ns)))
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="agentops-agent-stats", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()


stats = AgentStats()
