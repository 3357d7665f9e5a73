"""A namespace's gate-image allow-list cannot be bypassed.

The namespace's gate-policy ConfigMap lists the image prefixes gate Jobs may run
(`data.allowedImages`). alice (who may create Jobs, so passes the confused-deputy rule) tries to run
another image as a gate: refused at admission naming the field (agentops-gate-images reads the
ConfigMap as its params). A task written before the list existed, and a default gate, are stopped by
the operator at the move: TransitionBlocked/ImageNotAllowed naming the field, and no Job.
"""

from __future__ import annotations

import json

import pytest

from .kubeutil import apply, kget, kubectl
from .taskutil import EDITOR, blocked, phase_is, task

pytestmark = [pytest.mark.e2e, pytest.mark.kwok]
ALLOWED = "registry.example/ci/"


def gated(image: str, transition: str = "InProgress->Review") -> str:
    return f"""  gates:
  - transition: {transition}
    gates:
    - name: check
      type: Job
      job: {{image: "{image}", command: [sh, -c, "true"]}}"""


def allow_list(ns: str) -> None:
    apply(f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: gate-policy
  namespace: {ns}
  labels: {{agentops.dev/gate-policy: "true"}}
data:
  allowedImages: |
    # the CI images only
    {ALLOWED}
""")


def jobs(ns: str, task_name: str) -> list[str]:
    out = kubectl("get", "jobs", "-n", ns, "-l", f"agentops.dev/task={task_name}", "-o", "name").stdout
    return out.split()


def move(ns: str, name: str, phase: str) -> None:
    kubectl("patch", "agenttask", name, "-n", ns, "--type=merge", "-p",
            json.dumps({"spec": {"requestedPhase": phase, "by": EDITOR}}), as_user=EDITOR)


def test_gate_images_outside_the_namespace_allow_list_never_run(team: str, operator) -> None:
    ns = team
    # Written before the namespace had an allow-list: admission had nothing to check it against.
    task(ns, "early", gated("evil.example/miner:1"))
    allow_list(ns)

    # The attack at admission: a gate image outside the list, on a new task and on an existing one.
    proc = apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: miner, namespace: {ns}}}
spec:
  title: miner
  assignee: dev-1
{gated("evil.example/miner:1")}
""", as_user=EDITOR, check=False)
    assert proc.returncode != 0, "a gate image outside the allow-list was accepted"
    assert "agentops-gate-images" in proc.stderr and "spec.gates[].gates[].job.image" in proc.stderr, proc.stderr
    assert "evil.example/miner:1" in proc.stderr and ALLOWED in proc.stderr, proc.stderr
    # A prefix look-alike is no better, nor is an image left to the default (busybox).
    for image in ("registry.example/ci-evil/x:1", "registry.example/ci"):
        proc = kubectl("patch", "agenttask", "early", "-n", ns, "--type=json", "-p", json.dumps(
            [{"op": "replace", "path": "/spec/gates/0/gates/0/job/image", "value": image}]),
            as_user=EDITOR, check=False)
        assert proc.returncode != 0 and "spec.gates[].gates[].job.image" in proc.stderr, proc.stderr
    # An allowed image is accepted.
    task(ns, "ci", gated(f"{ALLOWED}check:1"))

    # The operator: the early task's gate may not run; the move is blocked naming the field, no Job.
    phase_is(ns, "early", "Assigned")
    move(ns, "early", "InProgress")
    phase_is(ns, "early", "InProgress")
    kubectl("patch", "agenttask", "early", "-n", ns, "--type=merge", "-p",
            json.dumps({"spec": {"requestedPhase": "Review", "by": EDITOR, "output": "pr/1"}}), as_user=EDITOR)
    cond = blocked(ns, "early", "ImageNotAllowed")
    assert cond["message"].startswith("spec.gates[0].gates[0].job.image: image evil.example/miner:1 is not allowed"), \
        cond["message"]
    assert "gate-policy" in cond["message"] and ALLOWED in cond["message"]
    assert kget("agenttask", "early", ns)["status"]["phase"] == "InProgress"
    assert jobs(ns, "early") == []

    # A default gate (the deliverable check, busybox) is held to the same list.
    task(ns, "plain")
    phase_is(ns, "plain", "Assigned")
    move(ns, "plain", "InProgress")
    phase_is(ns, "plain", "InProgress")
    kubectl("patch", "agenttask", "plain", "-n", ns, "--type=merge", "-p",
            json.dumps({"spec": {"requestedPhase": "Review", "by": EDITOR, "output": "pr/2"}}), as_user=EDITOR)
    cond = blocked(ns, "plain", "ImageNotAllowed")
    assert "gate deliverable" in cond["message"] and "busybox:1.36" in cond["message"], cond["message"]
    assert jobs(ns, "plain") == []

    # The allowed gate runs (the list restricts, it does not stop gates altogether).
    phase_is(ns, "ci", "Assigned")
    move(ns, "ci", "InProgress")
    phase_is(ns, "ci", "InProgress")
    kubectl("patch", "agenttask", "ci", "-n", ns, "--type=merge", "-p",
            json.dumps({"spec": {"requestedPhase": "Review", "by": EDITOR, "output": "pr/3"}}), as_user=EDITOR)
    phase_is(ns, "ci", "Review")
    assert len(jobs(ns, "ci")) == 1
