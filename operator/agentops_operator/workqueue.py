"""A work queue in the manner of client-go's: keys, not events; de-duplicated; one worker per key.

- `add(key)` while the key waits: nothing (de-duplicated); while it is being worked on: it runs once
  more afterwards (the in-flight key is marked dirty), never twice at once.
- Two priorities: watch events (HIGH) go before periodic resyncs (LOW); a HIGH add lifts a waiting
  LOW key.
- `add(key, delay=s)`: a timer; the earliest pending timer of a key wins.
- Per-key exponential backoff for failures (`backoff(key)`), reset by `forget_failures(key)`.
Thread-safe; `get` blocks. No I/O.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Hashable

HIGH = 0
LOW = 1


class WorkQueue:
    def __init__(self, backoff_base: float = 0.05, backoff_cap: float = 300.0) -> None:
        self._cv = threading.Condition()
        self._ready: tuple[deque[Hashable], deque[Hashable]] = (deque(), deque())
        self._queued: dict[Hashable, int] = {}  # key → priority it waits at
        self._inflight: set[Hashable] = set()
        self._dirty: dict[Hashable, int] = {}
        self._timers: list[tuple[float, int, Hashable, int]] = []
        self._due: dict[Hashable, float] = {}
        self._seq = itertools.count()
        self._failures: dict[Hashable, int] = {}
        self._closed = False
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.adds = 0
        self.deduplicated = 0

    # ---- adding ----------------------------------------------------------------------------
    def add(self, key: Hashable, priority: int = HIGH, delay: float = 0.0) -> None:
        with self._cv:
            if delay > 0:
                when = time.monotonic() + delay
                if key in self._due and self._due[key] <= when:
                    return
                self._due[key] = when
                heapq.heappush(self._timers, (when, next(self._seq), key, priority))
                self._cv.notify()
                return
            self._add_locked(key, priority)

    def _add_locked(self, key: Hashable, priority: int) -> None:
        self.adds += 1
        if key in self._inflight:
            self._dirty[key] = min(priority, self._dirty.get(key, priority))
            return
        waiting = self._queued.get(key)
        if waiting is not None:
            self.deduplicated += 1
            if priority < waiting:  # lift it; the stale LOW entry is skipped when popped
                self._queued[key] = priority
                self._ready[priority].append(key)
                self._cv.notify()
            return
        self._queued[key] = priority
        self._ready[priority].append(key)
        self._cv.notify()

    # ---- taking ----------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next key to work on (now in flight), or None when closed or after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._closed:
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    when, _, key, prio = heapq.heappop(self._timers)
                    if self._due.get(key) == when:
                        del self._due[key]
                        self._add_locked(key, prio)
                for prio, ready in enumerate(self._ready):
                    while ready:
                        key = ready.popleft()
                        if self._queued.get(key) != prio:
                            continue  # lifted to a higher priority, or already taken
                        del self._queued[key]
                        self._inflight.add(key)
                        return key
                waits = [self._timers[0][0] - now] if self._timers else []
                if deadline is not None:
                    if now >= deadline:
                        return None
                    waits.append(deadline - now)
                self._cv.wait(min(waits) if waits else None)
            return None

    def done(self, key: Hashable) -> None:
        with self._cv:
            self._inflight.discard(key)
            prio = self._dirty.pop(key, None)
            if prio is not None:
                self._add_locked(key, prio)

    # ---- failures --------------------------------------------------------------------------
    def backoff(self, key: Hashable) -> float:
        """Delay before retrying a failed key: base·2^n with jitter, capped; n counts consecutive failures."""
        with self._cv:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        delay = min(self.backoff_cap, self.backoff_base * float(2 ** min(n, 30)))
        return delay * random.uniform(0.5, 1.0)

    def failures(self, key: Hashable) -> int:
        with self._cv:
            return self._failures.get(key, 0)

    def forget_failures(self, key: Hashable) -> None:
        with self._cv:
            self._failures.pop(key, None)

    def forget(self, key: Hashable) -> None:
        """Drop a deleted object's timers and failure count (a stale timer entry is skipped)."""
        with self._cv:
            self._due.pop(key, None)
            self._failures.pop(key, None)

    # ---- state -----------------------------------------------------------------------------
    def depth(self) -> int:
        with self._cv:
            return len(self._queued)

    def pending_timers(self) -> int:
        with self._cv:
            return len(self._due)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
