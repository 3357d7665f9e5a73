"""`kubectl agentops task ...`: add, list, request moves, approve, reject, retry, cancel, rollback, history.

Moves are requests: the CLI sets spec.requestedPhase with `by` = the caller as the API server
knows them, and the operator records the phase once the move's gates pass.

One-step sign-off: `task approve X --move` appends your approval for the transition (default
Review->Done) and, in the same write, requests that move (as you) when the task is not already
requesting it — the original framework's `task move X Done --approved-by qa`. Without `--move` an
approval for a move nobody requested is recorded and waits; the command says so.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException

from .. import GROUP, VERSION, kube
from ..lifecycle import Phase, transition_key
from .common import CLIError, add_all_namespaces, add_output, api_error, current_user, fail, namespace, scope

PLURAL = "agenttasks"


def register(sub: Any) -> None:
    p = sub.add_parser("task", help="move, approve and inspect AgentTasks")
    t = p.add_subparsers(dest="verb", required=True)
    a = t.add_parser("add", help="create a task (in the Backlog, auto-assigned unless --assignee)")
    a.add_argument("name")
    a.add_argument("--title", help="short summary (default: the name)")
    a.add_argument("--description", default="")
    a.add_argument("--priority", type=int)
    a.add_argument("--role", help="role an auto-assigned agent must have")
    a.add_argument("--assignee", help="a specific Agent")
    a.add_argument("--capability", action="append", default=[], help="required capability (repeatable)")
    a.add_argument("--stage", action="append", default=[], metavar="NAME=ROLE[:PHASE,PHASE]",
                   help="pipeline stage (repeatable, in order). Without phases: the first stage holds "
                        "Assigned,InProgress,Rejected, the last Done,Deployed, and those between Review; "
                        "with two stages the second holds Review,Done,Deployed")
    a.add_argument("--deploy-version")
    a.add_argument("--deploy-image")
    a.set_defaults(func=_add)
    ls = t.add_parser("list", help="list tasks")
    add_all_namespaces(ls)
    ls.add_argument("--phase", action="append", default=[], choices=[x.value for x in Phase])
    ls.add_argument("--assignee")
    add_output(ls, "table", "json")
    ls.set_defaults(func=_list)
    m = t.add_parser("move", help="request the next phase")
    m.add_argument("name")
    m.add_argument("phase", choices=[x.value for x in Phase])
    m.add_argument("--output", help="deliverable reference (needed for Review)")
    m.add_argument("--notes")
    m.add_argument("--deploy-version")
    m.add_argument("--deploy-image")
    m.add_argument("--deploy-agent", help="Agent whose rollout of the image decides Done->Deployed (Rollout gate)")
    m.set_defaults(func=_move)
    for verb, decision in (("approve", "Approved"), ("reject", "Rejected")):
        a = t.add_parser(verb, help=f"{verb} the task's pending move (as yourself)")
        a.add_argument("name")
        a.add_argument("--reason", default="", required=decision == "Rejected")
        a.add_argument("--transition", default=transition_key(Phase.REVIEW, Phase.DONE))
        a.add_argument("--group", action="append", default=[], help="a group of yours that entitles you")
        if decision == "Approved":
            a.add_argument("--move", action="store_true",
                           help="also request the transition's move (as you) if it is not requested yet")
        a.set_defaults(func=_approve, decision=decision)
    r = t.add_parser("retry", help="retry the failed gates of the requested move")
    r.add_argument("name")
    r.set_defaults(func=_retry)
    c = t.add_parser("cancel", help="cancel the task")
    c.add_argument("name")
    c.set_defaults(func=lambda a: _move(argparse.Namespace(**{**vars(a), "phase": "Cancelled", "output": None,
                                                               "notes": None, "deploy_version": None,
                                                               "deploy_image": None})))
    rb = t.add_parser("rollback", help="roll a Deployed task back (RolledBack); deployed through an Agent: "
                                       "run that Agent's undo, and the task follows")
    rb.add_argument("name")
    rb.add_argument("--reason", default="", help="recorded as the move's notes (a task without an Agent behind it)")
    rb.add_argument("--timeout", type=float, default=30.0,
                    help="seconds to wait for the Agent's undo and the task's RolledBack (0: don't wait)")
    rb.set_defaults(func=_rollback)
    h = t.add_parser("history", help="the audit trail of a task")
    h.add_argument("name")
    h.add_argument("-o", "--output-format", choices=["table", "json"], default="table")
    h.set_defaults(func=_history)


def _update(args: argparse.Namespace, mutate: Callable[[dict[str, Any]], None],
            done: str | Callable[[], str]) -> int:
    """Read-modify-write with the resourceVersion precondition; retried on conflict. Prints `done`."""
    ns = namespace(args)
    for _ in range(10):
        obj = kube.get_custom(PLURAL, ns, args.name)
        if obj is None:
            return fail(f"agenttask {args.name} not found in {ns}")
        try:
            mutate(obj)
        except CLIError as exc:
            return fail(str(exc))
        try:
            kube.custom().replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, args.name, obj)
            print(f"agenttask/{args.name}: {done() if callable(done) else done}")
            return 0
        except ApiException as exc:
            if exc.status == 409:
                time.sleep(0.1)
                continue
            return api_error(exc)
    return fail("gave up after repeated conflicts")


def _move(args: argparse.Namespace) -> int:
    user = current_user()

    def mutate(obj: dict[str, Any]) -> None:
        spec = obj["spec"]
        spec["requestedPhase"] = args.phase
        spec["by"] = user
        if args.output:
            spec["output"] = args.output
        if args.notes:
            spec["notes"] = args.notes
        deploy_agent = getattr(args, "deploy_agent", None)
        if args.deploy_version or args.deploy_image or deploy_agent:
            deploy = spec.setdefault("deploy", {})
            if args.deploy_version:
                deploy["version"] = args.deploy_version
            if args.deploy_image:
                deploy["image"] = args.deploy_image
            if deploy_agent:
                deploy["agent"] = deploy_agent

    return _update(args, mutate, f"requested {args.phase} as {user}")


def _rollback(args: argparse.Namespace) -> int:
    """A task deployed through an Agent (its Rollout gate recorded the revision): run the Agent's undo as
    the caller -- the API server's RBAC on patching that Agent decides -- and wait for the operator to
    move the task to RolledBack (a system move carrying the Agent's reason). Otherwise, or when the
    Agent no longer serves that revision as stable, request RolledBack on the task as before."""
    from .. import deploygate
    from . import agent as agent_cli

    ns = namespace(args)
    obj = kube.get_custom(PLURAL, ns, args.name)
    if obj is None:
        return fail(f"agenttask {args.name} not found in {ns}")
    st = obj.get("status") or {}
    through = deploygate.deployed_through(st.get("history") or []) if st.get("phase") == Phase.DEPLOYED else None
    if through is not None:
        agent = kube.get_custom("agents", ns, through.agent)
        stable = ((agent or {}).get("status") or {}).get("stableRevision")
        if stable == through.revision:
            print(f"agenttask/{args.name} was deployed through agent {through.agent} (revision {stable}): "
                  f"running its undo")
            undo = argparse.Namespace(**{**vars(args), "name": through.agent, "command": "undo",
                                         "to_revision": None, "timeout": args.timeout or 30.0})
            rc = int(agent_cli._verb(undo))
            if rc != 0 or args.timeout <= 0:
                return rc
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                cur = kube.get_custom(PLURAL, ns, args.name) or {}
                cst = cur.get("status") or {}
                if cst.get("phase") == Phase.ROLLED_BACK:
                    last = (cst.get("history") or [{}])[-1]
                    print(f"agenttask/{args.name}: RolledBack by {last.get('by')} ({last.get('notes') or ''})")
                    return 0
                time.sleep(0.3)
            return fail(f"agent {through.agent} undid revision {stable}, but agenttask {args.name} is not "
                        f"RolledBack within {args.timeout:g}s")
        print(f"agent {through.agent} no longer serves revision {through.revision} as stable "
              f"({stable or 'agent not found'}): recording the rollback on the task only")
    return _move(argparse.Namespace(**{**vars(args), "phase": "RolledBack", "output": None,
                                       "notes": args.reason or None, "deploy_version": None, "deploy_image": None}))


def _approve(args: argparse.Namespace) -> int:
    user = current_user()
    try:
        src, dst = (Phase(p) for p in args.transition.split("->"))
    except ValueError:
        return fail(f"--transition {args.transition!r}: expected From->To, e.g. Review->Done")
    notes: list[str] = []

    def mutate(obj: dict[str, Any]) -> None:
        notes.clear()
        entry: dict[str, Any] = {"id": f"{int(time.time())}-{secrets.token_hex(4)}", "approver": user,
                                 "decision": args.decision, "reason": args.reason, "transition": args.transition}
        if args.group:
            entry["groups"] = list(args.group)
        spec = obj["spec"]
        spec.setdefault("approvals", []).append(entry)
        recorded = (obj.get("status") or {}).get("phase") or "Backlog"
        pending = spec.get("requestedPhase") == dst.value and recorded == src.value
        if args.decision == "Approved" and not pending:
            if getattr(args, "move", False):
                if recorded != src.value:
                    raise CLIError(f"agenttask {args.name} is {recorded}, not {src.value}: cannot request "
                                   f"{args.transition}")
                spec["requestedPhase"] = dst.value
                spec["by"] = user
                notes.append(f"; requested {dst.value} as {user}")
            else:
                notes.append(f"; note: no {args.transition} move is pending (task is {recorded}), the approval "
                             f"waits for one (use --move to request it now)")

    return _update(args, mutate, lambda: f"{args.decision.lower()} {args.transition} as {user}" + "".join(notes))


def stages_from_flags(flags: list[str]) -> list[dict[str, Any]]:
    """`NAME=ROLE[:PHASE,PHASE]` flags → spec.pipeline (positional default phases, see `task add -h`)."""
    stages: list[dict[str, Any]] = []
    n = len(flags)
    for i, flag in enumerate(flags):
        name, _, rest = flag.partition("=")
        role, _, phases = rest.partition(":")
        if not name or not role:
            raise CLIError(f"--stage {flag!r}: expected NAME=ROLE[:PHASE,PHASE]")
        if phases:
            chosen = [p.strip() for p in phases.split(",") if p.strip()]
        elif n == 1:
            chosen = ["Assigned", "InProgress", "Review", "Rejected", "Done", "Deployed"]
        elif i == 0:
            chosen = ["Assigned", "InProgress", "Rejected"]
        elif i == n - 1:
            chosen = ["Review", "Done", "Deployed"] if n == 2 else ["Done", "Deployed"]
        else:
            chosen = ["Review"]
        for p in chosen:
            if p not in {x.value for x in Phase}:
                raise CLIError(f"--stage {flag!r}: unknown phase {p}")
        stages.append({"name": name, "role": role, "phases": chosen})
    return stages


def _add(args: argparse.Namespace) -> int:
    from .. import API_VERSION

    ns = namespace(args)
    spec: dict[str, Any] = {"title": args.title or args.name}
    if args.description:
        spec["description"] = args.description
    for key, value in (("priority", args.priority), ("role", args.role), ("assignee", args.assignee)):
        if value is not None:
            spec[key] = value
    if args.capability:
        spec["capabilities"] = sorted(set(args.capability))
    if args.stage:
        spec["pipeline"] = stages_from_flags(args.stage)
    if args.deploy_version or args.deploy_image:
        spec["deploy"] = {k: v for k, v in (("version", args.deploy_version), ("image", args.deploy_image)) if v}
    body = {"apiVersion": API_VERSION, "kind": "AgentTask", "metadata": {"name": args.name}, "spec": spec}
    try:
        kube.custom().create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    except ApiException as exc:
        if exc.status == 409:
            return fail(f"agenttask {args.name} already exists in {ns}")
        return api_error(exc)
    print(f"agenttask/{args.name} created in {ns}")
    return 0


def task_rows(tasks: list[dict[str, Any]]) -> list[list[str]]:
    from ..conditions import get_condition

    rows = []
    for t in sorted(tasks, key=lambda t: (-int(t["spec"].get("priority", 100)), t["metadata"]["name"])):
        st = t.get("status") or {}
        blocked = get_condition(st.get("conditions"), "TransitionBlocked")
        rows.append([
            t["metadata"]["namespace"], t["metadata"]["name"], str(st.get("phase") or "-"),
            t["spec"].get("requestedPhase", ""), str(st.get("assignee") or "-"), str(st.get("stage") or "-"),
            str(t["spec"].get("priority", 100)),
            blocked["reason"] if blocked and blocked.get("status") == "True" else "-",
            t["spec"].get("title", "")[:40],
        ])
    return rows


def _list(args: argparse.Namespace) -> int:
    from .dashboard import table

    tasks = kube.list_custom(PLURAL, scope(args))
    if args.phase:
        tasks = [t for t in tasks if ((t.get("status") or {}).get("phase") or "Backlog") in args.phase]
    if args.assignee:
        tasks = [t for t in tasks if (t.get("status") or {}).get("assignee") == args.assignee]
    if args.output == "json":
        print(json.dumps(tasks, indent=2))
        return 0
    print(table(["NAMESPACE", "NAME", "PHASE", "REQUESTED", "ASSIGNEE", "STAGE", "PRIO", "BLOCKED", "TITLE"],
                task_rows(tasks)))
    return 0


def _retry(args: argparse.Namespace) -> int:
    user = current_user()

    def mutate(obj: dict[str, Any]) -> None:
        obj["spec"]["retry"] = int(obj["spec"].get("retry", 0)) + 1
        obj["spec"]["by"] = user

    return _update(args, mutate, f"retry requested as {user}")


def _history(args: argparse.Namespace) -> int:
    obj = kube.get_custom(PLURAL, namespace(args), args.name)
    if obj is None:
        return fail(f"agenttask {args.name} not found")
    history = (obj.get("status") or {}).get("history") or []
    if args.output_format == "json":
        print(json.dumps(history, indent=2))
        return 0
    for h in history:
        gates = ", ".join(f"{g['name']}={g['state']}" for g in h.get("gates") or []) or "-"
        print(f"{h['at']}  {h['from']:>10} -> {h['to']:<10} by {h.get('by', '-'):<24} gates: {gates}")
    return 0
