"""Chaos: task lifecycles with gate Jobs and quota costs while the operator is SIGKILLed at random
points and restarted (with a second operator racing it), then an API-server stop/start.

Asserts what must survive any crash: every task at its requested phase, each move recorded once,
one Job per gate, the Quota's `used` equal to the sum of the costs exactly (nothing charged twice,
nothing lost), no reservation left behind, and the memory of commits emptied once every task
recorded its moves. Figures go to bench/results/chaos.json, written before the assertions.

Every other kill is aimed: it follows the Quota's watch and lands right after a commit is written,
before the task's status write that records the move (the double-charge window).

Size (default about 2 minutes on 2 cores): CHAOS_TASKS (16), CHAOS_KILLS (8), CHAOS_SECOND_OPERATOR
(1: a second operator process runs during the kills), CHAOS_COSTS ("Assigned=1,Review=2,Done=4"),
CHAOS_SEED. CHAOS_OPERATOR_SRC=<dir> runs the operator from another source tree (its `operator/`
dir, put first on PYTHONPATH), e.g. an older commit, to measure the before figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch

from tests.e2e.conftest import NS_PREFIX, OPERATOR_NS
from tests.e2e.kubeutil import ROOT, OperatorProcess, apply, kubectl, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.kwok]

TASKS = int(os.environ.get("CHAOS_TASKS", "16"))
KILLS = int(os.environ.get("CHAOS_KILLS", "8"))
SECOND = os.environ.get("CHAOS_SECOND_OPERATOR", "1") == "1"
COSTS = {k: int(v) for k, v in (p.split("=") for p in os.environ.get("CHAOS_COSTS", "Assigned=1,Review=2,Done=4")
                                  .split(",") if p)}
SEED = int(os.environ.get("CHAOS_SEED", str(random.randrange(1_000_000))))
OPERATOR_SRC = os.environ.get("CHAOS_OPERATOR_SRC", "")
RESULTS = ROOT / "bench" / "results" / "chaos.json"
PLAN = ["Backlog", "Assigned", "InProgress", "Review", "Done"]
OUTAGE_SECONDS = 6.0
GRACE_SECONDS = 5
GROUP, VERSION = "agentops.dev", "v1alpha1"


def api() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config())


def whoami() -> str:
    out = json.loads(kubectl("auth", "whoami", "-o", "json").stdout)
    return str(out["status"]["userInfo"]["username"])


def task_manifest(ns: str, name: str) -> str:
    costs = "\n".join(f"  - {{resource: publish, amount: {a}, phase: {p}}}" for p, a in COSTS.items())
    return f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: {name}, namespace: {ns}}}
spec:
  title: {name}
  assignee: worker
  gates:
  - {{transition: Assigned->InProgress, gates: []}}
  - transition: InProgress->Review
    gates:
    - name: check
      type: Job
      job: {{podAnnotations: {{"agentops.dev/kwok-delay": "1s"}}}}
  - {{transition: Review->Done, gates: []}}
  costs:
{costs}
"""


def start(op: OperatorProcess) -> None:
    """Start, again if the process died at once (its free port was taken meanwhile on a busy machine)."""
    for attempt in range(3):
        try:
            op.start()
            return
        except RuntimeError:
            if attempt == 2:
                raise


def next_commit(ns: str, timeout: float) -> None:
    """Return as soon as the Quota's `used` grows (a commit was written), or after `timeout`."""
    custom = api()
    first = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "quotas", "publish")
    used = int((first.get("status") or {}).get("used") or 0)
    w = watch.Watch()
    deadline = time.monotonic() + timeout
    for ev in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns, "quotas",
                       field_selector="metadata.name=publish", resource_version=first["metadata"]["resourceVersion"],
                       timeout_seconds=max(1, int(timeout))):
        if int((ev["object"].get("status") or {}).get("used") or 0) > used or time.monotonic() > deadline:
            break
    w.stop()


def peak_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---- the API server of the local cluster ----------------------------------------------------------


CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def local_control_plane() -> dict[str, Path] | str:
    """Pid files of this worktree's kwok cluster's API server, controller manager and scheduler, or why
    there is no local control plane to restart."""
    if os.environ.get("KUBECONFIG") != str(ROOT / ".cluster" / "kubeconfig"):
        return "not the local kwok cluster (KUBECONFIG is not .cluster/kubeconfig)"
    pids = Path.home() / ".kwok" / "clusters" / os.environ.get("CLUSTER_NAME", "agentops") / "pids"
    files = {c: pids / f"{c}.pid" for c in CONTROL_PLANE}
    for c, f in files.items():
        if not f.exists() or not Path(f"/proc/{f.read_text().strip()}").exists():
            return f"{c} of the kwokctl binary runtime is not running ({f})"
    return files


