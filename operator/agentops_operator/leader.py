"""Leader election on a coordination.k8s.io/v1 Lease: one active operator among replicas.

Why a Lease and not kopf's peering: kopf's peering is priority-based. A peer pauses while it sees a
peer of *higher* priority; peers of *equal* priority all pause with a warning ("possibly conflicting
operators with the same priority"), so two replicas of one Deployment (same priority) would both
freeze. A Lease gives a real mutual exclusion with the API server's optimistic concurrency
(resourceVersion), is what Kubernetes' own controllers use, and needs no extra CRDs.

The protocol (the same rules as client-go's leader election):
- A candidate takes the Lease when it has no holder, or when the record has not changed for
  `lease_duration` seconds *as observed on the candidate's own clock* (no clock comparison between
  machines). Every write carries the resourceVersion it read: of two racing candidates one wins.
- The holder renews every `retry_period`. If it cannot renew for `renew_deadline` (< lease_duration),
  or sees another holder, it exits the process at once (`os._exit`): a new process starts as a
  standby. It stops acting before any standby may take over.
- On a clean shutdown the holder releases the Lease (empty holder), so the standby takes over within
  one retry period instead of waiting for expiry.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)
TIMEOUT = (3.0, 5.0)  # connect, read: one request never outlasts the renew deadline


def default_identity() -> str:
    """The pod name (POD_ID, from the downward API), else host and pid: unique per process."""
    return os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not (0 < self.retry_period < self.renew_deadline < self.lease_duration):
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration; got "
                f"{self.retry_period} < {self.renew_deadline} < {self.lease_duration}"
            )


class LeaseElector:
    """Acquire (blocking), then renew in a daemon thread; `on_lost` runs if leadership is lost."""

    def __init__(self, cfg: LeaseConfig, api: client.ApiClient, on_lost: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.coord = client.CoordinationV1Api(api)
        self.on_lost = on_lost or _exit_on_loss
        self._observed: tuple[str, float] | None = None  # (record key, monotonic time first seen)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.acquired_at: float | None = None

    # -- API ---------------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any] | None:
        try:
            resp = self.coord.read_namespaced_lease(
                self.cfg.name, self.cfg.namespace, _preload_content=False, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(json.loads(resp.data))

    def _spec(self, transitions: int, acquire_time: str | None) -> dict[str, Any]:
        now = _now()
        return {
            "holderIdentity": self.cfg.identity,
            "leaseDurationSeconds": max(1, round(self.cfg.lease_duration)),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One round. True when this process holds the Lease afterwards."""
        lease = self._read()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace},
                "spec": self._spec(0, None),
            }
            try:
                self.coord.create_namespaced_lease(self.cfg.namespace, body, _request_timeout=TIMEOUT)
            except ApiException as exc:
                if exc.status == 409:  # another candidate created it first
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        mine = holder == self.cfg.identity
        if holder and not mine and not self._expired(lease):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        lease["spec"] = self._spec(transitions, spec.get("acquireTime") if mine else None)
        try:
            self.coord.replace_namespaced_lease(self.cfg.name, self.cfg.namespace, lease, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 409:  # the record changed since we read it: someone else wrote first
                return False
            raise
        return True

    def _expired(self, lease: dict[str, Any]) -> bool:
        # The record's identity: any renewal changes renewTime and resourceVersion.
        spec = lease.get("spec") or {}
        key = f"{lease['metadata'].get('resourceVersion')}/{spec.get('holderIdentity')}/{spec.get('renewTime')}"
        now = time.monotonic()
        if self._observed is None or self._observed[0] != key:
            self._observed = (key, now)
            return False
        duration = float(spec.get("leaseDurationSeconds") or self.cfg.lease_duration)
        return now - self._observed[1] > duration

    # -- lifecycle ---------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Block until this process is the leader, then renew in the background."""
        announced = False
        while True:
            try:
                if self.try_acquire_or_renew():
                    break
                if not announced:
                    log.info("standby: lease %s/%s is held by another replica; waiting",
                             self.cfg.namespace, self.cfg.name)
                    announced = True
            except ApiException as exc:
                if exc.status in (401, 403):
                    raise
                log.warning("leader election: %s %s; retrying", exc.status, exc.reason)
            except OSError as exc:  # connection refused/reset, timeouts
                log.warning("leader election: %s; retrying", exc)
            time.sleep(self.cfg.retry_period)
        self.acquired_at = time.monotonic()
        log.info("leader: acquired lease %s/%s as %s", self.cfg.namespace, self.cfg.name, self.cfg.identity)
        self._thread = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.cfg.retry_period):
            try:
                if self.try_acquire_or_renew():
                    last_ok = time.monotonic()
                    continue
                reason = "another replica holds the lease"
            except Exception as exc:  # any failure counts against the renew deadline
                reason = f"renewal failed: {exc}"
                if time.monotonic() - last_ok < self.cfg.renew_deadline:
                    log.warning("leader election: %s; retrying", reason)
                    continue
            if self._stop.is_set():
                return
            self.on_lost(reason)
            return

    def release(self) -> None:
        """Stop renewing and hand the Lease over at once (empty holder)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.cfg.retry_period + TIMEOUT[1])
        try:
            lease = self._read()
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.cfg.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["leaseDurationSeconds"] = 1
                lease["spec"]["renewTime"] = _now()
                self.coord.replace_namespaced_lease(self.cfg.name, self.cfg.namespace, lease, _request_timeout=TIMEOUT)
                log.info("leader: released lease %s/%s", self.cfg.namespace, self.cfg.name)
        except (ApiException, OSError) as exc:
            log.warning("leader election: could not release the lease (%s); it expires by itself", exc)


def _exit_on_loss(reason: str) -> None:
    # Stop acting at once: the process restarts (kubelet, or its supervisor) as a standby.
    log.error("leader election lost (%s): exiting so this replica restarts as a standby", reason)
    logging.shutdown()
    os._exit(3)
