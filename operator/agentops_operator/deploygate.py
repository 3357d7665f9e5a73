"""Deployed means rolled out: the Rollout gate of Done->Deployed and the undo watch after it. Pure.

A task names an Agent (``spec.deploy.agent``) and what it deploys (``image`` and/or ``version``, plus
optionally ``config`` keys). The Agent's revisions are recognised by their ControllerRevisions (pod
template and merged config), so the gate ignores rollouts of other images. The operator never writes
the Agent: GitOps (or the deploy Job) changes its spec, the Agent's rollout runs, and this module reads
the outcome from the Agent's typed status:

* ``evaluate`` (Done->Deployed): Passed when a matching revision is the Agent's stable revision and
  the Agent serves it (Healthy, or busy with an unrelated revision); Failed when the Agent rolled a
  matching revision back (its reason: AnalysisFailed, ProgressDeadlineExceeded, AbortedByUser,
  UndoneByUser); Running while a matching revision is being rolled out (step, weight, analysis);
  Pending until the change reaches the Agent.
* ``undone`` (after Deployed): the revision the task deployed was rolled back or undone -> the task
  goes RolledBack (a system move with the Agent's reason). A newer revision that became stable is
  not a rollback: the task stays Deployed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .lifecycle import Phase, transition_key
from .models.agent import AgentStatus
from .models.task import DeployRef, Gate, RolloutGateStatus

DEPLOY_KEY = transition_key(Phase.DONE, Phase.DEPLOYED)
ROLLOUT = "Rollout"
IMPLICIT_GATE = "rollout"
GateState = Literal["Pending", "Running", "Passed", "Failed"]
_VERSION_LABEL = "app.kubernetes.io/version"
_REVISION_LABEL = "agentops.dev/revision"


@dataclass(frozen=True)
class RevisionInfo:
    """What one Agent revision runs, from its ControllerRevision."""

    revision: str
    number: int
    image: str | None
    version: str | None
    config: Mapping[str, str] = field(default_factory=dict)


def revision_info(cr: Mapping[str, Any]) -> RevisionInfo | None:
    """A ControllerRevision of an Agent (``data.template``, ``data.config``) as a RevisionInfo."""
    meta = cr.get("metadata") or {}
    rev = (meta.get("labels") or {}).get(_REVISION_LABEL)
    if not rev:
        return None
    data = cr.get("data") or {}
    template = data.get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or [{}]
    labels = (template.get("metadata") or {}).get("labels") or {}
    config = data.get("config") or {}
    try:
        number = int(cr.get("revision") or 0)
    except (TypeError, ValueError):
        number = 0
    return RevisionInfo(rev, number, containers[0].get("image"), labels.get(_VERSION_LABEL) or None,
                        {str(k): str(v) for k, v in config.items()})


def matches(ref: DeployRef, info: RevisionInfo) -> bool:
    """The revision runs what the task deploys: same image and version where given, config keys equal."""
    if not (ref.image or ref.version):
        return False
    if ref.image and ref.image != info.image:
        return False
    if ref.version and ref.version != info.version:
        return False
    return all(info.config.get(k) == v for k, v in ref.config.items())


def with_rollout_gate(key: str, ref: DeployRef | None, gates: Sequence[Gate]) -> list[Gate]:
    """``spec.deploy.agent`` set: Done->Deployed gets a Rollout gate (last) unless one is declared."""
    out = list(gates)
    if key == DEPLOY_KEY and ref is not None and ref.agent and not any(g.type == ROLLOUT for g in out):
        out.append(Gate(name=IMPLICIT_GATE, type=ROLLOUT))
    return out


def missing_inputs(ref: DeployRef | None, gates: Iterable[Gate]) -> list[str]:
    """What a Rollout gate needs before it can run, named by field."""
    if not any(g.type == ROLLOUT for g in gates):
        return []
    missing = []
    if ref is None or not ref.agent:
        missing.append("spec.deploy.agent")
    if ref is None or not (ref.image or ref.version):
        missing.append("spec.deploy.version or spec.deploy.image")
    return missing


@dataclass(frozen=True)
class GateView:
    """The Rollout gate's verdict: state, message, and what the task's gate status shows."""

    state: GateState
    message: str
    rollout: RolloutGateStatus


def _what(ref: DeployRef) -> str:
    parts = [p for p in (ref.image, f"version {ref.version}" if ref.version else None) if p]
    if ref.config:
        parts.append("config " + ",".join(f"{k}={v}" for k, v in sorted(ref.config.items())))
    return " ".join(parts)


def _analysis(status: AgentStatus) -> str | None:
    run = status.analysis or status.last_analysis
    if run is None:
        return None
    return f"{run.phase.value if run.phase else 'Running'}: {run.message}".strip()[:1024]


def _ready(status: AgentStatus) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions)


def evaluate(agent: str, ref: DeployRef, status: AgentStatus | None,
             revisions: Sequence[RevisionInfo]) -> GateView:
    """The Rollout gate of Done->Deployed, from the Agent's status and its revisions."""
    what = _what(ref)
    if status is None:
        msg = f"spec.deploy.agent: Agent {agent} not found; waiting for it to serve {what}"
        return GateView("Pending", msg, RolloutGateStatus(agent=agent, summary="agent not found"))
    mine = {r.revision for r in revisions if matches(ref, r)}
    ro = status.rollout
    base = RolloutGateStatus(agent=agent, phase=status.phase, analysis=_analysis(status))
    stable = status.stable_revision
    rejected = ro.rejected_revision if ro.rejected_revision in mine and ro.reason else None
    if stable in mine and rejected is None and (status.phase == "Healthy" or (
            _ready(status) and status.desired_revision not in mine)):
        # Served as stable. While the spec asks for another revision, that rollout (in flight, or
        # rolled back) is unrelated to this task.
        view = base.model_copy(update={"revision": stable, "summary": f"serving {stable}"})
        return GateView("Passed", f"Agent {agent} serves {what} as stable revision {stable}", view)
    if rejected is not None:
        reason = ro.reason or "RolledBack"
        view = base.model_copy(update={"revision": rejected, "reason": reason,
                                       "summary": f"rolled back: {reason}"})
        return GateView("Failed", f"Agent {agent} rolled back revision {rejected} ({reason}): {ro.message}; "
                                  f"serving {stable}", view)
    target = ro.current_revision if ro.current_revision in mine else (
        status.desired_revision if status.desired_revision in mine else None)
    if target is not None:
        weight = status.canary_weight
        step = status.current_step
        index, count = status.current_step_index, status.step_count
        where = f"step {(index or 0) + 1}/{count} {step}" if step and count else (step or status.reason or "rolling")
        summary = f"{where}" + (f", weight {weight}%" if weight is not None else "")
        view = base.model_copy(update={"revision": target, "step": step, "step_index": index, "step_count": count,
                                       "weight": weight, "reason": status.reason, "summary": summary})
        detail = f"; analysis {view.analysis}" if view.analysis and status.analysis else ""
        return GateView("Running", f"Agent {agent} rolling out revision {target} ({summary}; {status.phase}: "
                                   f"{status.message or ''}){detail}", view)
    desired = next((r for r in revisions if r.revision == status.desired_revision), None)
    now = f"image {desired.image}" if desired else f"revision {status.desired_revision}"
    view = base.model_copy(update={"summary": "waiting for the change"})
    return GateView("Pending", f"waiting for Agent {agent} to roll out {what} (its spec asks for {now}; "
                               f"the change reaches it by GitOps or the deploy Job)", view)