def restart_control_plane(pidfiles: dict[str, Path], outage: float) -> None:
    """SIGKILL the kube-apiserver (no graceful shutdown), and start it again after `outage` seconds with
    the same command, environment and directory. `kwokctl stop cluster` would stop etcd and kwok too
    (and kwok then waits minutes for its node lease), and kwokctl has no per-component stop. The
    controller manager and scheduler exit when they lose their leader lease during the outage (nothing
    restarts them in the binary runtime, as a kubelet would), so they are restarted with it. The pid
    files then name the new processes, for `make cluster-down`."""
    procs = {}
    for c, f in pidfiles.items():
        pid = int(f.read_text().strip())
        proc_dir = Path(f"/proc/{pid}")
        procs[c] = (pid, [a.decode() for a in (proc_dir / "cmdline").read_bytes().split(b"\0") if a],
                    os.readlink(proc_dir / "cwd"),
                    dict(e.decode().split("=", 1) for e in (proc_dir / "environ").read_bytes().split(b"\0")
                         if b"=" in e))
    for pid, *_ in procs.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(outage)
    for c in CONTROL_PLANE:
        _, cmdline, cwd, environ = procs[c]
        log = pidfiles[c].parent.parent / "logs" / f"{c}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmdline, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        pidfiles[c].write_text(str(proc.pid))
    wait_for(api_ready, timeout=120, what="kube-apiserver ready again")


def api_ready() -> bool:
    try:
        return kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# ---- the run --------------------------------------------------------------------------------------


