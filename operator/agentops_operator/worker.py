"""The worker library: what an agent process needs to take and carry its work.

An agent is any process (a pod, a sub-agent session, a laptop, another cluster) with the credentials
of its Agent's ServiceAccount ``agent-<name>`` (a token, e.g. ``kubectl create token agent-dev-1``)
or any kubeconfig allowed to act for it::

    from agentops_operator.worker import Worker, connect

    w = Worker("dev-1", namespace="team-a", api=connect())      # kubeconfig / in-cluster token
    w.start_heartbeat()                                          # renew the Lease "dev-1" (as kubelets do)
    for task in w.assigned_tasks(actionable=True):               # a watch, not a poll
        w.start(task)                                            # request InProgress
        ctx = w.context(task)                                    # outputs, notes, rejections so far
        w.note(task, "tests written")                            # progress note (annotation)
        if w.take_quota("tokens", 500).granted:
            w.submit(task, output="https://git.example/pr/7", notes="ready for review")  # Review

Every write is a read-modify-write with the object's resourceVersion (optimistic concurrency),
retried on 409 Conflict with a jittered backoff, and idempotent: asking for what is already asked
for writes nothing. The operator records phases; this library only *requests* them (spec), as
`kubectl agentops task move` does, with ``spec.by`` = the caller as the API server knows it.

RBAC: the ClusterRole ``agentops-agent`` bound in the namespace to ``agent-<name>`` (``kubectl
agentops init --agent <name>`` does it): tasks (get/list/watch/update/patch), quotas, its Agent
(read), its Lease (create/update; the admission policy ``agentops-agent-lease`` refuses any other).
An agent that rejects work in review needs ``approve`` too (``agentops-approver``).

Revisions and canaries: a worker in a pod of an Agent the operator runs knows its revision from
``AGENTOPS_AGENT_REVISION`` (set in the pod template; or pass ``revision=``). Every move it requests
also stamps the task with the annotation ``revision.agentops.dev/<agent>: <revision>`` (the admission
policy lets only the Agent's own ServiceAccount set it, on its own tasks): the ``tasks`` analysis
provider compares a canary revision's tasks with the stable revision's by it. While a canary is in
flight, the worker acts only on the tasks routed to its revision (``taskrouting``: the task uid's
bucket against ``status.canaryWeight`` of the Agent, read at most once a second), so both revisions
see comparable work; a task skipped for that reason is looked at again at its next change, or at the
next re-list when the Agent's routing changed (within the watch's 30 s timeout).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from . import GROUP, VERSION, names, quota_client, taskrouting
from .lifecycle import is_legal
from .quota_client import Grant
from .taskoutcomes import revision_annotation

if TYPE_CHECKING:
    from .tokenexport import TokenBudget

log = logging.getLogger(__name__)

TASKS = "agenttasks"
LEASE_LABEL = "agentops.dev/agent"
PROGRESS_ANNOTATION = "agentops.dev/progress"
HANDBACK_ANNOTATION = "agentops.dev/hand-back"
MAX_NOTES = 20
MAX_CONFLICTS = 50
DEFAULT_HEARTBEAT_SECONDS = 40
ROUTING_TTL = 1.0  # seconds an Agent status read for routing is reused
# Phases in which the holder must act next (when no move is pending): start, finish, rework,
# review, deploy. Review/Done are acted on by whoever holds that stage (qa / deploy agents).
ACTIONABLE = ("Assigned", "InProgress", "Rejected", "Review", "Done")


class WorkerError(RuntimeError):
    """A refusal the caller should see (RBAC, admission, a task that is not ours)."""


def connect(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An API client: in a pod the mounted ServiceAccount token, else the kubeconfig (KUBECONFIG)."""
    cfg = client.Configuration()
    try:
        if kubeconfig or context:
            raise config.ConfigException("kubeconfig requested")
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    return client.ApiClient(cfg)