@dataclass(frozen=True)
class DeployedThrough:
    """Which Agent revision a Deployed task went out with (from its history's Rollout gate)."""

    agent: str
    revision: str


def deployed_through(history: Sequence[Mapping[str, Any]]) -> DeployedThrough | None:
    """The Rollout gate result recorded with the task's move into Deployed, if any."""
    entry = next((h for h in reversed(history) if h.get("to") == Phase.DEPLOYED.value), None)
    if entry is None:
        return None
    for g in entry.get("gates") or []:
        ro = g.get("rollout") or {}
        if g.get("type") == ROLLOUT and g.get("state") == "Passed" and ro.get("agent") and ro.get("revision"):
            return DeployedThrough(str(ro["agent"]), str(ro["revision"]))
    return None


@dataclass(frozen=True)
class Undone:
    """The Agent moved away from the task's revision by a rollback or undo: why, for the system move."""

    reason: str
    message: str


def undone(through: DeployedThrough, status: AgentStatus | None,
           revisions: Sequence[RevisionInfo]) -> Undone | None:
    """Whether the revision a task deployed was rolled back or undone (None: still served, or superseded
    by a newer revision that became stable, or the Agent is gone -- nothing to say about it then)."""
    if status is None:
        return None
    ro, rev = status.rollout, through.revision
    if ro.rejected_revision == rev and ro.reason:
        # Recorded by the Agent (an undo in progress already counts: it will not serve rev again).
        back_to = ro.override_revision or status.stable_revision
        return Undone(ro.reason, f"Agent {through.agent} {ro.reason}: revision {rev} is not served "
                                 f"({ro.message}); serving {back_to}")
    if ro.override_revision and ro.override_revision != rev and status.stable_revision == rev:
        # An undo away from the stable rev is in progress (recorded when the Agent acknowledged it).
        return Undone(ro.reason or "UndoneByUser", f"Agent {through.agent} {ro.reason or 'UndoneByUser'}: "
                                                   f"going back from revision {rev} to {ro.override_revision}")
    numbers = {r.revision: r.number for r in revisions}
    stable = status.stable_revision
    if stable and stable != rev and rev in numbers and stable in numbers and numbers[stable] < numbers[rev]:
        # Went back in history (undo to an older revision), whatever the bookkeeping says now.
        return Undone(ro.reason or "UndoneByUser", f"Agent {through.agent} went back from revision {rev} "
                                                   f"(#{numbers[rev]}) to {stable} (#{numbers[stable]})")
    return None
