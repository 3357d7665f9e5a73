"""`agentops_task_transitions_total` counts recorded moves, not attempts.

Two operators race on one namespace (no leader election), so most moves are attempted by both and
one of the two status writes fails with 409; moves are also blocked (illegal request), refused
(quota exceeded, a failed gate) and retried (spec.retry). The sum of both operators' counters, by
(from, to), must equal what the tasks' histories recorded.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest

from .kubeutil import ROOT, OperatorProcess, apply, kget, kubectl, private_namespace, wait_for
from .taskutil import blocked, phase_is

pytestmark = [pytest.mark.e2e, pytest.mark.kwok]
PLAN = ["Assigned", "InProgress", "Review", "Done"]
SAMPLE = re.compile(r'^(agentops_task_transitions_total|agentops_reconcile_total)\{([^}]*)\} ([0-9.e+]+)$')


@pytest.fixture
def metrics_ns() -> Iterator[str]:
    # Outside the session prefix: only this test's two operators watch it.
    yield from private_namespace("metrics")


def scrape(op: OperatorProcess) -> tuple[Counter[tuple[str, str]], int]:
    """(recorded moves by (from, to), task reconciles that ended in a 409) from the operator's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    moves: Counter[tuple[str, str]] = Counter()
    conflicts = 0
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if m.group(1) == "agentops_task_transitions_total":
            moves[(labels["from_phase"], labels["to_phase"])] += int(float(m.group(3)))
        elif labels.get("kind") == "agenttasks" and labels.get("outcome") == "conflict":
            conflicts += int(float(m.group(3)))
    return moves, conflicts


def move(ns: str, name: str, phase: str, user: str, **extra: object) -> None:
    patch = {"spec": {"requestedPhase": phase, "by": user, **extra}}
    kubectl("patch", "agenttask", name, "-n", ns, "--type=merge", "-p", json.dumps(patch))


def test_transitions_metric_equals_recorded_history_with_refusals_retries_and_conflicts(metrics_ns: str) -> None:
    ns = metrics_ns
    ops = []
    for ident in ("a", "b"):
        log = ROOT / ".cluster" / f"operator-metrics-{ident}.log"
        log.write_bytes(b"")
        ops.append(OperatorProcess(log, extra_args=("--namespace", ns, "--operator-namespace", ns)))
    user = json.loads(kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]["username"]
    try:
        for op in ops:
            op.start()
        apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: dev-1, namespace: {ns}}}
spec: {{role: developer, image: registry.example/dev:1, maxConcurrentTasks: 100}}
---
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: publish, namespace: {ns}}}
spec: {{resource: publish, limit: 0, window: daily, enforcement: Hard}}
""")
        plain = [f"p{i}" for i in range(1, 6)]
        for name in plain:
            apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: {name}, namespace: {ns}}}
spec:
  title: {name}
  assignee: dev-1
  gates: [{{transition: InProgress->Review, gates: []}}, {{transition: Review->Done, gates: []}}]
""")
        # Blocked for missing input; refused by the quota (limit 0); a gate that fails until fixed and retried.
        apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: p0, namespace: {ns}}}
spec:
  title: p0
  assignee: dev-1
  gates:
  - transition: InProgress->Review
    gates: [{{name: needs-output, type: Job, requires: [output]}}]
---
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: quota, namespace: {ns}}}
spec:
  title: quota
  assignee: dev-1
  costs: [{{resource: publish, amount: 1, phase: Review}}]
  gates: [{{transition: InProgress->Review, gates: []}}]
---
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: gated, namespace: {ns}}}
spec:
  title: gated
  assignee: dev-1
  gates:
  - transition: InProgress->Review
    gates:
    - name: check
      type: Job
      job: {{podAnnotations: {{"agentops.dev/kwok-fail": "true"}}}}
""")
        everyone = ["p0", *plain, "quota", "gated"]
        for name in everyone:
            phase_is(ns, name, "Assigned")
        for phase in PLAN[1:]:
            for name in plain:
                move(ns, name, phase, user)
            for name in plain:
                phase_is(ns, name, phase)
        move(ns, "p0", "InProgress", user)
        phase_is(ns, "p0", "InProgress")
        move(ns, "p0", "Review", user)
        blocked(ns, "p0", "MissingInput")
        kubectl("patch", "agenttask", "p0", "-n", ns, "--type=merge", "-p", '{"spec":{"output":"pr/1"}}')
        phase_is(ns, "p0", "Review")
        move(ns, "quota", "InProgress", user)
        phase_is(ns, "quota", "InProgress")
        move(ns, "quota", "Review", user)
        blocked(ns, "quota", "QuotaExceeded")
        kubectl("patch", "quotas.agentops.dev", "publish", "-n", ns, "--type=merge", "-p", '{"spec":{"limit":5}}')
        phase_is(ns, "quota", "Review")
        move(ns, "gated", "InProgress", user)
        phase_is(ns, "gated", "InProgress")
        move(ns, "gated", "Review", user)
        blocked(ns, "gated", "GateFailed")
        kubectl("patch", "agenttask", "gated", "-n", ns, "--type=json", "-p", json.dumps([
            {"op": "replace", "path": "/spec/gates/0/gates/0/job/podAnnotations", "value": {}},
            {"op": "replace", "path": "/spec/retry", "value": 1}]))
        phase_is(ns, "gated", "Review")

        recorded: Counter[tuple[str, str]] = Counter()
        for name in everyone:
            for h in kget("agenttask", name, ns)["status"]["history"]:
                recorded[(h["from"], h["to"])] += 1

        def counted() -> tuple[Counter[tuple[str, str]], int]:
            total: Counter[tuple[str, str]] = Counter()
            conflicts = 0
            for op in ops:
                moves, c = scrape(op)
                total += moves
                conflicts += c
            return total, conflicts

        with contextlib.suppress(AssertionError):  # the counters move right after the status write
            wait_for(lambda: counted()[0] == recorded, timeout=10, what="the counters to equal the recorded moves")
        total, conflicts = counted()
        print(f"\nrecorded {sum(recorded.values())} moves; counted {sum(total.values())}; 409s {conflicts}")
        assert sum(recorded.values()) == 5 * 4 + 3 * 3
        assert total == recorded, (total, recorded)
        assert conflicts > 0, "the two operators never raced on a status write: no 409 was exercised"
    finally:
        for op in ops:
            op.stop()