class Driver:
    """Requests each task's next move as soon as the previous one is recorded (as the assignee would)."""

    def __init__(self, ns: str, user: str) -> None:
        self.ns, self.user = ns, user
        self.api = api()
        self.requested = threading.Event()
        self.requests = 0

    def tasks(self) -> list[dict[str, Any]]:
        return list(self.api.list_namespaced_custom_object(GROUP, VERSION, self.ns, "agenttasks")["items"])

    def step(self) -> bool:
        """One pass; True when every task is Done."""
        done = True
        for t in self.tasks():
            recorded = (t.get("status") or {}).get("phase", "Backlog")
            wanted = t["spec"].get("requestedPhase", "Backlog")
            if recorded != "Done":
                done = False
            # Assignment needs no request (spec stays Backlog): any move not yet asked for is next.
            if recorded in PLAN[1:-1] and PLAN.index(wanted) <= PLAN.index(recorded):
                nxt = PLAN[PLAN.index(recorded) + 1]
                self.api.patch_namespaced_custom_object(GROUP, VERSION, self.ns, "agenttasks", t["metadata"]["name"],
                                                        {"spec": {"requestedPhase": nxt, "by": self.user}})
                self.requests += 1
                self.requested.set()
        return done

    def run_until_done(self, timeout: float, stop: threading.Event | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.step():
                    return True
            except Exception:  # the API server is down for a moment: keep driving
                time.sleep(0.5)
            if stop is not None and stop.is_set():
                return False
            time.sleep(0.3)
        return False


def test_lifecycles_survive_operator_kills_and_an_apiserver_restart(ns: str, operator: OperatorProcess,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    operator.stop()
    if OPERATOR_SRC:
        monkeypatch.setenv("PYTHONPATH", f"{OPERATOR_SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    # Remembered commits are forgotten after 5 s instead of 60 s, so the run can see them all go.
    monkeypatch.setenv("AGENTOPS_QUOTA_COMMIT_GRACE_SECONDS", str(GRACE_SECONDS))
    start(operator)
    user = whoami()
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: worker, namespace: {ns}}}
spec: {{role: developer, image: registry.example/dev:1, maxConcurrentTasks: 1000}}
---
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: publish, namespace: {ns}}}
spec: {{resource: publish, limit: 100000, window: daily, enforcement: Hard}}
""")
    wait_for(lambda: kubectl("get", "quotas.agentops.dev", "publish", "-n", ns, "-o",
                             "jsonpath={.status.resetAt}").stdout, what="quota initialised")
    wait_for(lambda: kubectl("get", "agents.agentops.dev", "worker", "-n", ns, "-o",
                             "jsonpath={.status.readyReplicas}").stdout not in ("", "0"), timeout=60,
             what="agent worker ready")

    second: OperatorProcess | None = None
    if SECOND:
        second = OperatorProcess(ROOT / ".cluster" / "operator-chaos-2.log",
                                 extra_args=("--namespace", f"{NS_PREFIX}*", "--operator-namespace", OPERATOR_NS))
        second.log_path.write_bytes(b"")
        start(second)
    peak = 0
    kills = 0
    driver = Driver(ns, user)
    stop_driving = threading.Event()
    errors: list[BaseException] = []

    def killer() -> None:
        nonlocal kills, peak
        try:
            for n in range(KILLS):
                if n % 2:
                    # The worst moment: right after a commit, before the task's status write records it.
                    next_commit(ns, timeout=10)
                else:
                    driver.requested.wait(timeout=5)  # kill while moves are in flight
                    driver.requested.clear()
                    time.sleep(rng.uniform(0.02, 1.2))
                assert operator.proc is not None
                peak = max(peak, peak_rss_kb(operator.proc.pid))
                operator.kill()
                kills += 1
                start(operator)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop_driving.set()

    try:
        for i in range(TASKS):
            apply(task_manifest(ns, f"c{i:03d}"))
        k = threading.Thread(target=killer, daemon=True)
        k.start()
        driver.run_until_done(timeout=240, stop=stop_driving)
        k.join(timeout=120)
        assert not errors, errors
        if second is not None:
            peak = max(peak, peak_rss_kb(second.proc.pid) if second.proc else 0)
            second.stop()
            second = None

        # Second wave: moves in flight while the API server goes away and comes back.
        wave2 = max(2, TASKS // 4)
        for i in range(wave2):
            apply(task_manifest(ns, f"w{i:03d}"))
        target = local_control_plane()
        outage: dict[str, Any]
        if isinstance(target, str):
            outage = {"skipped": target}
        else:
            driver.requested.clear()
            driver.run_until_done(timeout=3)  # the first moves are requested...
            log_mark = operator.log_path.stat().st_size
            restart_control_plane(target, outage=OUTAGE_SECONDS)  # ...and the API server dies under them
            tail = operator.log_path.read_bytes()[log_mark:].decode(errors="replace")
            outage = {"seconds": OUTAGE_SECONDS, "operator_traceback_lines": tail.count("Traceback"),
                      "operator_log_lines": tail.count("\n")}
        all_done = driver.run_until_done(timeout=180)
    finally:
        if second is not None:
            second.stop()

    # ---- what survived -------------------------------------------------------------------------
    admin = api()
    tasks = driver.tasks()
    expected_moves = [(PLAN[i], PLAN[i + 1]) for i in range(len(PLAN) - 1)]
    lost_tasks = [t["metadata"]["name"] for t in tasks if (t.get("status") or {}).get("phase") != "Done"]
    lost_moves = dup_moves = 0
    for t in tasks:
        moves = Counter((h["from"], h["to"]) for h in (t.get("status") or {}).get("history") or [])
        lost_moves += sum(1 for m in expected_moves if moves[m] == 0)
        dup_moves += sum(n - 1 for n in moves.values() if n > 1) + sum(n for m, n in moves.items()
                                                                          if m not in expected_moves)
    jobs = client.BatchV1Api(config.new_client_from_config()).list_namespaced_job(ns).items
    per_gate = Counter((j.metadata.labels.get("agentops.dev/task-uid"), j.metadata.labels.get("agentops.dev/gate"),
                        j.metadata.labels.get("agentops.dev/transition"), j.metadata.labels.get("agentops.dev/round"))
                       for j in jobs)
    dup_jobs = sum(n - 1 for n in per_gate.values())
    missing_jobs = len(tasks) - len({k[0] for k in per_gate})
    expected_used = len(tasks) * sum(COSTS.values())

    def quota() -> dict[str, Any]:
        return admin.get_namespaced_custom_object(GROUP, VERSION, ns, "quotas", "publish").get("status") or {}

    def settled() -> dict[str, Any] | None:
        q = quota()
        return q if not q.get("reservations") and not q.get("committed") else None

    try:
        q = wait_for(settled, timeout=45, interval=1, what="no reservation left and every commit forgotten")
    except AssertionError:
        q = quota()
    figures = {
        "runs": len(tasks), "kills": kills, "second_operator": SECOND, "seed": SEED,
        "operator_src": OPERATOR_SRC or "this tree", "costs": COSTS,
        "all_done": all_done, "lost_tasks": len(lost_tasks), "lost_moves": lost_moves,
        "duplicated_moves": dup_moves, "duplicated_jobs": dup_jobs, "missing_jobs": missing_jobs,
        "quota_used": q.get("used"), "quota_expected": expected_used,
        "double_charged_units": max(0, int(q.get("used") or 0) - expected_used),
        "uncharged_units": max(0, expected_used - int(q.get("used") or 0)),
        "leaked_reservations": len(q.get("reservations") or []), "remembered_commits": len(q.get("committed") or []),
        "lost": len(lost_tasks) + lost_moves, "duplicated": dup_moves + dup_jobs,
        "max_rss_mb": round(max(peak, peak_rss_kb(operator.proc.pid) if operator.proc else 0) / 1024, 1),
        "apiserver_outage": outage, "seconds": round(time.monotonic() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print("\nchaos:", json.dumps(figures))
    operator.stop()  # the session's other tests get the operator as it was
    monkeypatch.undo()
    start(operator)

    assert not lost_tasks, f"not at their requested phase: {lost_tasks}"
    assert (lost_moves, dup_moves) == (0, 0), figures
    assert (dup_jobs, missing_jobs) == (0, 0), figures
    assert q.get("used") == expected_used, figures
    assert (q.get("reserved", 0), q.get("reservations") or []) == (0, []), figures
    assert not q.get("committed"), figures
