"""Two operator replicas on one namespace, one Lease: exactly one reconciles; SIGKILL hands over.

Both processes run with the defaults the chart uses (lease 10 s, renew deadline 7 s, retry 2 s), so
the takeover time measured here is the one a user gets. It is written to bench/results/leader.json.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .kubeutil import ROOT, OperatorProcess, apply, kget, kubectl, private_namespace, wait_for
from .taskutil import EDITOR, cli, make_team, phase_is, task

pytestmark = pytest.mark.kwok  # delayed gate Job pods
LEASE = "agentops-le"
RESULT = ROOT / "bench" / "results" / "leader.json"
# No gates until Done; Done -> Deployed runs a deploy gate Job (delayed by kwok) and commits a Quota unit.
GATED = """  gates:
  - {transition: InProgress->Review, gates: []}
  - {transition: Review->Done, gates: []}
  - transition: Done->Deployed
    gates:
    - name: deploy
      type: Job
      requires: [deployRef]
      job: {podAnnotations: {"agentops.dev/kwok-delay": "%s"}}
  costs:
  - {resource: publish, amount: 1, phase: Deployed}
"""


@pytest.fixture
def le_ns() -> Iterator[str]:
    # Outside the session prefix: only this test's two operators watch it.
    yield from private_namespace("le")


def replica(ns: str, ident: str) -> OperatorProcess:
    log = ROOT / ".cluster" / f"operator-le-{ident}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_bytes(b"")
    return OperatorProcess(log, extra_args=(
        "--namespace", ns, "--operator-namespace", ns, "--leader-elect", "--leader-elect-lease-name", LEASE,
        "--identity", ident,
    ))


def holder(ns: str) -> str | None:
    proc = kubectl("get", "lease", LEASE, "-n", ns, "-o", "json", check=False)
    return json.loads(proc.stdout)["spec"].get("holderIdentity") if proc.returncode == 0 else None


def reconciling(op: OperatorProcess) -> bool:
    # The kopf start-up hook logs this line; a standby never gets that far.
    return "agentops operator started" in op.log_path.read_text(errors="replace")


def to_done(ns: str, name: str, delay: str) -> None:
    task(ns, name, GATED % delay)
    phase_is(ns, name, "Assigned")
    for step in ("InProgress", "Review", "Done"):
        cli(ns, "task", "move", name, step, "--output", "pr/1", as_user=EDITOR)
        phase_is(ns, name, step)


def jobs_per_gate(ns: str) -> Counter[tuple[str, str, str]]:
    items = json.loads(kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]
    labels = [j["metadata"].get("labels") or {} for j in items]
    keys = ("agentops.dev/task", "agentops.dev/gate", "agentops.dev/attempt")
    return Counter(tuple(lb.get(k, "") for k in keys) for lb in labels)  # type: ignore[misc]


def assert_no_duplicates(ns: str, names: list[str]) -> None:
    jobs = jobs_per_gate(ns)
    assert jobs and all(n == 1 for n in jobs.values()), f"duplicate gate Jobs: {jobs}"
    for name in names:
        moves = [(h["from"], h["to"]) for h in kget("agenttask", name, ns)["status"]["history"]]
        assert len(moves) == len(set(moves)), f"{name}: duplicate history entries {moves}"


def test_one_leader_reconciles_and_the_standby_takes_over_on_sigkill(le_ns: str) -> None:
    ns = make_team(le_ns)
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: publish, namespace: {ns}}}
spec: {{resource: publish, limit: 10, window: 1h, enforcement: Hard}}
""")
    a, b = replica(ns, "replica-a"), replica(ns, "replica-b")
    try:
        a.start()
        wait_for(lambda: holder(ns) == "replica-a", timeout=30, what="replica-a to take the Lease")
        b.start()  # healthy while standing by: its /healthz answers
        wait_for(lambda: kget("quotas.agentops.dev", "publish", ns).get("status", {}).get("resetAt"),
                 timeout=30, what="quota status")

        # Both run: two tasks through a gated, quota-charged move. Exactly one replica acts.
        for name in ("p", "q"):
            to_done(ns, name, "1s")
            cli(ns, "task", "move", name, "Deployed", "--deploy-version", "1.0", as_user=EDITOR)
        for name in ("p", "q"):
            phase_is(ns, name, "Deployed", timeout=60)
        quota = kget("quotas.agentops.dev", "publish", ns)["status"]
        assert quota["used"] == 2 and quota.get("reserved", 0) == 0, quota  # one commit per task
        assert_no_duplicates(ns, ["p", "q"])
        assert reconciling(a) and not reconciling(b), "the standby reconciled while the leader held the Lease"
        assert holder(ns) == "replica-a"

        # SIGKILL the leader while a gate Job runs; the standby finishes the move.
        to_done(ns, "r", "15s")
        cli(ns, "task", "move", "r", "Deployed", "--deploy-version", "2.0", as_user=EDITOR)
        wait_for(lambda: any(g.get("state") == "Running"
                             for g in kget("agenttask", "r", ns).get("status", {}).get("gates", [])),
                 timeout=30, interval=0.2, what="r's deploy gate to run")
        assert kget("quotas.agentops.dev", "publish", ns)["status"].get("reserved") == 1
        killed = time.monotonic()
        a.kill()
        wait_for(lambda: holder(ns) == "replica-b", timeout=30, interval=0.2, what="replica-b to take the Lease")
        takeover = time.monotonic() - killed
        wait_for(lambda: reconciling(b), timeout=15, interval=0.2, what="replica-b to start reconciling")
        running = time.monotonic() - killed
        t = phase_is(ns, "r", "Deployed", timeout=60)
        assert t["status"]["deployRef"].startswith("2.0")
        quota = kget("quotas.agentops.dev", "publish", ns)["status"]
        assert quota["used"] == 3 and quota.get("reserved", 0) == 0, quota
        assert_no_duplicates(ns, ["p", "q", "r"])
        assert takeover <= 15, f"takeover took {takeover:.1f}s (target <= 15 s)"
    finally:
        a.stop()
        b.stop()
    record: dict[str, Any] = {
        "lease_duration_s": 10, "renew_deadline_s": 7, "retry_period_s": 2,
        "takeover_s": round(takeover, 2), "standby_reconciling_s": round(running, 2),
        "what": "SIGKILL of the leader -> standby holds the Lease (takeover_s) -> its kopf start-up hook ran",
    }
    RESULT.parent.mkdir(exist_ok=True)
    Path(RESULT).write_text(json.dumps(record, indent=2) + "\n")