def connect_token(server: str, token: str, ca_file: str | None = None) -> client.ApiClient:
    """An API client from a bearer token (e.g. `kubectl create token agent-<name>`)."""
    cfg = client.Configuration()
    cfg.host = server
    cfg.api_key = {"authorization": f"Bearer {token}"}
    if ca_file:
        cfg.ssl_ca_cert = ca_file
    return client.ApiClient(cfg)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Task:
    """A read-only view of an AgentTask as this agent sees it."""

    obj: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.obj.get("spec") or {})

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})

    @property
    def phase(self) -> str:
        return str(self.status.get("phase") or "Backlog")

    @property
    def requested(self) -> str:
        return str(self.spec.get("requestedPhase") or "Backlog")

    @property
    def assignee(self) -> str | None:
        return self.status.get("assignee")

    @property
    def stage(self) -> str | None:
        return self.status.get("stage")

    @property
    def pending(self) -> bool:
        """A move was requested and can still be recorded (gates running, awaiting approval...). A request
        the phase has overtaken (Done asked, then the review rejected it) is stale, not pending."""
        return self.requested != self.phase and is_legal(self.phase, self.requested)

    @property
    def blocked(self) -> dict[str, Any] | None:
        for c in self.status.get("conditions") or []:
            if c.get("type") == "TransitionBlocked" and c.get("status") == "True":
                return dict(c)
        return None


@dataclass(frozen=True)
class HandoffContext:
    """What earlier stages left for this one."""

    description: str
    outputs: list[str]
    notes: list[str]
    rejections: list[str]
    handoffs: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


