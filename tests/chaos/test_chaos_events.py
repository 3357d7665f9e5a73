"""Chaos for the audit trail: every recorded move has exactly one `Transitioned` Event, even when the
operator is SIGKILLed between a status write and its Event (Events are sent asynchronously after
the write, so a kill can land in between).

N tasks are driven Backlog -> Assigned -> InProgress -> Review -> Done as fast as the operator records
the moves (no gates), while the operator is SIGKILLed at random moments and restarted. Then, for every
history entry of every task, the Event named `transition_event_name(task, n)` must exist and say that
move (`from -> to`), and the task must have no other `Transitioned` Event (none missing, none
duplicated). Figures go to bench/results/chaos-events.json, written before the assertions.

Size (about a minute on 2 cores): CHAOS_EVENT_TASKS (12), CHAOS_EVENT_KILLS (6), CHAOS_SEED.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
from kubernetes import client, config

from agentops_operator.handlers.task import transition_event_name
from tests.e2e.kubeutil import ROOT, OperatorProcess, apply, kubectl, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.kwok]

TASKS = int(os.environ.get("CHAOS_EVENT_TASKS", "12"))
KILLS = int(os.environ.get("CHAOS_EVENT_KILLS", "6"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.randrange(1_000_000))))
RESULTS = ROOT / "bench" / "results" / "chaos-events.json"
PLAN = ["Backlog", "Assigned", "InProgress", "Review", "Done"]
GROUP, VERSION = "agentops.dev", "v1alpha1"


def start(op: OperatorProcess) -> None:
    for attempt in range(3):
        try:
            op.start()
            return
        except RuntimeError:
            if attempt == 2:
                raise


def expected_events(task: dict[str, Any]) -> dict[str, str]:
    """Event name -> the move it must describe, for every move in the task's recorded history."""
    st = task.get("status") or {}
    history = st.get("history") or []
    n = int(st.get("transitions", 0))
    first = n - len(history) + 1
    return {transition_event_name(task, first + i): f"{h['from']} -> {h['to']}" for i, h in enumerate(history)}


def test_every_recorded_move_has_one_transitioned_event_across_kills(ns: str, operator: OperatorProcess) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    custom = client.CustomObjectsApi(config.new_client_from_config())
    core = client.CoreV1Api(config.new_client_from_config())
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Agent
metadata: {{name: worker, namespace: {ns}}}
spec: {{role: developer, image: registry.example/dev:1, maxConcurrentTasks: 1000}}
""")
    wait_for(lambda: kubectl("get", "agents.agentops.dev", "worker", "-n", ns, "-o",
                             "jsonpath={.status.readyReplicas}").stdout not in ("", "0"), timeout=60,
             what="agent worker ready")
    for i in range(TASKS):
        apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: e{i:03d}, namespace: {ns}}}
spec:
  title: e{i:03d}
  assignee: worker
  gates:
  - {{transition: Assigned->InProgress, gates: []}}
  - {{transition: InProgress->Review, gates: []}}
  - {{transition: Review->Done, gates: []}}
""")
    requested = threading.Event()
    stop = threading.Event()
    kills = 0
    errors: list[BaseException] = []

    def killer() -> None:
        nonlocal kills
        try:
            for _ in range(KILLS):
                requested.wait(timeout=5)
                requested.clear()
                time.sleep(rng.uniform(0.0, 0.8))  # anywhere between a request, its write and its Events
                operator.kill()
                kills += 1
                start(operator)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def tasks() -> list[dict[str, Any]]:
        return list(custom.list_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks")["items"])

    user = json.loads(kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]["username"]
    requests = 0
    k = threading.Thread(target=killer, daemon=True)
    k.start()
    deadline = time.monotonic() + 180
    all_done = False
    while time.monotonic() < deadline:
        all_done = True
        for t in tasks():
            recorded = (t.get("status") or {}).get("phase", "Backlog")
            wanted = t["spec"].get("requestedPhase", "Backlog")
            all_done = all_done and recorded == "Done"
            if recorded in PLAN[1:-1] and PLAN.index(wanted) <= PLAN.index(recorded):
                nxt = PLAN[PLAN.index(recorded) + 1]
                custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", t["metadata"]["name"],
                                                      {"spec": {"requestedPhase": nxt, "by": user}})
                requests += 1
                requested.set()
        if all_done and stop.is_set():
            break
        time.sleep(0.1)
    k.join(timeout=120)
    assert operator.proc is not None and operator.proc.poll() is None, "the operator is running again"

    final = tasks()
    wanted_events = {t["metadata"]["uid"]: expected_events(t) for t in final}

    def transitioned() -> dict[str, list[dict[str, Any]]]:
        by_uid: dict[str, list[dict[str, Any]]] = {}
        for e in core.list_namespaced_event(ns, field_selector="reason=Transitioned").items:
            by_uid.setdefault(e.involved_object.uid, []).append({"name": e.metadata.name, "message": e.message})
        return by_uid

    def complete() -> dict[str, list[dict[str, Any]]] | None:
        got = transitioned()
        have = {uid: {e["name"] for e in got.get(uid, [])} for uid in wanted_events}
        return got if all(set(w) <= have[uid] for uid, w in wanted_events.items()) else None

    try:
        # A restarted operator re-emits a lost Event when it next reconciles the task (at once after
        # its initial list; at the latest at the next resync, 10 s in the tests).
        got = wait_for(complete, timeout=30, interval=1, what="a Transitioned Event for every recorded move")
    except AssertionError:
        got = transitioned()
    missing, duplicated, wrong = [], [], []
    for t in final:
        uid, name = t["metadata"]["uid"], t["metadata"]["name"]
        events = got.get(uid, [])
        names = Counter(e["name"] for e in events)
        for ev_name, move in wanted_events[uid].items():
            if ev_name not in names:
                missing.append(f"{name}: {ev_name} ({move})")
        duplicated += [f"{name}: {e['name']} ({e['message']})" for e in events
                       if e["name"] not in wanted_events[uid] or names[e["name"]] > 1]
        wrong += [f"{name}: {e['name']} says {e['message']!r}, history says {wanted_events[uid][e['name']]!r}"
                  for e in events if e["name"] in wanted_events[uid]
                  and not e["message"].startswith(wanted_events[uid][e["name"]] + " ")]
    moves = sum(len(w) for w in wanted_events.values())
    figures = {"runs": len(final), "kills": kills, "seed": SEED, "requests": requests, "all_done": all_done,
               "recorded_moves": moves, "missing_events": len(missing), "duplicated_events": len(duplicated),
               "wrong_events": len(wrong), "seconds": round(time.monotonic() - started, 1)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print("\nchaos-events:", json.dumps(figures))

    assert not errors, errors
    assert all_done, f"not all tasks reached Done: {[t['metadata']['name'] for t in final]}"
    assert moves == len(final) * (len(PLAN) - 1), figures
    assert not missing, (figures, missing[:10])
    assert not duplicated, (figures, duplicated[:10])
    assert not wrong, (figures, wrong[:10])
