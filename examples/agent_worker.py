#!/usr/bin/env python3
"""A runnable example agent on the worker library (agentops_operator.worker).

One process = one external Agent. It heartbeats its Lease, waits (watch) for tasks assigned to it
and does its part by role:

  dev     Assigned/Rejected -> start; InProgress -> "work", take quota, submit an output (Review)
  qa      Review -> reject outputs without "tests" (reason "missing tests"), else ask for Done
          (the default approval gate then waits for a person; --approve: approve it itself)
  deploy  Done -> request Deployed with a version (the deploy gate runs a Job)

    python examples/agent_worker.py --agent dev-1 --namespace team-a --behaviour dev
    python examples/agent_worker.py --agent qa-1 --namespace team-a --behaviour qa --kubeconfig qa.kubeconfig

In a pod of an Agent the operator runs, AGENTOPS_AGENT_REVISION names the pod's revision (or pass
--revision): every task the agent works on is stamped with it, and during a canary the agent takes
only the tasks routed to its revision (see the `tasks` analysis in the README). --careful makes the
dev agent write tests in its first version (the qa agent then accepts it at once); without it the
first version of every task is rejected in review ("missing tests").

It prints one JSON line per action. A task annotation `agentops.dev/example-work-seconds: "30"`
(or `"dev-1=30"` for one agent) makes the dev agent "work" that long after starting, to watch a
hand-back when it is killed meanwhile.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from agentops_operator.worker import Task, Worker, WorkerError, connect

WORK_ANNOTATION = "agentops.dev/example-work-seconds"


def say(**fields: Any) -> None:
    print(json.dumps({"at": time.time(), **fields}), flush=True)


def work_seconds(value: str | None, agent: str) -> float:
    """`"30"` (anyone) or `"dev-1=30,dev-2=0"` (per agent)."""
    for part in (value or "").split(","):
        who, _, secs = part.rpartition("=")
        if part and (not who or who == agent):
            return float(secs)
    return 0.0


def dev(w: Worker, t: Task, quota: str | None, careful: bool = False) -> None:
    if t.phase in ("Assigned", "Rejected"):
        w.start(t)
        say(agent=w.agent, task=t.name, action="start", phase=t.phase, revision=w.revision)
        return
    if t.phase != "InProgress":
        return
    ctx = w.context(t)
    work = work_seconds((t.obj["metadata"].get("annotations") or {}).get(WORK_ANNOTATION), w.agent)
    w.note(t, f"working (round {len(ctx.rejections) + 1})")
    time.sleep(work)
    if quota:
        grant = w.take_quota(quota)
        if not grant.granted:
            say(agent=w.agent, task=t.name, action="quota-refused", message=grant.message)
            return
    round_ = len(ctx.rejections) + 1
    output = f"pr/{t.name}-v{round_}" + ("-with-tests" if ctx.rejections or careful else "")
    notes = "addressed: " + "; ".join(ctx.rejections) if ctx.rejections else "first version"
    w.submit(t, output=output, notes=notes)
    say(agent=w.agent, task=t.name, action="submit", output=output, rejections=ctx.rejections, revision=w.revision)


def qa(w: Worker, t: Task, approve: bool = False) -> None:
    if t.phase != "Review":
        return
    output = str(t.spec.get("output") or "")
    if "tests" not in output:
        w.reject(t, "missing tests")
        say(agent=w.agent, task=t.name, action="reject", output=output)
    elif approve:
        w.approve(t, f"reviewed {output}")
        say(agent=w.agent, task=t.name, action="approve", output=output)
    else:
        w.request_done(t, notes=f"reviewed {output}")
        say(agent=w.agent, task=t.name, action="request-done", output=output)


def deploy(w: Worker, t: Task) -> None:
    if t.phase != "Done":
        return
    version = f"{t.name}-{int(time.time())}"
    w.deploy(t, version=version)
    say(agent=w.agent, task=t.name, action="deploy", version=version)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--behaviour", choices=["dev", "qa", "deploy"], required=True)
    p.add_argument("--kubeconfig", help="default: in-cluster ServiceAccount token, else KUBECONFIG")
    p.add_argument("--register-role", help="create/adopt the Agent first (needs rights on agents)")
    p.add_argument("--quota", help="dev: take one unit of this Quota per submission")
    p.add_argument("--revision", help="the Agent revision this process runs (default: $AGENTOPS_AGENT_REVISION)")
    p.add_argument("--careful", action="store_true", help="dev: include tests in the first version")
    p.add_argument("--approve", action="store_true",
                   help="qa: approve good work itself (needs the approve verb and a gate that lets it)")
    args = p.parse_args(argv)

    w = Worker(args.agent, args.namespace, api=connect(args.kubeconfig), revision=args.revision)
    signal.signal(signal.SIGTERM, lambda *_: (w.stop(), sys.exit(0)))
    if args.register_role:
        w.register(args.register_role)
    else:
        w.load_agent()
    w.start_heartbeat()
    say(agent=args.agent, action="ready", user=w.user, heartbeatSeconds=w.heartbeat_seconds, revision=w.revision)
    for t in w.assigned_tasks(actionable=True):
        try:
            if args.behaviour == "dev":
                dev(w, t, args.quota, args.careful)
            elif args.behaviour == "qa":
                qa(w, t, args.approve)
            else:
                deploy(w, t)
        except WorkerError as exc:  # e.g. the task was handed to someone else meanwhile
            say(agent=args.agent, task=t.name, action="refused", message=str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