class Worker:
    """One agent's connection to its Agent, its Lease and the tasks assigned to it."""

    def __init__(self, agent: str, namespace: str, api: client.ApiClient | None = None,
                 identity: str | None = None, revision: str | None = None) -> None:
        self.agent = agent
        # The Agent revision this process runs (a pod's template sets the env var); None: unknown.
        self.revision = revision if revision is not None else (os.environ.get(names.REVISION_ENV) or None)
        self._routing: tuple[float, dict[str, Any]] | None = None
        self.namespace = namespace
        self.api = api or connect()
        self.custom = client.CustomObjectsApi(self.api)
        self.leases = client.CoordinationV1Api(self.api)
        self.identity = identity or agent
        self._user: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.heartbeat_seconds = DEFAULT_HEARTBEAT_SECONDS

    # ---- identity ----------------------------------------------------------------------------

    @property
    def user(self) -> str:
        """The caller's username as the API server sees it (the `by` of every request)."""
        if self._user is None:
            review = client.AuthenticationV1Api(self.api).create_self_subject_review(
                client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"))
            self._user = str(review.status.user_info.username)
        return self._user

    # ---- registration and heartbeat -----------------------------------------------------------

    def register(self, role: str, capabilities: list[str] | None = None, max_concurrent: int | None = None,
                 heartbeat_timeout: int | None = None) -> dict[str, Any]:
        """Create the (external) Agent, or adopt it when it exists: the given fields are merged into its
        spec only if they differ. Creating needs rights on agents (a person's or an orchestrator's
        kubeconfig); an agent with only its ServiceAccount adopts an Agent registered for it."""
        spec: dict[str, Any] = {"role": role}
        if capabilities:
            spec["capabilities"] = sorted(set(capabilities))
        if max_concurrent is not None:
            spec["maxConcurrentTasks"] = max_concurrent
        if heartbeat_timeout is not None:
            spec["heartbeat"] = {"timeoutSeconds": heartbeat_timeout}
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Agent", "metadata": {"name": self.agent}, "spec": spec}
        try:
            obj = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "agents", body)
        except ApiException as exc:
            if exc.status not in (403, 409):
                raise
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "agents", self.agent)
            current = obj.get("spec") or {}
            diff = {k: v for k, v in spec.items() if current.get(k) != v}
            if diff:
                obj = self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "agents",
                                                                 self.agent, {"spec": diff})
        self.heartbeat_seconds = int(((obj.get("spec") or {}).get("heartbeat") or {}).get(
            "timeoutSeconds", self.heartbeat_seconds))
        return dict(obj)

    def load_agent(self) -> dict[str, Any]:
        """Read this Agent (heartbeat timeout); needs only `get agents`."""
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "agents", self.agent)
        self.heartbeat_seconds = int(((obj.get("spec") or {}).get("heartbeat") or {}).get(
            "timeoutSeconds", self.heartbeat_seconds))
        return dict(obj)

    def heartbeat(self) -> datetime:
        """Create or renew the Lease named after the Agent (resourceVersion-checked; retried on 409)."""
        for attempt in range(MAX_CONFLICTS):
            now = _now()
            try:
                lease = self.leases.read_namespaced_lease(self.agent, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                body = client.V1Lease(
                    metadata=client.V1ObjectMeta(name=self.agent, labels={LEASE_LABEL: self.agent}),
                    spec=client.V1LeaseSpec(holder_identity=self.identity, acquire_time=now, renew_time=now,
                                            lease_duration_seconds=self.heartbeat_seconds))
                try:
                    self.leases.create_namespaced_lease(self.namespace, body)
                    return now
                except ApiException as cexc:
                    if cexc.status != 409:
                        raise
                    continue
            lease.spec.renew_time = now
            lease.spec.lease_duration_seconds = self.heartbeat_seconds
            if lease.spec.holder_identity != self.identity:
                lease.spec.holder_identity = self.identity
                lease.spec.acquire_time = now
                lease.spec.lease_transitions = (lease.spec.lease_transitions or 0) + 1
            lease.metadata.labels = {**(lease.metadata.labels or {}), LEASE_LABEL: self.agent}
            try:
                self.leases.replace_namespaced_lease(self.agent, self.namespace, lease)
                return now
            except ApiException as exc:
                if exc.status != 409:
                    raise
                time.sleep(random.uniform(0, min(1.0, 0.05 * 2 ** attempt)))
        raise WorkerError(f"lease {self.namespace}/{self.agent}: gave up after {MAX_CONFLICTS} conflicts")

    def start_heartbeat(self, interval: float | None = None) -> threading.Thread:
        """Renew the Lease in a daemon thread every `interval` (default: a quarter of the timeout, as
        kubelets renew node leases every 10 s of 40 s). The first renewal happens before returning."""
        every = interval or max(0.5, self.heartbeat_seconds / 4)
        self.heartbeat()

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.heartbeat()
                except Exception as exc:  # keep beating through API hiccups
                    log.warning("heartbeat of %s failed: %s", self.agent, exc)

        self._beat = threading.Thread(target=loop, name=f"heartbeat-{self.agent}", daemon=True)
        self._beat.start()
        return self._beat

    def stop(self) -> None:
        """Stop the heartbeat and any watch loop of this worker."""
        self._stop.set()

    # ---- finding work --------------------------------------------------------------------------

    def tasks(self) -> list[Task]:
        """Tasks assigned to this agent now (one LIST)."""
        res = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, TASKS)
        return [Task(t) for t in res.get("items", []) if (t.get("status") or {}).get("assignee") == self.agent]

    def is_actionable(self, task: Task) -> bool:
        """Ours, in a phase where the holder acts, no move of ours still pending, and (during a canary)
        routed to this worker's revision."""
        return task.assignee == self.agent and task.phase in ACTIONABLE and not task.pending \
            and self.routed_here(task)

    def agent_status(self, max_age: float = ROUTING_TTL) -> dict[str, Any]:
        """The Agent's status (for routing), read at most once per ``max_age`` seconds."""
        now = time.monotonic()
        if self._routing is None or now - self._routing[0] > max_age:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "agents", self.agent)
            self._routing = (now, dict(obj.get("status") or {}))
        return self._routing[1]

    def _routing_key(self) -> tuple[Any, ...]:
        st = self.agent_status()
        return st.get("stableRevision"), st.get("currentRevision"), st.get("canaryWeight")

    def stamped(self, task: Task) -> str | None:
        """The revision of this Agent that last worked on the task (its annotation), if any."""
        value = (task.obj["metadata"].get("annotations") or {}).get(revision_annotation(self.agent))
        return str(value) if value else None

    def routed_here(self, task: Task) -> bool:
        """Whether this worker's revision should act on the task (always, without a revision or canary)."""
        if not self.revision:
            return True
        uid = str(task.obj["metadata"].get("uid") or task.name)
        return taskrouting.mine(uid, self.stamped(task), self.agent_status(), self.revision)

    def assigned_tasks(self, actionable: bool = True, timeout: float | None = None) -> Iterator[Task]:
        """Yield tasks assigned to this agent as they appear or change: a LIST, then a WATCH from its
        resourceVersion (re-listed when the watch expires with 410 Gone). With `actionable`, only tasks
        that need this agent's next step. Ends at `timeout` seconds or when `stop()` is called."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: dict[str, str] = {}  # name -> resourceVersion already yielded

        def wanted(obj: dict[str, Any]) -> Task | None:
            t = Task(obj)
            if t.assignee != self.agent or (actionable and not self.is_actionable(t)):
                return None
            if actionable:
                # Events queue up while the caller works: confirm on the current object, so a stale
                # event never repeats a step that was already taken.
                try:
                    t = self.get(t.name)
                except ApiException as exc:
                    if exc.status == 404:
                        return None
                    raise
                if not self.is_actionable(t):
                    return None
            rv = str(t.obj["metadata"].get("resourceVersion"))
            if seen.get(t.name) == rv:
                return None
            seen[t.name] = rv
            return t

        while not self._stop.is_set():
            res = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, TASKS)
            for obj in res.get("items", []):
                t = wanted(obj)
                if t:
                    yield t
            rv = res["metadata"]["resourceVersion"]
            routing = self._routing_key() if self.revision else None
            w = watch.Watch()
            try:
                while not self._stop.is_set():
                    if self.revision and self._routing_key() != routing:
                        break  # the canary moved on: tasks skipped for another revision may be ours now
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return
                    server_timeout = int(min(left, 30)) + 1 if left is not None else 30
                    for ev in w.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                                       TASKS, resource_version=rv, timeout_seconds=server_timeout,
                                       allow_watch_bookmarks=True):
                        obj = ev["object"]
                        rv = obj["metadata"].get("resourceVersion", rv)
                        if ev["type"] in ("ADDED", "MODIFIED"):
                            t = wanted(obj)
                            if t:
                                yield t
                        if self._stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                            return
            except ApiException as exc:
                if exc.status != 410:
                    raise
                continue  # the watch window expired: list again
            finally:
                w.stop()

    def next_task(self, timeout: float | None = None) -> Task | None:
        """The next task that needs this agent (waits on a watch), or None after `timeout`."""
        for t in self.assigned_tasks(actionable=True, timeout=timeout):
            return t
        return None

    def get(self, task: Task | str) -> Task:
        name = task if isinstance(task, str) else task.name
        return Task(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, TASKS, name))

    def wait_for(self, task: Task | str, predicate: Callable[[Task], bool], timeout: float = 60) -> Task:
        """Watch one task until `predicate` holds (e.g. lambda t: t.phase == "Review")."""
        name = task if isinstance(task, str) else task.name
        deadline = time.monotonic() + timeout
        current = self.get(name)
        while not predicate(current):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"task {name}: condition not met within {timeout}s (phase {current.phase})")
            w = watch.Watch()
            try:
                for ev in w.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, TASKS,
                                   field_selector=f"metadata.name={name}",
                                   resource_version=current.obj["metadata"]["resourceVersion"],
                                   timeout_seconds=max(1, int(left))):
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        current = Task(ev["object"])
                        if predicate(current):
                            break
            except ApiException as exc:
                if exc.status != 410:
                    raise
                current = self.get(name)
            finally:
                w.stop()
        return current

    # ---- acting on a task -----------------------------------------------------------------------

    def _update(self, task: Task | str, mutate: Callable[[dict[str, Any]], bool]) -> Task:
        """GET, mutate (returns False when nothing needs writing), PUT with the resourceVersion; on 409
        read again and re-apply. Admission refusals raise WorkerError with the server's message."""
        name = task if isinstance(task, str) else task.name
        for attempt in range(MAX_CONFLICTS):
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, TASKS, name)
            if not mutate(obj):
                return Task(obj)
            try:
                return Task(self.custom.replace_namespaced_custom_object(GROUP, VERSION, self.namespace, TASKS,
                                                                         name, obj))
            except ApiException as exc:
                if exc.status == 409:
                    time.sleep(random.uniform(0, min(1.0, 0.05 * 2 ** attempt)))
                    continue
                if exc.status in (400, 403, 422):
                    try:
                        message = json.loads(exc.body or "{}").get("message") or exc.reason
                    except ValueError:
                        message = exc.reason
                    raise WorkerError(f"task {name}: {message}") from exc
                raise
        raise WorkerError(f"task {name}: gave up after {MAX_CONFLICTS} conflicts")

    def _own(self, obj: dict[str, Any]) -> None:
        assignee = (obj.get("status") or {}).get("assignee")
        if assignee != self.agent:
            raise WorkerError(f"task {obj['metadata']['name']} is assigned to {assignee or 'nobody'}, "
                              f"not {self.agent}")

    def request(self, task: Task | str, phase: str, output: str | None = None, notes: str | None = None,
                deploy: dict[str, Any] | None = None) -> Task:
        """Request a move (idempotent: the same request again writes nothing)."""
        user = self.user

        def mutate(obj: dict[str, Any]) -> bool:
            self._own(obj)
            spec = obj["spec"]
            want: dict[str, Any] = {"requestedPhase": phase, "by": user}
            if output is not None:
                want["output"] = output
            if notes is not None:
                want["notes"] = notes
            if deploy is not None:
                want["deploy"] = {**(spec.get("deploy") or {}), **deploy}
            stamped = self._stamp(obj)
            if all(spec.get(k) == v for k, v in want.items()):
                return stamped
            spec.update(want)
            return True

        return self._update(task, mutate)

    def _stamp(self, obj: dict[str, Any]) -> bool:
        """Mark the task as worked on by this worker's revision (True when that changed the object)."""
        if not self.revision:
            return False
        ann = obj["metadata"].setdefault("annotations", {})
        key = revision_annotation(self.agent)
        if ann.get(key) == self.revision:
            return False
        ann[key] = self.revision
        return True

    def start(self, task: Task | str) -> Task:
        """Start (or, after a rejection, restart) the work: request InProgress."""
        return self.request(task, "InProgress")

    def submit(self, task: Task | str, output: str, notes: str | None = None) -> Task:
        """Hand in the deliverable: request Review with spec.output (the deliverable gate checks it)."""
        return self.request(task, "Review", output=output, notes=notes)

    def request_done(self, task: Task | str, notes: str | None = None) -> Task:
        """A reviewing agent asks for Done; the approval gate then waits for its approvers."""
        return self.request(task, "Done", notes=notes)

    def deploy(self, task: Task | str, version: str | None = None, image: str | None = None,
               command: list[str] | None = None) -> Task:
        """Request Deployed with what to deploy (the deploy gate runs spec.deploy.command as a Job)."""
        ref: dict[str, Any] = {k: v for k, v in (("version", version), ("image", image)) if v}
        if command:
            ref["command"] = command
        return self.request(task, "Deployed", deploy=ref)

    def reject(self, task: Task | str, reason: str, transition: str = "Review->Done") -> Task:
        """Reject the work under review (needs the approve verb): an approval entry with decision
        Rejected plus the request of the move it decides, in one write; the operator moves the task to
        Rejected and hands it back with the reason."""
        return self._decide(task, "Rejected", reason, transition)

    def approve(self, task: Task | str, reason: str = "", transition: str = "Review->Done") -> Task:
        """Approve (needs the approve verb) and request the move, in one write."""
        return self._decide(task, "Approved", reason, transition)

    def _decide(self, task: Task | str, decision: str, reason: str, transition: str) -> Task:
        user = self.user
        src, dst = transition.split("->")
        decision_id = f"{int(time.time() * 1000)}-{random.getrandbits(32):08x}"

        def mutate(obj: dict[str, Any]) -> bool:
            spec = obj["spec"]
            approvals = spec.setdefault("approvals", [])
            if any(a.get("id") == decision_id for a in approvals):
                return False  # written by an earlier attempt whose response was lost
            approvals.append({"id": decision_id, "approver": user, "decision": decision, "reason": reason,
                              "transition": transition})
            if (obj.get("status") or {}).get("phase") == src and spec.get("requestedPhase") != dst:
                spec["requestedPhase"] = dst
                spec["by"] = user
            return True

        return self._update(task, mutate)

    def note(self, task: Task | str, text: str) -> Task:
        """A progress note: kept (last 20) in the annotation agentops.dev/progress as JSON, so it does
        not bump the task's generation or disturb a pending move."""
        user = self.user
        entry = {"at": _iso(_now()), "by": user, "note": text[:1024]}

        def mutate(obj: dict[str, Any]) -> bool:
            self._own(obj)
            ann = obj["metadata"].setdefault("annotations", {})
            notes = json.loads(ann.get(PROGRESS_ANNOTATION) or "[]")
            if notes and notes[-1].get("note") == entry["note"] and notes[-1].get("by") == user:
                return False
            ann[PROGRESS_ANNOTATION] = json.dumps([*notes, entry][-MAX_NOTES:])
            return True

        return self._update(task, mutate)

    def progress(self, task: Task | str) -> list[dict[str, Any]]:
        t = task if isinstance(task, Task) else self.get(task)
        return list(json.loads((t.obj["metadata"].get("annotations") or {}).get(PROGRESS_ANNOTATION) or "[]"))

    def hand_back(self, task: Task | str, reason: str) -> Task:
        """Give the task back to the queue with a reason (e.g. the agent cannot do it). The operator
        reassigns it to another Ready agent of the stage's role and records a handoff with the reason;
        idempotent per (agent, reason)."""
        user = self.user

        def mutate(obj: dict[str, Any]) -> bool:
            self._own(obj)
            ann = obj["metadata"].setdefault("annotations", {})
            current = json.loads(ann.get(HANDBACK_ANNOTATION) or "{}")
            if current.get("agent") == self.agent and current.get("reason") == reason:
                return False
            ann[HANDBACK_ANNOTATION] = json.dumps({"id": f"{int(time.time() * 1000)}", "agent": self.agent,
                                                   "by": user, "reason": reason[:1024], "at": _iso(_now())})
            return True

        return self._update(task, mutate)

    fail = hand_back

    def context(self, task: Task | str) -> HandoffContext:
        """Previous outputs, notes and rejection reasons (from status.handoffs and status.history)."""
        t = task if isinstance(task, Task) else self.get(task)
        st = t.status
        handoffs = list(st.get("handoffs") or [])
        history = list(st.get("history") or [])
        outputs = list(dict.fromkeys([o for h in handoffs for o in h.get("outputs") or []]
                                     + [h["output"] for h in history if h.get("output")]))
        notes = list(dict.fromkeys([h["notes"] for h in handoffs if h.get("notes")]
                                   + [h["notes"] for h in history if h.get("notes")]))
        # Handoffs carry them as "<approver>: <reason>"; the approvals seen are the fallback.
        rejections = list(dict.fromkeys([r for h in handoffs for r in h.get("rejections") or []])) or \
            list(dict.fromkeys(f"{a.get('approver')}: {a.get('reason')}" for a in st.get("approvals") or []
                               if a.get("decision") == "Rejected" and a.get("reason")))
        return HandoffContext(str(t.spec.get("description") or ""), outputs, notes, rejections, handoffs, history)

    # ---- quota ----------------------------------------------------------------------------------

    def take_quota(self, name: str, amount: int = 1) -> Grant:
        """Take `amount` units of Quota `name` atomically (see quota_client.consume)."""
        return quota_client.consume(self.custom, self.namespace, name, amount, by=self.user)

    def token_budget(self, interval_seconds: float = 30.0) -> TokenBudget:
        """LLM token usage reported with OpenTelemetry (GenAI conventions), charged to this namespace's
        `tokens` and `tokens/<model>` Quotas as this agent (tokenexport; needs the `otel` extra)."""
        from .tokenexport import TokenBudget

        return TokenBudget(self, interval_seconds=interval_seconds)
